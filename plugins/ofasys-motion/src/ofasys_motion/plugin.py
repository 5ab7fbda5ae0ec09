"""Entry module of the MOTION slot type (entry point ``MOTION`` of the ``ofasys.slots`` group).

Imports only the standard library and ``ofasys``; numpy, torch and matplotlib are imported inside the factories.

* Input (motion captioning): ``[MOTION:motion] what is the person doing? -> [TEXT:caption]``: the clip is read
  (a path to .npy/.npz/.bvh, an array of features, a dict or a Clip), resampled to ``sample_rate``, cropped,
  normalised and embedded frame by frame by the ``motion_6d`` adaptor.
* Output (text to motion): ``[TEXT:text] -> [MOTION:motion]``: a diffusion model on the universal decoder (run
  non-causally as a denoiser), trained with the ``diffusion`` criterion and sampled with the ``ddim`` generator
  (``steps``, ``guidance``). Outputs ``motion`` (features array), ``positions``, ``fps``, ``clip`` and
  ``save_bvh(path)``, ``save_npz(path)``, ``save_gif(path)``.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType

SLOT_TYPE = "MOTION"

MOTION = SlotType(
    name=SLOT_TYPE,
    kind="features",
    help="A motion clip of the small 11-joint skeleton: per-frame root velocity (heading frame) and height, and "
         "6-D joint rotations; a path (.npy/.npz/.bvh), a (frames, 69) array, {'motion', 'fps'} or a Clip.",
    components={
        "preprocess": ("motion_6d",),
        "adaptor": ("motion_6d",),
        "criterion": ("diffusion",),
        "generator": ("ddim",),
        "postprocess": ("motion",),
    },
    output_fields=("motion", "positions", "fps"),
    attributes=(
        Attribute("min_length", "int", 16, "Shortest clip in frames (after resampling); shorter clips are bad "
                                           "samples."),
        Attribute("max_length", "int", 64, "Longest clip in frames; longer clips are cropped (randomly in "
                                           "training). An output generates this many frames unless window is set."),
        Attribute("sample_rate", "int", 20, "Frames per second after resampling."),
        Attribute("window", "int", None, "Train on random windows of this many frames (centred at evaluation)."),
        Attribute("stats", "str", None, "JSON file of normalisation statistics {'mean': [...], 'std': [...]} "
                                        "(default: the bundled procedural corpus's)."),
        Attribute("prediction", "str", "x0", "Diffusion target.", ("decoder",), choices=("x0", "epsilon")),
        Attribute("steps", "int", 50, "DDIM sampling steps.", ("decoder",)),
        Attribute("guidance", "float", 1.0, "Classifier-free guidance scale (1 = none).", ("decoder",)),
        Attribute("cond_dropout", "float", 0.1, "Probability of training a sample without its condition "
                                                "(needed for guidance).", ("decoder",)),
        Attribute("loss_weight", "float", 1.0, "Multiplies the per-element diffusion loss (see the README on "
                                               "balancing it against token losses).", ("decoder",)),
    ),
)


def _variant(slot: Any, stage: str) -> str | None:
    if getattr(slot, "type", None) != SLOT_TYPE:
        return None
    return (getattr(slot, "components", None) or {}).get(stage) or MOTION.components[stage][0]


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the MOTION slot type."""
    register(MOTION)


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """``motion_6d``: a clip -> normalised features."""
    if _variant(slot, "preprocess") != "motion_6d":
        return None
    from .preprocess import MotionPreprocessor

    return MotionPreprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The ``motion_6d`` adaptor (frame MLPs, noise-level embedding, null condition)."""
    if _variant(slot, "adaptor") != "motion_6d":
        return None
    from .adaptors import build_adaptor

    return build_adaptor(slot, dict(ctx.model_config or {}))


def _decoder_attrs(slot: Any) -> dict:
    return slot.attrs or {}


@hookimpl
def ofasys_criterion(slot: Any, ctx: Any) -> Any:
    """``diffusion`` for a MOTION output."""
    if _variant(slot, "criterion") != "diffusion" or slot.side != "decoder":
        return None
    from .diffusion import DiffusionCriterion

    a = _decoder_attrs(slot)
    return DiffusionCriterion(slot.adaptor_key, a.get("prediction") or "x0",
                              float(0.1 if a.get("cond_dropout") is None else a["cond_dropout"]),
                              float(1.0 if a.get("loss_weight") is None else a["loss_weight"]))


@hookimpl
def ofasys_generate(slot: Any, ctx: Any) -> Any:
    """``ddim``: the non-autoregressive sampler of a MOTION output."""
    if _variant(slot, "generator") != "ddim" or slot.side != "decoder":
        return None
    from .diffusion import DDIMGenerator
    from .preprocess import slot_settings

    a = _decoder_attrs(slot)
    s = slot_settings(slot)
    return DDIMGenerator(slot.adaptor_key, a.get("prediction") or "x0", int(a.get("steps") or 50),
                         float(1.0 if a.get("guidance") is None else a["guidance"]), s["window"] or s["max_length"])


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """Output fields of a MOTION output."""
    if _variant(slot, "postprocess") != "motion" or slot.side != "decoder":
        return None
    from .postprocess import MotionPostprocessor

    return MotionPostprocessor(slot, ctx.vocab)


def _lazy(name: str) -> Callable:
    def fn(predictions, references):
        from . import metrics

        return getattr(metrics, name)(predictions, references)

    fn.__name__ = name
    return fn


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """``motion_class_accuracy`` (default of MOTION outputs), ``joint_error`` (cm, lower is better) and
    ``action_accuracy`` (captions naming the right action)."""
    register(Metric("motion_class_accuracy", _lazy("motion_class_accuracy"), for_types=(SLOT_TYPE,),
                    help="% of generated clips that a classifier trained on the procedural generator puts in the "
                         "reference clip's action class."))
    register(Metric("joint_error", _lazy("joint_error"), higher_is_better=False,
                    help="Mean per-joint position error (cm) of generated against reference clips."))
    register(Metric("action_accuracy", _lazy("action_accuracy"),
                    help="% of captions naming the reference caption's action (walk/run/jump/wave/turn/sit)."))


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """Text to motion (with a GIF showcase) and motion captioning on the procedural corpus."""
    from .tasks import demo_tasks

    for t in demo_tasks():
        register(t)
