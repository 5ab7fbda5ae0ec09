"""docs/plugin_hooks.md documents every hook with its exact signature (as datasette's tests/test_docs.py does):
adding, removing or changing a hook in ofasys.hookspecs without updating the page fails here."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from ofasys import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"
HEADING = re.compile(r"^## (ofasys_\w+)\((.*)\)\s*$", re.M)


def _specs() -> dict:
    return {name: fn for name, fn in vars(hookspecs).items()
            if name.startswith("ofasys_") and hasattr(fn, hookspecs.PROJECT + "_spec")}


def _sections() -> dict[str, tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    heads = list(HEADING.finditer(text))
    out = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        end = min(end, text.find("\n## ", m.end()) if text.find("\n## ", m.end()) != -1 else end)
        assert m.group(1) not in out, f"{m.group(1)} is documented twice"
        out[m.group(1)] = (m.group(2), text[m.end():end])
    return out


def test_every_hook_is_documented_and_every_documented_hook_exists():
    documented, specs = set(_sections()), set(_specs())
    assert specs - documented == set(), f"hooks missing from {DOC.name}: {sorted(specs - documented)}"
    assert documented - specs == set(), f"{DOC.name} documents hooks that do not exist: {sorted(documented - specs)}"


@pytest.mark.parametrize("name", sorted(_specs()))
def test_section_heading_is_the_exact_signature(name):
    sections = _sections()
    if name not in sections:
        pytest.fail(f"{name} is not documented in {DOC.name}")
    params, _ = sections[name]
    actual = ", ".join(inspect.signature(_specs()[name]).parameters)
    assert params == actual, f"{DOC.name}: heading '{name}({params})' but the hookspec is '{name}({actual})'"


@pytest.mark.parametrize("name", sorted(_specs()))
def test_section_says_when_firstresult_arguments_returns_and_shows_an_example(name):
    _, body = _sections()[name]
    firstresult = bool(getattr(_specs()[name], hookspecs.PROJECT + "_spec").get("firstresult"))
    for field in ("**When**", "**Arguments**", "**Returns**"):
        assert field in body, f"{name}: the section lacks {field}"
    m = re.search(r"\*\*firstresult\*\*: (yes|no)\b", body)
    assert m, f"{name}: the section does not say '**firstresult**: yes' or '**firstresult**: no'"
    assert (m.group(1) == "yes") == firstresult, f"{name}: documented firstresult {m.group(1)}, spec {firstresult}"
    examples = re.findall(r"```python\n(.*?)```", body, re.S)
    assert examples, f"{name}: no python example"
    tree = ast.parse(examples[-1])  # the example is valid Python ...
    impls = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert impls and any(getattr(d, "id", None) == "hookimpl" for d in impls[0].decorator_list), \
        f"{name}: the example does not define @hookimpl def {name}(...)"
    spec_params = list(inspect.signature(_specs()[name]).parameters)
    assert [a.arg for a in impls[0].args.args] == spec_params  # ... and implements the documented signature


def test_lifecycle_diagram_shows_a_slots_path_in_order():
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Lifecycle of one slot")
    diagram = text[start:text.index("```", text.index("```", start) + 3)]
    pos = 0
    for step in ("instruction", "plan", "preprocess", "collate", "adapt", "universal model", "criterion",
                 "generate", "postprocess"):
        found = diagram.find(step, pos)
        assert found != -1, f"the lifecycle diagram lacks '{step}' after position {pos}"
        pos = found + len(step)
