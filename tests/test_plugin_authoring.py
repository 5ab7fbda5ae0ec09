"""Third-party plugin authoring, as an author meets it: `ofasys plugins new` writes a package that installs into a
fresh environment and passes its own tests and the conformance suite; `ofasys plugins` reports broken,
out-of-range and conflicting plugins and `--hook` shows who implements a hook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ofasys.errors import ConfigError
from ofasys.plugins import core_requirement_conflict
from ofasys.templates import core_range, render_plugin

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "tests" / "plugin_packages"
_ENV_KEYS = ("OFASYS_PLUGINS", "OFASYS_DISABLE_PLUGINS", "OFASYS_PREFER", "OFASYS_STRICT_PLUGINS")


def _env(extra: dict | None = None, pythonpath: str | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    e["OMP_NUM_THREADS"] = "1"
    if pythonpath:
        e["PYTHONPATH"] = pythonpath + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra or {})
    return e


def ofasys(*args: str, python: str = sys.executable, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "ofasys", *args], capture_output=True, text=True, env=_env(**kw),
                          timeout=300)


# ------------------------------------------------------------------------------------------------ template
def test_new_writes_a_complete_package(tmp_path):
    r = ofasys("plugins", "new", "ofasys-wave", "--slot", "WAVE", "--output", str(tmp_path))
    assert r.returncode == 0, r.stderr
    root = tmp_path / "ofasys-wave"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"pyproject.toml", "README.md", "src/ofasys_wave/plugin.py", "src/ofasys_wave/components.py",
            "tests/test_conformance.py", "tests/test_plugin.py", "tests/conftest.py"} <= files
    pyproject = (root / "pyproject.toml").read_text()
    assert 'WAVE = "ofasys_wave.plugin"' in pyproject and f'"ofasys{core_range()}"' in pyproject
    assert not any("{{" in (root / f).read_text() for f in files)
    # the entry module follows the rule it is tested for: no torch at module level
    assert "import torch" not in (root / "src/ofasys_wave/plugin.py").read_text()
    again = ofasys("plugins", "new", "ofasys-wave", "--slot", "WAVE", "--output", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.parametrize("name, slot, message", [
    ("ofasys-wave", "wave", "did you mean 'WAVE'"),
    ("ofasys-wave", "TEXT", "provided by ofasys-text"),
    ("-bad name", "WAVE", "not a valid distribution name"),
    ("ofasys", "WAVE", "ofasys namespace"),
])
def test_new_refuses_bad_names(tmp_path, name, slot, message):
    with pytest.raises(ConfigError, match=message):
        render_plugin(name, slot, tmp_path)


def _fresh_venv(where: Path) -> Path:
    """A new virtual environment that sees the development environment's packages (torch, ofasys, pip...) through
    a .pth file, but has its own site-packages to install into: no network needed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    dev = sysconfig.get_paths()["purelib"]
    Path(purelib, "_ofasys_dev_env.pth").write_text(f"import site; site.addsitedir({dev!r})\n")
    return python


@pytest.mark.slow
def test_generated_package_installs_into_a_fresh_environment_and_passes_its_tests(tmp_path):
    root = render_plugin("ofasys-wave", "WAVE", tmp_path / "src")
    python = _fresh_venv(tmp_path / "venv")
    # before installing, the fresh environment does not know WAVE
    r = ofasys("explain", "[WAVE:values] rising? -> [TEXT:trend]", python=str(python))
    assert r.returncode == 2 and "unknown slot type WAVE" in r.stderr
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(root)],
                   check=True, capture_output=True, timeout=300, env=_env())
    r = ofasys("plugins", "--json", python=str(python))
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert listed["ofasys-wave"]["slot_types"] == ["WAVE"] and listed["ofasys-wave"]["status"] == "ok"
    assert {"ofasys_preprocess", "ofasys_adapt"} <= set(listed["ofasys-wave"]["hooks"])
    # the development environment itself is untouched
    assert "ofasys-wave" not in ofasys("plugins", "--json").stdout
    # one training step with an instruction naming the slot type, from the installed package
    code = ("from ofasys import GeneralistModel, Task, Trainer\n"
            "from ofasys_wave import data\n"
            "t = Task(name='trend', instruction='is [WAVE:values] going up? -> [TEXT:trend,closed_set]',\n"
            "         micro_batch_size=4)\n"
            "t.add_dataset(data.rows(8, 0), 'train')\n"
            "r = Trainer(max_steps=1, warmup_steps=0, threads=1, output_dir=%r, tensorboard=False)"
            ".fit(GeneralistModel('nano'), [t])\n"
            "print('STEPS', r.steps, 'PLUGIN', t.plan.slots['values'].plugin)\n" % str(tmp_path / "run"))
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=_env(), timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "STEPS 1 PLUGIN ofasys-wave" in r.stdout
    # its own tests and the conformance suite, unedited, from the package directory
    r = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
                       capture_output=True, text=True, env=_env(), timeout=600, cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "skipped" not in r.stdout
    assert "TestConformance::test_bad_inputs_raise_the_documented_data_error" in _collected(python, root)
    # the suite catches a plugin that breaks the contract: torch imported by the entry module, a bad-input
    # message that no longer says what the README documents
    installed = Path(subprocess.run([str(python), "-c", "import ofasys_wave; print(ofasys_wave.__file__)"],
                                    capture_output=True, text=True, check=True, env=_env()).stdout.strip()).parent
    entry = installed / "plugin.py"
    entry.write_text(entry.read_text().replace("from ofasys.hookspecs import hookimpl",
                                               "import torch  # noqa\nfrom ofasys.hookspecs import hookimpl"))
    comp = installed / "components.py"
    comp.write_text(comp.read_text().replace("the list is empty", "nothing there"))
    r = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_conformance.py"],
                       capture_output=True, text=True, env=_env(), timeout=600, cwd=root)
    assert r.returncode == 1
    failed = sorted(line.split("::")[-1].split(" ")[0] for line in r.stdout.splitlines() if line.startswith("FAILED"))
    assert failed == ["test_bad_inputs_raise_the_documented_data_error",
                      "test_entry_modules_import_without_heavy_libraries"], r.stdout[-3000:]


def _collected(python: Path, root: Path) -> str:
    return subprocess.run([str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, env=_env(), timeout=300, cwd=root).stdout


@pytest.mark.slow
def test_worked_example_installs_and_passes_its_quick_tests(tmp_path):
    """examples/ofasys-timeseries, installed like any third-party plugin: the conformance suite and its unit tests
    (its joint-training test is run from the example itself; see its README)."""
    src = tmp_path / "ofasys-timeseries"
    shutil.copytree(ROOT / "examples" / "ofasys-timeseries", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "runs"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(src)], check=True, capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, env=_env(pythonpath=str(site)), timeout=600, cwd=src)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "failed" not in r.stdout and "TestConformance" in _collected_with(site, src)


def _collected_with(site: Path, root: Path) -> str:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, env=_env(pythonpath=str(site)), timeout=300,
                          cwd=root).stdout


# ------------------------------------------------------------------------------------------------ versions
@pytest.mark.parametrize("requires, conflict", [
    (["ofasys>=0.1,<0.2"], None),
    (["ofasys"], None),
    (["numpy>=9", "ofasys-text>=9"], None),  # only the core's own range counts
    (["ofasys>=9.0,<10"], ">=9.0,<10"),
    (["ofasys<0.1"], "<0.1"),
    (['ofasys[all]>=9; extra == "test"'], None),  # behind an extra: not a requirement of the plugin
    (["Ofasys==0.0.9"], "==0.0.9"),
])
def test_core_requirement_conflict(requires, conflict):
    assert core_requirement_conflict(requires, "0.1.0") == conflict


@pytest.fixture(scope="module")
def misbehaving_plugins(tmp_path_factory) -> str:
    """ofasys-broken (raises on import), ofasys-oldcore (ofasys>=9 required) and ofasys-rival-text (claims TEXT),
    pip-installed for real into a directory put on PYTHONPATH."""
    work = tmp_path_factory.mktemp("pkgs")
    target = tmp_path_factory.mktemp("site")
    pkgs = []
    for name in ("ofasys-broken", "ofasys-oldcore", "ofasys-rival-text"):
        shutil.copytree(PACKAGES / name, work / name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        pkgs.append(str(work / name))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *pkgs], check=True, capture_output=True, timeout=300)
    return str(target)


@pytest.mark.slow
def test_plugins_json_reports_broken_out_of_range_and_conflicting_plugins(misbehaving_plugins):
    r = ofasys("plugins", "--json", pythonpath=misbehaving_plugins)
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    broken, old = listed["ofasys-broken"], listed["ofasys-oldcore"]
    assert broken["status"] == "error" and broken["error"] == (
        "plugin ofasys-broken 0.0.1 failed to load its module 'ofasys_broken.plugin' (entry point BROKEN): "
        "RuntimeError: this plugin is broken on purpose")
    assert old["status"] == "skipped" and old["slot_types"] == ["OLDCORE"]
    # (the clauses in the order the installed metadata lists them)
    assert re.search(r"requires ofasys(>=9\.0,<10|<10,>=9\.0), but ofasys 0\.1\.0 is installed; it was skipped",
                     old["error"]), old["error"]
    for dist in ("ofasys-text", "ofasys-rival-text"):
        assert listed[dist]["status"] == "conflict"
        assert any("slot type TEXT is also claimed by" in c and "OFASYS_PREFER=TEXT=" in c
                   for c in listed[dist]["conflicts"])
    assert listed["ofasys-image"]["status"] == "ok"
    # the table says the same, and the CLI does not fall over
    r = ofasys("plugins", pythonpath=misbehaving_plugins, extra={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    assert "skipped: plugin ofasys-oldcore" in r.stdout and "error:" in r.stdout and "conflict:" in r.stdout
    # preferring one provider resolves the conflict
    r = ofasys("plugins", "--json", pythonpath=misbehaving_plugins, extra={"OFASYS_PREFER": "TEXT=ofasys-text"})
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert listed["ofasys-text"]["status"] == "ok" and "ofasys_preprocess" in listed["ofasys-text"]["hooks"]
    assert listed["ofasys-rival-text"]["notes"] == ["its slot type TEXT is not used: OFASYS_PREFER=TEXT=ofasys-text"]


@pytest.mark.slow
def test_instructions_naming_misbehaving_plugins_give_the_documented_messages(misbehaving_plugins):
    prefer = {"OFASYS_PREFER": "TEXT=ofasys-text"}
    r = ofasys("explain", "[OLDCORE:x] -> [TEXT:y]", pythonpath=misbehaving_plugins, extra=prefer)
    assert r.returncode == 2
    assert "the plugin for slot type OLDCORE was skipped" in r.stderr and ">=9.0" in r.stderr
    assert "pip install -U ofasys-oldcore" in r.stderr and "Traceback" not in r.stderr
    assert "was imported" not in r.stderr  # the module was never imported
    r = ofasys("explain", "[BROKEN:x] -> [TEXT:y]", pythonpath=misbehaving_plugins, extra=prefer)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the plugin for slot type BROKEN is broken: plugin ofasys-broken 0.0.1 failed to load its module " \
           "'ofasys_broken.plugin' (entry point BROKEN): RuntimeError: this plugin is broken on purpose" in r.stderr
    assert "OFASYS_DISABLE_PLUGINS=ofasys-broken" in r.stderr
    r = ofasys("explain", "[TEXT:x] -> [TEXT:y]", pythonpath=misbehaving_plugins)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "slot type TEXT is provided by two distributions: ofasys-rival-text and ofasys-text" in r.stderr
    assert "OFASYS_PREFER=TEXT=<distribution>" in r.stderr
    # every other instruction still works
    r = ofasys("explain", "[TEXT:x] -> [TEXT:y]", pythonpath=misbehaving_plugins, extra=prefer)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ --hook
def test_plugins_hook_shows_signature_and_implementations():
    r = ofasys("plugins", "--hook", "preprocess", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["signature"] == "ofasys_preprocess(slot, ctx)" and info["firstresult"] is True
    impls = {(i["distribution"], i["module"]) for i in info["implementations"]}
    assert ("ofasys-text", "ofasys_text.plugin") in impls and ("ofasys-image", "ofasys_image.box") in impls
    assert all(i["line"] for i in info["implementations"])
    r = ofasys("plugins", "--hook", "ofasys_register_metrics")
    assert r.returncode == 0 and "every implementation is called" in r.stdout and "ofasys-text" in r.stdout


def test_plugins_hook_unknown_name_suggests_one():
    r = ofasys("plugins", "--hook", "preprocesss")
    assert r.returncode == 2 and "Did you mean 'ofasys_preprocess'" in r.stderr and "Traceback" not in r.stderr
