"""Entry module of the AUDIO slot type (entry point ``AUDIO`` of the ``ofasys.slots`` group).

Imports only the standard library and ``ofasys``; soundfile, torch and torchaudio are imported inside the
factories.

* Input (speech recognition and other speech understanding): ``[AUDIO:wav]`` reads the column (a path, bytes,
  ``(array, sample_rate)`` or a dict) with soundfile, mixes it down to mono, resamples it to 16 kHz, computes 80
  Kaldi filterbanks, normalises them (``normalize``), applies SpecAugment at training time (``spec_augment``) and
  embeds them with a 4x convolutional subsampling (``audio_fbank`` adaptor, 1-D relative bias ``audio1d``).
  ``ctc_weight`` > 0 adds a CTC loss on phones over the encoder to the task's TEXT cross entropy.
* Output (text to speech): ``[AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel]`` alone right of ``->``: the
  decoder predicts normalised log-mel frames (pre-net, post-net, stop token; L1 + MSE + stop BCE) and a vocoder
  (Griffin-Lim by default) makes the waveform: outputs ``waveform``, ``sample_rate``, ``save_audio(path)``.
"""

from __future__ import annotations

from typing import Any, Callable

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, Metric, SlotType

SLOT_TYPE = "AUDIO"

AUDIO = SlotType(
    name=SLOT_TYPE,
    kind="features",
    help="Speech: a path, bytes, (array, sample_rate) or {'array', 'sampling_rate'}; read with soundfile, mixed "
         "down to mono, resampled to 16 kHz. As an output (text to speech) write "
         "[AUDIO:col,preprocess=audio_mel,adaptor=audio_mel].",
    components={
        "preprocess": ("audio_fbank", "audio_mel"),
        "adaptor": ("audio_fbank", "audio_mel"),
        "criterion": ("tts",),
        "generator": ("tts",),
        "postprocess": ("audio",),
    },
    output_fields=("waveform", "sample_rate", "duration"),
    attributes=(
        Attribute("sample_rate", "int", 16000, "Resample to this rate (Hz)."),
        Attribute("max_duration", "float", 30.0, "Longest audio in seconds (0 = no limit); see long_audio."),
        Attribute("long_audio", "str", "skip",
                  "What to do with audio longer than max_duration: skip (a counted, reported bad sample) or cut "
                  "(keep its first max_duration seconds).", choices=("skip", "cut")),
        Attribute("trim_silence", "bool", False,
                  "Cut leading and trailing silence (below -40 dBFS, keeping 0.1 s), as the bundled corpus was."),
        Attribute("num_mel_bins", "int", 80, "Filterbank / mel bins."),
        Attribute("normalize", "str", "utterance",
                  "Filterbank mean/variance normalisation: per utterance, global (statistics of the bundled corpus "
                  "or of cmvn_stats) or none.", ("encoder",), choices=("utterance", "global", "none")),
        Attribute("cmvn_stats", "str", None,
                  "JSON file of global statistics {'fbank80': {'mean': [...], 'std': [...]}, 'mel80': {...}} "
                  "(default: the bundled corpus's)."),
        Attribute("spec_augment", "bool", False, "SpecAugment (2 frequency + 2 time masks) at training time.",
                  ("encoder",)),
        Attribute("ctc_weight", "float", 0.0,
                  "Weight of a CTC loss on phones over the encoder, added to the TEXT output's cross entropy "
                  "((1-w) CE + w CTC).", ("encoder",)),
        Attribute("ctc_column", "str", "phones",
                  "Column of the phones the CTC loss uses (default 'phones'; without it the text target goes "
                  "through the shipped lexicon).", ("encoder",)),
        Attribute("frames_per_step", "int", 2, "Mel frames predicted per decoder step (audio_mel)."),
        Attribute("guided_attention", "float", 0.0,
                  "Text to speech: weight of a guided-attention loss pulling the decoder's cross-attention towards "
                  "the diagonal of (text position, frame) (Tachibana et al. 2017); 0 = off.", ("decoder",)),
        Attribute("vocoder", "str", "griffin_lim",
                  "Vocoder of an AUDIO output: griffin_lim, or a name registered with "
                  "ofasys_audio.vocoder.register_vocoder / the 'ofasys_audio.vocoders' entry points.", ("decoder",)),
    ),
)


def _variant(slot: Any, stage: str) -> str | None:
    if getattr(slot, "type", None) != SLOT_TYPE:
        return None
    return (getattr(slot, "components", None) or {}).get(stage) or AUDIO.components[stage][0]


@hookimpl
def ofasys_register_slot_types(register: Callable[..., None]) -> None:
    """Declare the AUDIO slot type."""
    register(AUDIO)


def _refuse_fbank_output(slot: Any) -> None:
    from ofasys.errors import PlanError

    raise PlanError(f"an AUDIO output predicts mel frames: write it as "
                    f"[AUDIO:{slot.column},preprocess=audio_mel,adaptor=audio_mel] (audio_fbank is input-only)")


@hookimpl
def ofasys_preprocess(slot: Any, ctx: Any) -> Any:
    """``audio_fbank`` (filterbanks of an input) or ``audio_mel`` (log-mel frames, the TTS target)."""
    v = _variant(slot, "preprocess")
    if v is None:
        return None
    if v == "audio_fbank":
        if slot.side == "decoder":
            _refuse_fbank_output(slot)
        from .preprocess import FbankPreprocessor

        return FbankPreprocessor(slot, ctx.vocab)
    if v == "audio_mel":
        from .preprocess import MelPreprocessor

        return MelPreprocessor(slot, ctx.vocab)
    return None


@hookimpl
def ofasys_adapt(slot: Any, ctx: Any) -> Any:
    """The ``audio_fbank`` or ``audio_mel`` adaptor, sized for the model."""
    if _variant(slot, "adaptor") is None:
        return None
    from .adaptors import build_adaptor

    return build_adaptor(slot, dict(ctx.model_config or {}))


def _ctc_audio_slot(ctx: Any) -> Any:
    plan = getattr(ctx, "plan", None)
    if plan is None or not getattr(plan, "templates", None):
        return None
    for s in plan.all_slots():
        if s.type == SLOT_TYPE and s.side == "encoder" and float((s.attrs or {}).get("ctc_weight") or 0) > 0:
            return s
    return None


@hookimpl
def ofasys_criterion(slot: Any, ctx: Any) -> Any:
    """``tts`` for an AUDIO output; for a TEXT output of a task whose AUDIO input sets ``ctc_weight`` > 0, the core's
    cross entropy plus CTC on phones. ``None`` otherwise (the core default applies)."""
    if getattr(slot, "side", None) != "decoder":
        return None
    if slot.type == SLOT_TYPE:
        from .criterion import TTSCriterion

        return TTSCriterion(slot.adaptor_key, guided_attention=float((slot.attrs or {}).get("guided_attention") or 0))
    if slot.type == "TEXT" and getattr(slot, "kind", "tokens") == "tokens":
        audio = _ctc_audio_slot(ctx)
        if audio is None:
            return None
        weight = float(audio.attrs["ctc_weight"])
        if weight >= 1.0:
            from ofasys.errors import PlanError

            raise PlanError(f"ctc_weight must be below 1 (it weighs CTC against the text cross entropy), not {weight}")
        if audio.kind != "features" or (audio.components or {}).get("adaptor", "audio_fbank") != "audio_fbank":
            from ofasys.errors import PlanError

            raise PlanError("ctc_weight needs the audio_fbank adaptor (it owns the CTC head)")
        from ofasys.model.criterion import TokenCriterion

        from .criterion import CTCTextCriterion

        return CTCTextCriterion(TokenCriterion(epsilon=0.1, pad=ctx.vocab.pad), weight, audio.adaptor_key,
                                audio.attrs.get("ctc_column") or "phones", slot.column, pad=ctx.vocab.pad)
    return None


@hookimpl
def ofasys_generate(slot: Any, ctx: Any) -> Any:
    """The autoregressive mel generator of an AUDIO output."""
    if _variant(slot, "generator") is None or slot.side != "decoder":
        return None
    from .generate import TTSGenerator

    a = slot.attrs or {}
    return TTSGenerator(slot.adaptor_key, int(a.get("sample_rate") or 16000), float(a.get("max_duration") or 30.0))


@hookimpl
def ofasys_postprocess(slot: Any, ctx: Any) -> Any:
    """Vocoder and output fields of an AUDIO output."""
    if _variant(slot, "postprocess") is None or slot.side != "decoder":
        return None
    from .postprocess import AudioPostprocessor

    return AudioPostprocessor(slot, ctx.vocab)


@hookimpl
def ofasys_register_demo_tasks(register: Callable[..., None]) -> None:
    """``audio_asr`` (speech recognition on a held-out voice; the gallery plays recordings with their transcript)
    and ``audio_tts`` (text to speech; the gallery writes WAV files with players), from the bundled corpus."""
    from .demo import demo_tasks

    for task in demo_tasks():
        register(task)


@hookimpl
def ofasys_register_metrics(register: Callable[..., None]) -> None:
    """``wer`` and ``cer`` (for speech recognition; name them in the task's metrics) and ``mcd`` (the default of
    AUDIO outputs). All lower is better."""
    from . import metrics

    register(Metric("wer", metrics.wer, higher_is_better=False,
                    help="Corpus word error rate (%), lower-cased, punctuation removed."))
    register(Metric("cer", metrics.cer, higher_is_better=False,
                    help="Corpus character error rate (%), lower-cased, punctuation removed."))
    register(Metric("mcd", metrics.mcd, for_types=(SLOT_TYPE,), higher_is_better=False,
                    help="Mel cepstral distortion (dB, 12 cepstra, DTW-aligned) of generated against reference audio."))
