"""ofasys-audio against the core's plugin conformance suite (``ofasys.testing``): AUDIO as an input (speech
recognition) and an output (text to speech), PHONE as an input and an output, on the bundled corpus."""

from __future__ import annotations

import numpy as np

from ofasys.testing import BadInput, ModalityConformance
from ofasys_audio import corpus

_ROWS = corpus.rows()


def _rows(n, seed):
    # the shortest utterances keep the run cheap; seeds pick different ones
    short = sorted(_ROWS, key=lambda r: len(r["text"]))[:40]
    return [dict(short[(seed * 7 + i) % len(short)]) for i in range(n)]


class TestAudioConformance(ModalityConformance):
    slot_type = "AUDIO"
    distribution = "ofasys-audio"
    tasks = {"asr": "[AUDIO:wav] what is the text corresponding to the voice? -> [TEXT:text]",
             "tts": "[TEXT:text] speak this. -> [AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel]"}
    output_types = {"asr": {"text": str}, "tts": {"waveform": np.ndarray, "sample_rate": int}}
    generation = {"max_len": 6}
    bad_inputs = [
        BadInput("asr", "wav", "/no/such/file.flac", "audio file not found"),
        BadInput("asr", "wav", b"", "zero-length audio"),
        BadInput("asr", "wav", (np.full(1600, np.nan, np.float32), 16000), "NaN or infinite"),
        BadInput("asr", "wav", {"nothing": 1}, "an audio dict needs"),
        BadInput("asr", "wav", 3.5, "give a path, bytes, \\(array, sample_rate\\) or a dict"),
    ]

    def rows(self, task, n, seed):
        return _rows(n, seed)


class TestPhoneConformance(ModalityConformance):
    slot_type = "PHONE"
    distribution = "ofasys-audio"
    tasks = {"read_phones": "[PHONE:phones] what are the words? -> [TEXT:text]",
             "to_phones": "[TEXT:text] what are the phones? -> [PHONE:phones]"}
    output_types = {"read_phones": {"text": str}, "to_phones": {"phones": str}}
    bad_inputs = [
        BadInput("read_phones", "phones", "t 3: n | qq", "unknown phone 'qq'"),
        BadInput("read_phones", "phones", 7, "a PHONE value must be a string"),
    ]

    def rows(self, task, n, seed):
        return _rows(n, seed)
