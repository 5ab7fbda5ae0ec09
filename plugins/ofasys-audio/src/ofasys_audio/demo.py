"""Tasks this plugin contributes to ``ofasys demo`` (data: the bundled espeak-ng corpus, no system package).

* ``audio_asr``: speech recognition with the joint CTC + cross-entropy loss; train on three voices, held out on
  the voice ``en-029+f2`` (a speaker never heard in training); metric ``wer``. The gallery plays four held-out
  recordings with their transcript.
* ``audio_tts``: text to speech in one voice and speed (``en-us``, 140 words per minute; 4 mel frames per decoder
  step, guided attention); held out on three texts never spoken in training; metric ``mcd``. The gallery writes the generated speech of the held-out texts as WAV files
  (Griffin-Lim) with an ``<audio>`` player each.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

ASR_INSTRUCTION = "[AUDIO:wav,ctc_weight=0.5,trim_silence] what is the text corresponding to the voice? -> [TEXT:text]"
TTS_INSTRUCTION = ("[TEXT:text] speak this. -> "
                   "[AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel,frames_per_step=4,guided_attention=1]")
TTS_VOICE, TTS_SPEED = "en-us", 140
TTS_HELD_OUT = ("two five nine", "seven eight", "turn right")


def _fill(rows: list[dict], n: int) -> list[dict]:
    """``n`` rows: the list cycled (the corpus is small) or cut."""
    return [rows[i % len(rows)] for i in range(n)] if rows else []


def asr_rows(split: str, n: int, seed: int) -> list[dict]:
    """Train: the three training voices; valid: the held-out voice (in corpus order, so valid never repeats
    train)."""
    from . import corpus

    train, held = corpus.splits()
    return _fill(train, n) if split == "train" else held[:n]


def tts_rows(split: str, n: int, seed: int) -> list[dict]:
    """Train: every text of the voice ``en-us`` at 140 wpm except three; valid: those three texts."""
    from . import corpus

    rows = [r for r in corpus.rows() if r["voice"] == TTS_VOICE and r["speed"] == TTS_SPEED]
    if split == "train":
        return _fill([r for r in rows if r["text"] not in TTS_HELD_OUT], n)
    return [r for r in rows if r["text"] in TTS_HELD_OUT][:n]


def _audio_tag(name: str) -> str:
    return f"<audio controls src='{html.escape(name)}'></audio>"


def asr_showcase(served, rows: list[dict], out_dir) -> list[dict]:
    """Four held-out recordings (copied next to the page) with the reference and the model's transcript."""
    out_dir = Path(out_dir)
    picked = rows[:4]
    hyps = served.inference(ASR_INSTRUCTION, data=[{"wav": r["wav"]} for r in picked]).text
    items = []
    for i, (r, hyp) in enumerate(zip(picked, hyps)):
        name = f"audio_asr_{i}{Path(r['wav']).suffix}"
        shutil.copyfile(r["wav"], out_dir / name)
        items.append({"title": r["text"],
                      "html": f"{_audio_tag(name)}<p>reference: <code>{html.escape(r['text'])}</code><br>"
                              f"transcript: <b>{html.escape(str(hyp))}</b></p>"})
    return items


def tts_showcase(served, rows: list[dict], out_dir) -> list[dict]:
    """The generated speech of each held-out text as a WAV file with a player."""
    out_dir = Path(out_dir)
    picked, seen = [], set()
    for r in rows:
        if r["text"] not in seen:
            picked.append(r)
            seen.add(r["text"])
    outs = served.inference(TTS_INSTRUCTION, data=[{"text": r["text"]} for r in picked])
    items = []
    for i, (r, o) in enumerate(zip(picked, outs)):
        name = f"audio_tts_{i}.wav"
        o.save_audio(out_dir / name)
        items.append({"title": r["text"],
                      "html": f"<p>text: <code>{html.escape(r['text'])}</code> ({o.duration:.2f} s)</p>"
                              f"{_audio_tag(name)}"})
    return items


def demo_tasks() -> list:
    """The two AUDIO demo tasks."""
    from ofasys.spec import DemoTask

    return [
        DemoTask(name="audio_asr", modality="audio", instruction=ASR_INSTRUCTION, rows=asr_rows, metric="wer",
                 n_train=408, n_valid=68, micro_batch_size=16, showcase=asr_showcase),
        DemoTask(name="audio_tts", modality="audio", instruction=TTS_INSTRUCTION, rows=tts_rows, metric="mcd",
                 n_train=124, n_valid=3, micro_batch_size=16, showcase=tts_showcase),
    ]
