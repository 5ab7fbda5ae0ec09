"""Package templates. ``plugin/`` is what ``ofasys plugins new NAME --slot TYPE`` writes: a complete, installable
plugin distribution (pyproject with the entry point, the hooks of a small working feature modality, a README and
tests that run the conformance suite). Files end in ``.tmpl``; ``__module__`` in a path and ``{{dist}}``,
``{{module}}``, ``{{SLOT}}``, ``{{slot}}``, ``{{core_range}}`` in a file are replaced."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from ..errors import ConfigError

TEMPLATE_DIR = Path(__file__).parent / "plugin"
_DIST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*([._-][A-Za-z0-9]+)*$")
_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def core_range(version: str | None = None) -> str:
    """The ``ofasys`` range a new plugin declares: this minor release series (``>=0.1,<0.2`` for 0.1.x)."""
    from .. import __version__

    parts = [int(p) for p in re.findall(r"\d+", version or __version__)[:2]] + [0, 0]
    major, minor = parts[0], parts[1]
    return f">={major}.{minor},<{major}.{minor + 1}"


def plugin_names(name: str, slot: str) -> dict[str, str]:
    """The placeholders of the plugin template for distribution ``name`` and slot type ``slot``."""
    if not _DIST_RE.match(name):
        raise ConfigError(f"{name!r} is not a valid distribution name: use letters, digits and single '-', '_' "
                          "or '.' between them, e.g. ofasys-timeseries")
    module = re.sub(r"[-.]", "_", name).lower()
    if keyword.iskeyword(module) or module == "ofasys" or module.startswith("ofasys."):
        raise ConfigError(f"the import package of {name!r} would be {module!r}; choose another name "
                          "(plugin code never lives under the ofasys namespace)")
    if not _TYPE_RE.match(slot):
        hint = f" (did you mean {slot.upper()!r}?)" if _TYPE_RE.match(slot.upper()) else ""
        raise ConfigError(f"{slot!r} is not a slot type name: upper-case letters, digits and '_', starting with "
                          f"a letter, e.g. TIMESERIES{hint}")
    from ..plugins import KNOWN_SLOT_TYPES

    if slot in KNOWN_SLOT_TYPES:
        raise ConfigError(f"slot type {slot} is provided by {KNOWN_SLOT_TYPES[slot]}; a second provider would "
                          "conflict with it. Choose a new name")
    return {"dist": name, "module": module, "SLOT": slot, "slot": slot.lower(), "core_range": core_range()}


def render_plugin(name: str, slot: str, parent: "str | Path", force: bool = False) -> Path:
    """Write the plugin template for ``name``/``slot`` into ``parent/name``; returns that directory."""
    values = plugin_names(name, slot)
    root = Path(parent) / name
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(f"{root} already exists and is not empty; pass --force to overwrite it")
    written = []
    for src in sorted(TEMPLATE_DIR.rglob("*.tmpl")):
        rel = src.relative_to(TEMPLATE_DIR).as_posix()[: -len(".tmpl")].replace("__module__", values["module"])
        text = src.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        leftover = re.findall(r"\{\{\w+\}\}", text)
        if leftover:  # pragma: no cover - a template bug
            raise ConfigError(f"template {rel} has unknown placeholders {leftover}")
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        written.append(dest)
    return root
