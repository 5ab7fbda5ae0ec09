"""`ofasys demo` end to end with a few updates: the files a user opens afterwards exist and make sense."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_writes_results_checkpoint_and_page(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "ofasys", "demo", "--steps", "8", "--output", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 8
    assert {"text_sentiment", "text_reverse", "text_first_word"} <= set(results["tasks"])
    for name, res in results["tasks"].items():
        assert res["score"] is not None and 0.0 <= res["score"] <= 100.0, name
    assert (out / "run" / "checkpoint" / "model.safetensors").exists()
    page = (out / "index.html").read_text()
    assert "text_reverse" in page and "<table>" in page
    assert "held-out scores" in r.stdout
