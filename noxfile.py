"""nox sessions over the one shared environment made by scripts/setup.sh.

Sessions never create their own virtualenvs (``venv_backend="none"``): torch is installed once, in .venv, and
every session runs that interpreter. Run ``bash scripts/setup.sh`` first (or let ``nox -s setup`` do it).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = Path(os.environ.get("OFASYS_VENV", ROOT / ".venv"))
PY = str(VENV / "bin" / "python")
PLUGINS = sorted(p.name for p in (ROOT / "plugins").glob("ofasys-*"))

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]


def _need_env(session: nox.Session) -> None:
    if not (VENV / "bin" / "python").exists():
        session.error(f"{VENV} does not exist: run `bash scripts/setup.sh` (or `nox -s setup`) first")


@nox.session(venv_backend="none")
def setup(session: nox.Session) -> None:
    """Create/refresh the shared environment (torch once, our wheels every time)."""
    session.run("bash", "scripts/setup.sh", external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole suite (what CI runs)."""
    _need_env(session)
    session.run(PY, "-m", "pytest", *session.posargs, external=True)


@nox.session(venv_backend="none")
def quick(session: nox.Session) -> None:
    """The fast subset: everything not marked slow."""
    _need_env(session)
    session.run(PY, "-m", "pytest", "-m", "not slow", *session.posargs, external=True)


@nox.session(venv_backend="none")
def core(session: nox.Session) -> None:
    """The core package's own tests."""
    _need_env(session)
    session.run(PY, "-m", "pytest", "core/tests", *session.posargs, external=True)


@nox.session(venv_backend="none")
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin's tests."""
    _need_env(session)
    session.run(PY, "-m", "pytest", f"plugins/{plugin}/tests", *session.posargs, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks (ratios against a peer measured in the same run); not part of the tests."""
    _need_env(session)
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run(PY, str(script), *session.posargs, external=True)
