"""Plugin discovery, isolation and the CLI, exercised the way a user meets them: installed distributions,
subprocesses, exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {
    "ofasys-text": {"TEXT"}, "ofasys-image": {"IMAGE", "BOX"}, "ofasys-audio": {"AUDIO", "PHONE"},
    "ofasys-video": {"VIDEO"}, "ofasys-motion": {"MOTION"}, "ofasys-struct": {"STRUCT"},
}
SEED_INSTRUCTIONS = [
    "[IMAGE:img] what does the image describe? -> [TEXT:cap]",
    "can text1 [TEXT:sent1] imply text2 [TEXT:sent2]? -> [TEXT:label,closed_set]",
    '[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [BOX:region]',
    "[IMAGE:img] detect the objects in the image. -> ([BOX:boxes] [TEXT:labels])*",
    "what is the complete image? caption: [TEXT:text] -> [IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]",
    "[AUDIO:wav] what is the text corresponding to the voice? -> [TEXT:text]",
    "[VIDEO:video] what does the video describe? -> [TEXT:cap]",
    '" [TEXT:src] " ; structured knowledge: " [STRUCT:database,max_length=876] " . generating sql code. -> [TEXT:tgt]',
    "what is the motion? [TEXT:text] -> [MOTION:motion]",
]


def ofasys(*args: str, env: dict | None = None, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    for k in ("OFASYS_PLUGINS", "OFASYS_DISABLE_PLUGINS", "OFASYS_PREFER", "OFASYS_STRICT_PLUGINS"):
        e.pop(k, None)
    if pythonpath:
        e["PYTHONPATH"] = pythonpath + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ofasys", *args], capture_output=True, text=True, env=e, timeout=120)


@pytest.fixture(scope="module")
def extra_plugins(tmp_path_factory) -> str:
    """The test-only plugin distributions, pip-installed (for real) into a directory put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    # built from copies: setuptools writes build/ and *.egg-info beside the sources, and a leftover build/ from an
    # earlier run (or a concurrent one) breaks the next build
    src = tmp_path_factory.mktemp("plugin_sources")
    pkgs = []
    for n in ("ofasys-sensor", "ofasys-broken", "ofasys-rival-text"):
        shutil.copytree(ROOT / "tests" / "plugin_packages" / n, src / n,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        pkgs.append(str(src / n))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *pkgs], check=True, capture_output=True, timeout=300)
    return str(target)


def test_plugins_json_lists_all_first_party_distributions():
    r = ofasys("plugins", "--json")
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    for dist, types in FIRST_PARTY.items():
        assert dist in listed, f"{dist} missing from `ofasys plugins --json`"
        assert set(listed[dist]["slot_types"]) == types
        assert listed[dist]["error"] is None
        assert "ofasys_register_slot_types" in listed[dist]["hooks"]
        assert listed[dist]["version"]


@pytest.mark.parametrize("instruction", SEED_INSTRUCTIONS)
def test_explain_seed_instructions(instruction):
    r = ofasys("explain", "--json", instruction)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["templates"][0]["decoder"], "the plan has an output side"
    r = ofasys("explain", instruction)
    assert r.returncode == 0 and "ofasys-" in r.stdout


def test_detection_group_is_planned_as_a_group():
    r = ofasys("explain", "--json", SEED_INSTRUCTIONS[3])
    plan = json.loads(r.stdout)
    dec = plan["templates"][0]["decoder"]
    assert len(dec) == 1 and "group" in dec[0]
    assert {plan["slots"][i["slot"]]["type"] for i in dec[0]["items"] if "slot" in i} == {"BOX", "TEXT"}


@pytest.mark.parametrize("instruction, expected", [
    ("[TEXT:x -> [TEXT:y]", "^"),
    ("[TEXT:x] [TEXT:y]", "->"),
    ("[TEXT:x,max_lenght=3] -> [TEXT:y]", "Did you mean 'max_length'"),
    ("[TEXT:x,max_length=many] -> [TEXT:y]", "integer"),
    ("[TEXT:x,closed_set] -> [TEXT:y]", "not valid on an input"),
    ("[IMAGEN:x] -> [TEXT:y]", "unknown slot type IMAGEN"),
    ("[TEXT:x] -> [VIDEO:v]", "cannot be an output"),
    ("[TEXT:x] -> [AUDIO:a] and text", "must be the only element"),
    ("[TEXT:x,preprocess=fancy] -> [TEXT:y]", "no preprocess variant 'fancy'"),
])
def test_malformed_instructions_exit_2_with_a_caret_and_no_traceback(instruction, expected):
    r = ofasys("explain", instruction)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    caret = [line for line in lines if set(line.strip()) == {"^"}]
    assert caret, r.stderr
    # the caret sits under the instruction line printed just above it
    i = lines.index(caret[0])
    assert lines[i - 1].strip().startswith(instruction.split()[0][:3])


def test_caret_points_at_the_misspelled_attribute():
    r = ofasys("explain", "[TEXT:x,uncasde] -> [TEXT:y]")
    lines = r.stderr.splitlines()
    caret = next(line for line in lines if line.strip() and set(line.strip()) == {"^"})
    source = lines[lines.index(caret) - 1]
    assert source[caret.index("^"):caret.index("^") + 7] == "uncasde"


def test_known_but_missing_plugin_says_what_to_install():
    r = ofasys("explain", "[IMAGE:img] caption? -> [TEXT:cap]", env={"OFASYS_DISABLE_PLUGINS": "ofasys-image"})
    assert r.returncode == 2
    assert "pip install ofasys-image" in r.stderr


def test_allow_list_limits_the_plugins():
    r = ofasys("plugins", "--json", env={"OFASYS_PLUGINS": "ofasys-text"})
    assert [p["name"] for p in json.loads(r.stdout)] == ["ofasys-text"]


def test_startup_does_not_import_torch():
    code = (
        "import sys, ofasys\n"
        "from ofasys.cli import app\n"
        "assert 'torch' not in sys.modules, 'import ofasys'\n"
        "for argv in (['--help'], ['plugins', '--json'], ['plugins'], ['explain', '[IMAGE:i] x -> [BOX:b]']):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'torchaudio', 'decord', 'tokenizers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout


@pytest.mark.slow
def test_third_party_plugin_works_after_pip_install(extra_plugins):
    env = {"OFASYS_DISABLE_PLUGINS": "ofasys-rival-text"}
    r = ofasys("plugins", "--json", pythonpath=extra_plugins, env=env)
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert listed["ofasys-sensor"]["slot_types"] == ["SENSOR"] and listed["ofasys-sensor"]["error"] is None
    r = ofasys("explain", "--json", "[SENSOR:s,channels=6] what is the activity? -> [TEXT:label]",
               pythonpath=extra_plugins, env=env)
    assert r.returncode == 0, r.stderr
    slot = json.loads(r.stdout)["slots"]["s"]
    assert slot["plugin"] == "ofasys-sensor" and slot["attrs"]["channels"] == 6


@pytest.mark.slow
def test_broken_plugin_is_isolated_and_reported(extra_plugins):
    env = {"OFASYS_DISABLE_PLUGINS": "ofasys-rival-text"}
    r = ofasys("plugins", "--json", pythonpath=extra_plugins, env=env)
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert "broken on purpose" in listed["ofasys-broken"]["error"]
    assert all(listed[d]["error"] is None for d in FIRST_PARTY)
    r = ofasys("explain", "[TEXT:x] -> [TEXT:y]", pythonpath=extra_plugins, env=env)
    assert r.returncode == 0, r.stderr
    r = ofasys("explain", "[BROKEN:x] -> [TEXT:y]", pythonpath=extra_plugins, env=env)
    assert r.returncode == 2 and "ofasys-broken" in r.stderr and "broken on purpose" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_two_distributions_claiming_one_slot_type(extra_plugins):
    r = ofasys("explain", "[TEXT:x] -> [TEXT:y]", pythonpath=extra_plugins)
    assert r.returncode == 2
    assert "ofasys-rival-text" in r.stderr and "ofasys-text" in r.stderr and "OFASYS_PREFER" in r.stderr
    r = ofasys("explain", "--json", "[TEXT:x] -> [TEXT:y]", pythonpath=extra_plugins,
               env={"OFASYS_PREFER": "TEXT=ofasys-text"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["slots"]["x"]["plugin"] == "ofasys-text"
