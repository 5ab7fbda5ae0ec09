"""The objects a slot's lifecycle hooks return, and what flows between them.

Hooks run once when a plan is built; the objects below then run in the hot paths (DataLoader workers,
``forward``, decoding loops) without any pluggy dispatch.

Importable without torch: torch-based components (adaptors, criteria, generators) live in
:mod:`ofasys.model` and import torch there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .plan import SlotPlan
    from .vocab import Vocabulary


@dataclass
class Tokens:
    """A token slot's preprocessed value: ids in the shared vocabulary.

    Consecutive token values on one side are merged into one sequence with the shared token embedding.
    On the decoder side ``loss`` False excludes the ids from the loss (``no_loss``, plain text) and
    ``constraint`` restricts decoding of this piece (a :class:`ofasys.generation.constraints.Constraint`);
    ``None`` means free text. ``forced`` pieces (plain text on the decoder side) are emitted verbatim when
    decoding reaches them.
    """

    ids: list[int]
    loss: bool = True
    constraint: Any = None
    forced: bool = False
    smoothing_ids: Sequence[int] | None = None  # confine label smoothing to these ids (closed sets)


@dataclass
class Features:
    """A feature slot's preprocessed value, collated by the slot's ``Preprocessor.collate`` and embedded by its
    adaptor. ``length`` is the number of positions the value will occupy after the adaptor (for bucketing and
    packing), when known; ``meta`` travels to the postprocessor (original sizes, sample rates...)."""

    data: Any
    length: int | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class SampleContext:
    """What a preprocessor may look at besides the value of its own column.

    ``state`` is shared by the slots of one sample in plan order: the image preprocessor records its geometric
    transform there so the BOX preprocessor can move boxes with it. ``rng`` is seeded per sample (deterministic
    by seed, different per epoch).
    """

    split: str
    row: dict
    rng: random.Random
    vocab: "Vocabulary"
    state: dict = field(default_factory=dict)

    @property
    def training(self) -> bool:
        return self.split == "train"


class Preprocessor:
    """Turns one column value into :class:`Tokens` or :class:`Features`. Built by ``ofasys_preprocess``.

    Runs in DataLoader worker processes: keep it picklable (no open files, no lambdas), and import heavy
    libraries inside methods. ``order`` sorts the slots of a sample before preprocessing (lower first), so an
    image (order -10) is processed before a box that depends on its transform.
    """

    order: int = 0

    def __init__(self, slot: "SlotPlan", vocab: "Vocabulary"):
        self.slot = slot
        self.vocab = vocab

    def __call__(self, value: Any, ctx: SampleContext) -> "Tokens | Features":  # pragma: no cover - interface
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        """Batch the ``Features.data`` of several samples (feature slots only). Default: ``torch.stack``."""
        import torch

        return torch.stack([torch.as_tensor(x) for x in items])

    def target_placeholder(self, ctx: SampleContext) -> "Tokens | Features":
        """The value of an output slot at inference, when there is no target yet. Token slots: no ids."""
        return Tokens(ids=[], constraint=self.constraint(ctx))

    def constraint(self, ctx: SampleContext | None = None):
        """The decoding constraint of this slot as an output (``None``: free text)."""
        return None


class Postprocessor:
    """Turns the decoded ids (token slots) or the generator's prediction (feature slots) of one sample back into
    user-facing fields: ``{"text": ...}``, ``{"box": [x0, y0, x1, y1]}``, ``{"image": PIL.Image}``.
    Built by ``ofasys_postprocess``."""

    def __init__(self, slot: "SlotPlan", vocab: "Vocabulary"):
        self.slot = slot
        self.vocab = vocab

    def __call__(self, prediction: Any, meta: dict) -> dict:  # pragma: no cover - interface
        """``prediction``: the slot's generated ids (token slots; a list per item inside a repetition group) or
        the generator's prediction (feature slots). ``meta``: ``{"row": the input row, "state": the
        :attr:`SampleContext.state` left by the preprocessors (e.g. the image's original size and transform),
        "features": the ``Features.meta`` of a feature output}``."""
        raise NotImplementedError

    def finalize(self, fields: dict, meta: dict) -> None:
        """Called once per sample after every output slot was postprocessed, with the sample's merged output
        fields (inside a repetition group each field is the list of the items' values); may add or replace
        fields in place, e.g. one ``save_box`` drawing every box of a detection with its label. Default: nothing."""


@dataclass
class BuildContext:
    """Passed to every factory hook: the model's vocabulary and configuration (``d_model``, ``size``...), the
    task name and the whole plan, so a factory can look at sibling slots."""

    vocab: "Vocabulary"
    model_config: dict = field(default_factory=dict)
    task: str = ""
    plan: Any = None
    shared: dict = field(default_factory=dict)  # modules shared across tasks (image backbone for VIDEO...)
