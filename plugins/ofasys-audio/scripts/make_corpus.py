"""Build the bundled spoken corpus of ofasys-audio with espeak-ng (run once; the output is committed).

    python plugins/ofasys-audio/scripts/make_corpus.py            # needs `espeak-ng` on PATH

Writes ``src/ofasys_audio/data/speech/<id>.flac`` (8 kHz mono, 16-bit FLAC), ``src/ofasys_audio/data/speech.jsonl``
(one row per utterance: ``id``, ``file``, ``text``, ``phones``, ``voice``, ``speed``, ``kind``) and
``src/ofasys_audio/data/global_cmvn.json`` (per-bin fbank and log-mel statistics for ``normalize=global`` and the
TTS targets) and ``src/ofasys_audio/data/lexicon.tsv`` (word -> phones, the grapheme-to-phoneme table the PHONE slot's ``g2p``
attribute uses). Phones are espeak-ng's ASCII phoneme mnemonics (``espeak-ng -x``) with stress marks removed;
``|`` separates words. Everything is deterministic for a given espeak-ng version.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

DATA = Path(__file__).resolve().parents[1] / "src" / "ofasys_audio" / "data"
RATE = 8000  # stored rate (telephone band keeps the corpus small); loading resamples to 16 kHz

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COMMANDS = ["stop", "go", "yes", "no", "turn left", "turn right", "go up", "go down", "open the door",
            "close the door", "lights on", "lights off"]
SENTENCES = ["the cat sat on the mat", "call me at nine", "it is cold today", "turn the lights on"]
DIGIT_SEQUENCES = ["one two", "three four", "five six", "seven eight", "nine zero", "two five nine", "four one seven",
                   "eight three six"]

# espeak-ng voices and speeds (words per minute); the last voice is held out by ofasys_audio.corpus.splits()
VOICES = ["en-us", "en-gb", "en-us+f3", "en-029+f2"]
SPEEDS = [140, 190]
HELD_OUT_VOICE = "en-029+f2"


def phones_of(text: str, voice: str = "en-us") -> str:
    """espeak-ng's phonemes of ``text``: space-separated phones, ``|`` between words, stress marks removed."""
    out = subprocess.run(["espeak-ng", "-q", "-x", "--sep=_", "-v", voice, text], capture_output=True, text=True,
                         check=True).stdout
    words = []
    for w in out.split():
        ph = [re.sub(r"[',;#]", "", p) for p in w.split("_")]
        ph = [p for p in ph if p]
        if ph:
            words.append(" ".join(ph))
    return " | ".join(words)


def synth(text: str, voice: str, speed: int) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True,
                         check=True).stdout
    data, rate = sf.read(io.BytesIO(wav), dtype="float32")
    import torch
    import torchaudio

    x = torchaudio.functional.resample(torch.from_numpy(data), rate, RATE).numpy()
    # trim leading/trailing silence (espeak-ng pads ~0.1 s at both ends)
    loud = np.nonzero(np.abs(x) > 0.01)[0]
    if len(loud):
        x = x[max(loud[0] - 800, 0): loud[-1] + 800]
    return x


def main() -> None:
    texts = [(t, "digits") for t in DIGITS + DIGIT_SEQUENCES] + [(t, "command") for t in COMMANDS] + \
            [(t, "sentence") for t in SENTENCES]
    out_dir = DATA / "speech"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.flac"):
        old.unlink()
    rows = []
    for ti, (text, kind) in enumerate(texts):
        phones = phones_of(text)
        for vi, voice in enumerate(VOICES):
            for speed in SPEEDS:
                uid = f"{ti:02d}-{vi}-{speed}"
                x = synth(text, voice, speed)
                sf.write(out_dir / f"{uid}.flac", x, RATE, subtype="PCM_16", format="FLAC")
                rows.append({"id": uid, "file": f"speech/{uid}.flac", "text": text, "phones": phones,
                             "voice": voice, "speed": speed, "kind": kind})
    with open(DATA / "speech.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    write_lexicon(t for t, _ in texts)
    write_stats()
    size = sum(p.stat().st_size for p in out_dir.glob("*.flac"))
    print(f"{len(rows)} utterances, {size / 1e6:.2f} MB of FLAC", file=sys.stderr)


def write_lexicon(texts) -> None:
    lexicon = {w: phones_of(w) for t in texts for w in t.split()}
    with open(DATA / "lexicon.tsv", "w") as f:
        for w in sorted(lexicon):
            f.write(f"{w}\t{lexicon[w]}\n")


def write_stats() -> None:
    """Global fbank and log-mel statistics of the corpus (``data/global_cmvn.json``), read back at 16 kHz."""
    sys.path.insert(0, str(DATA.parents[1]))
    from ofasys_audio.audio_io import load_audio
    from ofasys_audio.features import compute_stats

    files = sorted((DATA / "speech").glob("*.flac"))
    stats = compute_stats(load_audio(str(p)).samples for p in files)
    with open(DATA / "global_cmvn.json", "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
