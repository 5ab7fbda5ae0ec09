"""What plugins declare: slot types with their attributes and components, vocabulary blocks, metrics,
architectures. Plain data, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Side = Literal["encoder", "decoder"]
SIDES: tuple[str, ...] = ("encoder", "decoder")
STAGES: tuple[str, ...] = ("preprocess", "adaptor", "criterion", "generator", "postprocess")

_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "list": list}


@dataclass(frozen=True)
class Attribute:
    """One attribute a slot type accepts, e.g. ``max_length=int`` or the flag ``closed_set``.

    ``type`` is one of ``"int"``, ``"float"``, ``"bool"`` (a flag: ``[TEXT:x,no_loss]``), ``"str"`` or ``"list"``
    (values separated by ``|``: ``closed_set="yes|no"``). ``choices`` limits a ``str``. ``sides`` says where the
    attribute is valid: an attribute that only makes sense on the target (``closed_set``) names ``("decoder",)``.
    """

    name: str
    type: str = "str"
    default: Any = None
    help: str = ""
    sides: tuple[str, ...] = SIDES
    choices: tuple[str, ...] | None = None
    # bool attributes written as a bare flag may still carry a value: closed_set or closed_set="a|b"
    flag_or_value: bool = False

    def __post_init__(self):
        if self.type not in _TYPES:
            raise ValueError(f"attribute {self.name!r}: type must be one of {sorted(_TYPES)}, not {self.type!r}")

    def convert(self, raw: str | bool) -> Any:
        """Turn the raw parsed value into the declared type; raise ``ValueError`` with a readable reason."""
        if raw is True:  # written as a bare flag
            if self.type == "bool" or self.flag_or_value:
                return True
            raise ValueError(f"attribute '{self.name}' needs a value ({self.type}), e.g. {self.name}=...")
        if self.type == "bool":
            low = str(raw).lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"attribute '{self.name}' is a flag: write it alone or as {self.name}=true/false")
        if self.type == "int":
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"attribute '{self.name}' must be an integer, not {raw!r}") from None
        if self.type == "float":
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"attribute '{self.name}' must be a number, not {raw!r}") from None
        if self.type == "list":
            return [v for v in str(raw).split("|") if v != ""]
        if self.choices is not None and raw not in self.choices:
            raise ValueError(f"attribute '{self.name}' must be one of {', '.join(self.choices)}, not {raw!r}")
        return str(raw)

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
                "sides": list(self.sides), "choices": list(self.choices) if self.choices else None}


@dataclass(frozen=True)
class SlotType:
    """A slot type (``TEXT``, ``IMAGE``...) as one plugin provides it.

    ``components`` maps each lifecycle stage to the variant names this plugin implements, the first being the
    default: ``{"preprocess": ("image", "image_vqgan"), "adaptor": ("image_resnet", "image_patch")}``.
    A stage left out uses the core's default for token slots (``tokens`` adaptor, cross entropy, sequence
    generator) or is not available.

    ``kind`` is ``"tokens"`` when the slot's preprocessor yields ids in the shared vocabulary (TEXT, BOX, PHONE,
    STRUCT) and ``"features"`` when it yields continuous data embedded by an adaptor (IMAGE, AUDIO, VIDEO,
    MOTION). A variant may change the kind (``preprocess=image_vqgan`` turns IMAGE into code tokens); list such
    variants in ``token_variants``.

    ``vocab_blocks_for(attrs) -> tuple of block names``, when given, replaces ``vocab_blocks`` for a planned
    token slot: the block can then depend on an attribute (IMAGE's ``tokenizer`` names a codebook of any size and
    the slot uses the block ``code<size>``, which the plugin registers on demand, see
    ``ofasys_register_vocab_blocks``'s ``names``).
    """

    name: str
    attributes: tuple[Attribute, ...] = ()
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kind: Literal["tokens", "features"] = "tokens"
    token_variants: tuple[str, ...] = ()
    feature_variants: tuple[str, ...] = ()
    sides: tuple[str, ...] = SIDES
    needs_column: bool = True
    help: str = ""
    output_fields: tuple[str, ...] = ()  # what an inference output carries for this slot: "text", "box", ...
    vocab_blocks: tuple[str, ...] = ()  # names of the vocabulary blocks this slot type uses
    # optional: the block names of one planned token slot from its typed attributes (a codebook whose size a
    # user-trained tokenizer decides); pure Python, called at plan time; raise ValueError with a reason
    vocab_blocks_for: Callable[[dict], tuple[str, ...]] | None = field(default=None, compare=False, repr=False)

    def kind_for(self, preprocess: str | None) -> str:
        if preprocess in self.token_variants:
            return "tokens"
        if preprocess in self.feature_variants:
            return "features"
        return self.kind

    def attribute(self, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.name == name:
                return a
        return None

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "sides": list(self.sides),
                "components": {k: list(v) for k, v in self.components.items()},
                "attributes": [a.to_json() for a in self.attributes], "help": self.help}


@dataclass(frozen=True)
class VocabBlock:
    """A block of the shared vocabulary contributed by a plugin.

    Token ids never depend on which plugins are loaded or in what order: the vocabulary of a model is the
    special tokens followed by the blocks its tasks use, sorted by ``name``, and it is saved with every
    checkpoint. ``tokens`` are the block's token strings (unique inside the block); the model sees them as
    ``"<name>" + token`` in the saved vocabulary so that blocks never collide.
    """

    name: str
    tokens: tuple[str, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Metric:
    """A metric a plugin contributes. ``fn(predictions, references) -> float`` (higher is better unless
    ``higher_is_better`` is False); ``for_types`` lists the slot types it suits by default."""

    name: str
    fn: Callable[[list, list], float]
    for_types: tuple[str, ...] = ()
    higher_is_better: bool = True
    help: str = ""


@dataclass(frozen=True)
class Architecture:
    """A universal-model architecture: ``build(config: dict) -> nn.Module``; ``sizes`` maps size names to
    config dicts. Imported lazily: ``build`` imports torch inside."""

    name: str
    build: Callable[[dict], Any]
    sizes: dict[str, dict] = field(default_factory=dict)
    help: str = ""


@dataclass(frozen=True)
class DemoTask:
    """A bundled task for ``ofasys demo``.

    ``rows(split, n, seed) -> list[dict]`` generates (or loads from the package) ``n`` rows of ``split``
    (``"train"`` or ``"valid"``; valid rows never repeat train rows). ``metric`` names a registered metric;
    ``showcase(model, rows, out_dir) -> list[dict]`` (optional) writes gallery files for a few held-out rows and
    returns items ``{"title", "html"}`` for the demo page (paths relative to ``out_dir``).
    """

    name: str
    modality: str
    instruction: str
    rows: Callable[[str, int, int], list]
    metric: str
    n_train: int = 800
    n_valid: int = 100
    micro_batch_size: int = 16
    generation: dict = field(default_factory=dict)
    showcase: Callable[..., list] | None = None
