"""The bundled spoken corpus (``data/speech.jsonl`` + ``data/speech/*.flac``), made by ``scripts/make_corpus.py``
with espeak-ng: 34 English texts (digits, digit sequences, short commands, short sentences), 4 voices
(``en-us``, ``en-gb``, ``en-us+f3``, ``en-029+f2``) at 140 and 190 words per minute, 8 kHz 16-bit FLAC.

Rows carry ``wav`` (absolute path of the FLAC), ``text``, ``phones`` (espeak-ng phonemes, ``|`` between words),
``voice``, ``speed``, ``kind``, ``id``. :func:`splits` holds out one voice entirely.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
HELD_OUT_VOICE = "en-029+f2"


def rows() -> list[dict]:
    """Every utterance of the bundled corpus, in file order."""
    out = []
    with open(DATA / "speech.jsonl") as f:
        for line in f:
            r = json.loads(line)
            r["wav"] = str(DATA / r.pop("file"))
            out.append(r)
    return out


def splits(held_out_voice: str = HELD_OUT_VOICE) -> tuple[list[dict], list[dict]]:
    """(train, held_out): the held-out split is every utterance of ``held_out_voice`` (a speaker never heard in
    training)."""
    all_rows = rows()
    return [r for r in all_rows if r["voice"] != held_out_voice], [r for r in all_rows if r["voice"] == held_out_voice]
