"""The ``TEXT`` slot type: the module registered under the ``ofasys.slots`` entry point ``TEXT``.

Imports only the standard library and ``ofasys``; the tokenizer, preprocessor, postprocessor and metrics
modules (and through them ``tokenizers`` and ``sacrebleu``) are imported inside the hooks that need them.

TEXT slots are token slots: they use the core's shared token embedding, label-smoothed cross entropy and
sequence generator, so this plugin implements no ``ofasys_adapt``, ``ofasys_criterion`` or
``ofasys_generate``.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType, VocabBlock

SLOT_TYPE = "TEXT"
BLOCK = "text"
DEFAULT_MAX_LENGTH = 128

TEXT = SlotType(
    name=SLOT_TYPE,
    kind="tokens",
    vocab_blocks=(BLOCK,),
    components={"preprocess": ("text",), "postprocess": ("text",)},
    output_fields=("text",),
    help="Text in any language, encoded with a byte-level BPE into the shared vocabulary's 'text' block. "
         "Plain text written in an instruction is a TEXT slot too.",
    attributes=(
        Attribute("max_length", "int", DEFAULT_MAX_LENGTH,
                  help="Keep at most this many BPE tokens (longer text is truncated at the end); 0 = no limit."),
        Attribute("uncased", "bool", False, help="Lower-case the text before encoding."),
        Attribute("no_punctuation", "bool", False,
                  help="Remove punctuation before encoding (dashes, '/', '\\', '_' and '|' become spaces)."),
        Attribute("mask_ratio", "float", 0.0, sides=("encoder",),
                  help="Training only: BART text infilling. Spans (Poisson lengths, lambda=3) covering this "
                       "fraction of the tokens are each replaced by one <mask>."),
        Attribute("noise_ratio", "float", 0.0, sides=("encoder",),
                  help="Training only: replace this fraction of the (unmasked) tokens by random text tokens."),
        Attribute("no_loss", "bool", False, sides=("decoder",),
                  help="Teacher-force this output text but leave it out of the loss."),
        Attribute("closed_set", "list", None, sides=("decoder",), flag_or_value=True,
                  help="Generate only one of a fixed set of answers: closed_set=\"yes|no|maybe\", or the bare "
                       "flag to use the distinct values of the column in the training data. Label smoothing is "
                       "confined to the answers' tokens."),
    ),
)


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the TEXT slot type."""
    register(TEXT)


@hookimpl
def ofasys_register_vocab_blocks(register: Callable[..., None]) -> None:
    """Contribute the ``text`` block: the tokens of the BPE in use (``$OFASYS_TEXT_TOKENIZER`` or the shipped
    one), ordered by id. The file is read once per path with :mod:`json`."""
    from .tokenizer import load_vocab_tokens, tokenizer_path

    path = tokenizer_path()
    register(VocabBlock(BLOCK, load_vocab_tokens(path), description=f"byte-level BPE text tokens ({path})"))


def _is_text(slot: Any, stage: str) -> bool:
    return getattr(slot, "type", None) == SLOT_TYPE and \
        (getattr(slot, "components", None) or {}).get(stage) in (None, "text")


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_text.preprocess.TextPreprocessor` for TEXT slots (plain-text literals included)."""
    if not _is_text(slot, "preprocess"):
        return None
    from .preprocess import TextPreprocessor

    return TextPreprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """A :class:`~ofasys_text.postprocess.TextPostprocessor` for TEXT output slots bound to a column."""
    if not _is_text(slot, "postprocess") or getattr(slot, "side", None) != "decoder" \
            or getattr(slot, "literal", None) is not None:
        return None
    from .postprocess import TextPostprocessor

    return TextPostprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """Contribute ``accuracy``, ``exact_match``, ``bleu`` and ``rouge_l`` (all 0-100, higher is better).

    :mod:`ofasys_text.metrics` is torch-free and imports ``sacrebleu`` only when BLEU is computed.
    """
    from . import metrics

    for name, help_text in (
            ("accuracy", "Percentage of predictions matching a reference after normalisation (lower-case, no "
                         "punctuation or articles, collapsed whitespace)."),
            ("exact_match", "Percentage of predictions identical to a reference (surrounding whitespace ignored)."),
            ("bleu", "Corpus BLEU (sacrebleu, 13a tokenisation), 0-100."),
            ("rouge_l", "Mean best ROUGE-L F1 (LCS over lower-cased words) against the references, 0-100.")):
        register(Metric(name, getattr(metrics, name), for_types=(SLOT_TYPE,), help=help_text))


@hookimpl
def ofasys_register_demo_tasks(register):
    from .demo import demo_tasks

    for task in demo_tasks():
        register(task)
