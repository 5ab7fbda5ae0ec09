"""The hooks a modality plugin implements, grouped by phase.

A plugin is a module registered through the ``ofasys.slots`` entry-point group, one entry point per slot type
(``IMAGE = "ofasys_image.plugin"``). It implements any of these hooks with ``@ofasys.hookimpl``. Its module
imports only the standard library and ``ofasys``: torch and other heavy libraries are imported inside the
factories.

Registration hooks receive a ``register`` callback (new keyword arguments never break old plugins). Factory
hooks are called **once per slot when a plan is built** and return an object that the hot paths call directly;
they are ``firstresult``: the first non-``None`` result wins, so an implementation returns ``None`` for a slot
whose ``type`` (or chosen variant) is not its own.

Lifecycle of one slot::

    instruction --parse--> Slot --plan--> SlotPlan
        ofasys_preprocess  -> Preprocessor   (per sample, in DataLoader workers)  -> Tokens | Features
        ofasys_adapt       -> Adaptor         (nn.Module inside the universal model: embeds features)
        ofasys_criterion   -> Criterion       (training loss of an output slot)
        ofasys_generate    -> Generator       (decoding of an output slot)
        ofasys_postprocess -> Postprocessor   (prediction -> output fields)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .components import BuildContext, Postprocessor, Preprocessor
    from .plan import SlotPlan

PROJECT = "ofasys"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------------------------- registration


@hookspec
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the slot types this plugin provides.

    Called when the plugin is loaded (once per process). Call ``register(slot_type)`` with an
    :class:`ofasys.spec.SlotType` for each type: its attributes (name, type, default, sides), component
    variants per lifecycle stage (the first is the default), and whether it yields tokens or features.

    :param register: ``register(slot_type: SlotType)``.
    :returns: nothing; all implementations are called.
    """


@hookspec
def ofasys_register_vocab_blocks(register: Callable[..., None], names: "frozenset[str]") -> None:
    """Contribute blocks of the shared vocabulary (text BPE, box bins, image codes, phones).

    Called when a vocabulary is built for a set of tasks; only blocks named by the planned slots'
    ``vocab_blocks`` are used. Ids never depend on plugin load order: blocks are laid out sorted by name.

    :param register: ``register(block: VocabBlock)``.
    :param names: the block names the vocabulary needs. A plugin whose blocks are generated from their name
        (IMAGE's ``code<size>`` for a codebook of any size) registers those; fixed blocks may ignore it
        (an implementation may leave this parameter out).
    :returns: nothing; all implementations are called.
    """


@hookspec
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """Contribute evaluation metrics (accuracy, BLEU, WER, IoU...).

    Called when a task's metrics are resolved.

    :param register: ``register(metric: Metric)``.
    :returns: nothing; all implementations are called.
    """


@hookspec
def ofasys_register_architectures(register: Callable[..., None]) -> None:
    """Contribute universal-model architectures besides the core's ``ofa`` one.

    Called when a model is built from a configuration that names an architecture.

    :param register: ``register(arch: Architecture)``.
    :returns: nothing; all implementations are called.
    """


@hookspec
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """Contribute the bundled tasks ``ofasys demo`` trains (data generated or shipped in the package).

    Called by ``ofasys demo`` after every installed plugin is loaded.

    :param register: ``register(task: DemoTask)``.
    :returns: nothing; all implementations are called.
    """


# --------------------------------------------------------------------------------------------- slot lifecycle


@hookspec(firstresult=True)
def ofasys_preprocess(slot: "SlotPlan", ctx: "BuildContext") -> "Preprocessor | None":
    """Build the preprocessor of one slot.

    Called once per slot (plain text included, as a ``TEXT`` slot with ``literal`` set) when a task's plan is
    turned into a pipeline. The result is pickled into DataLoader workers and called once per sample
    (once per item for a slot inside a repetition group).

    :param slot: the planned slot: ``type``, ``column``, typed ``attrs``, chosen ``components`` and ``side``.
    :param ctx: the vocabulary, model configuration and whole plan.
    :returns: a :class:`ofasys.components.Preprocessor`, or ``None`` if the slot is not this plugin's.
        Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofasys_adapt(slot: "SlotPlan", ctx: "BuildContext") -> Any:
    """Build the adaptor (an ``nn.Module``) that embeds a feature slot into the model width.

    Called once per distinct adaptor key (``slot.adaptor_key``) when a model is built or grows a task; the
    module is owned by the universal model and saved in its checkpoint. Token slots use the core's shared
    token embedding and need no adaptor.

    :param slot: the planned slot.
    :param ctx: the vocabulary and model configuration (``d_model``, ``n_heads``, ``size``...).
    :returns: an :class:`ofasys.model.adaptor.Adaptor`, or ``None``. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofasys_criterion(slot: "SlotPlan", ctx: "BuildContext") -> Any:
    """Build the training criterion of an output (decoder-side) slot.

    Called once per task when its pipeline is built. Token targets default to the core's label-smoothed cross
    entropy when every plugin returns ``None``.

    :param slot: the planned output slot.
    :param ctx: the vocabulary, model configuration and plan.
    :returns: a :class:`ofasys.model.criterion.Criterion`, or ``None``. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofasys_generate(slot: "SlotPlan", ctx: "BuildContext") -> Any:
    """Build the generator that decodes an output slot at inference and evaluation.

    Called once per task when its pipeline is built. Token targets default to the core's sequence generator
    (greedy, beam search, sampling, constraints) when every plugin returns ``None``; feature targets (speech,
    motion) provide their own, autoregressive or not.

    :param slot: the planned output slot.
    :param ctx: the vocabulary, model configuration and plan.
    :returns: a :class:`ofasys.generation.Generator`, or ``None``. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def ofasys_postprocess(slot: "SlotPlan", ctx: "BuildContext") -> "Postprocessor | None":
    """Build the postprocessor that turns an output slot's prediction into user-facing fields.

    Called once per output slot when a task's pipeline is built.

    :param slot: the planned output slot.
    :param ctx: the vocabulary, model configuration and plan.
    :returns: a :class:`ofasys.components.Postprocessor`, or ``None``. Stops at the first non-``None`` result.
    """
