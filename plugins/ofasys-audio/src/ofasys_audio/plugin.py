"""Entry module of the AUDIO slot type. Imports only the standard library and ofasys; soundfile and
torchaudio are imported inside the factories."""

from __future__ import annotations

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType

AUDIO = SlotType(
    name="AUDIO",
    kind="features",
    help="Speech: a path, bytes, or (array, sample_rate); read with soundfile, resampled to 16 kHz.",
    components={
        "preprocess": ("audio_fbank", "audio_mel"),
        "adaptor": ("audio_fbank", "audio_mel"),
        "criterion": ("tts",),
        "generator": ("tts",),
        "postprocess": ("audio",),
    },
    output_fields=("waveform", "sample_rate"),
    attributes=(
        Attribute("sample_rate", "int", 16000, "Resample to this rate."),
        Attribute("max_duration", "float", 30.0, "Longest audio in seconds; longer input is cut."),
        Attribute("num_mel_bins", "int", 80, "Filterbank / mel bins."),
        Attribute("normalize", "str", "utterance", "Feature mean/variance normalisation.", ("encoder",),
                  choices=("utterance", "global", "none")),
        Attribute("spec_augment", "bool", False, "SpecAugment at training time.", ("encoder",)),
        Attribute("ctc_weight", "float", 0.0, "Weight of a CTC loss on phones over the encoder (ASR).", ("encoder",)),
    ),
)


@hookimpl
def ofasys_register_slot_types(register):
    register(AUDIO)
