"""The ``ofasys`` command line.

Importing this module, ``ofasys --help`` and ``ofasys plugins`` never import torch: the heavy commands import
the engine inside their bodies. Errors become a message on stderr and an exit code (2 for bad input).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import OfasysError

app = typer.Typer(
    name="ofasys",
    help="Declare multi-modal tasks in one line, train one model on all of them, serve them from one checkpoint.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
plugins_app = typer.Typer(help="List, inspect and create modality plugins.", invoke_without_command=True,
                          add_completion=False, rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(err: BaseException) -> "typer.Exit":
    """Print an error for a person and return the Exit to raise."""
    code = getattr(err, "exit_code", 1)
    sys.stderr.write(f"error: {err}\n")
    cause = err.__cause__
    if cause is not None and str(cause) not in str(err):
        sys.stderr.write(f"  caused by {type(cause).__name__}: {cause}\n")
    return typer.Exit(code)


def _version_callback(value: bool):
    if value:
        typer.echo(f"ofasys {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                      help="Print the version and exit.")):
    """ofasys: multi-modal multi-task learning from one-line instructions."""


# ------------------------------------------------------------------------------------------------ plugins
@plugins_app.callback(invoke_without_command=True)
def plugins(ctx: typer.Context,
            as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per distribution."),
            requirements: bool = typer.Option(False, "--requirements", help="Print name==version lines."),
            hook: Optional[str] = typer.Option(None, "--hook", metavar="NAME",
                                               help="Show one hook: its signature, whether the first result wins, "
                                                    "and which plugins implement it (e.g. --hook preprocess).")):
    """List installed plugin distributions, their slot types, hooks, load errors and version conflicts."""
    if ctx.invoked_subcommand is not None:
        return
    from .plugins import get_manager

    if hook is not None:
        _show_hook(hook, as_json)
        return
    infos = get_manager().plugin_infos()
    if as_json:
        typer.echo(json.dumps([p.to_json() for p in infos], indent=2))
        return
    if requirements:
        for p in infos:
            typer.echo(f"{p.name}=={p.version}")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="ofasys plugins")
    for col in ("distribution", "version", "slot types", "hooks", "status"):
        table.add_column(col, overflow="fold")
    for p in infos:
        if p.skipped:
            status = "[yellow]skipped: " + escape(p.error or "") + "[/yellow]"
        elif p.error:
            status = "[red]error: " + escape(p.error) + "[/red]"
        elif p.conflicts:
            status = "[yellow]conflict: " + escape("; ".join(p.conflicts)) + "[/yellow]"
        else:
            status = "[green]ok[/green]" + ("; " + escape("; ".join(p.notes)) if p.notes else "")
        table.add_row(p.name, p.version, ", ".join(sorted(p.slot_types)),
                      ", ".join(h.replace("ofasys_", "") for h in sorted(p.hooks)), status)
    _console().print(table)
    if not infos:
        typer.echo('No plugins installed. Try: pip install "ofasys[all]"')


def _show_hook(name: str, as_json: bool) -> None:
    import inspect

    from . import hookspecs
    from .errors import did_you_mean
    from .plugins import get_manager

    specs = sorted(n for n in dir(hookspecs) if n.startswith("ofasys_"))
    full = name if name.startswith("ofasys_") else "ofasys_" + name
    if full not in specs:
        sys.stderr.write(f"error: unknown hook {name!r}.{did_you_mean(full, specs)}\n"
                         f"Hooks: {', '.join(specs)}\n")
        raise typer.Exit(2)
    fn = getattr(hookspecs, full)
    firstresult = bool(getattr(fn, hookspecs.PROJECT + "_spec", {}).get("firstresult"))
    signature = f"{full}({', '.join(inspect.signature(fn).parameters)})"
    impls = get_manager().hook_implementations(full)
    doc = inspect.getdoc(fn) or ""
    if as_json:
        typer.echo(json.dumps({"hook": full, "signature": signature, "firstresult": firstresult,
                               "doc": doc, "implementations": impls}, indent=2))
        return
    typer.echo(signature)
    typer.echo("  first non-None result wins" if firstresult else "  every implementation is called")
    typer.echo("")
    for line in doc.splitlines():
        typer.echo("  " + line)
    typer.echo("")
    if not impls:
        typer.echo("No installed plugin implements it.")
        return
    typer.echo(f"Implemented by ({'called in this order' if firstresult else 'all called'}):")
    for i in impls:
        where = f"{i['file']}:{i['line']}" if i["file"] else ""
        typer.echo(f"  {i['distribution']} {i['version']}  {i['module']}.{i['function']}  {where}")


@plugins_app.command("new")
def plugins_new(name: str = typer.Argument(..., help="Distribution name of the new plugin, e.g. ofasys-timeseries."),
                slot: str = typer.Option(..., "--slot", help="The slot type it provides, e.g. TIMESERIES."),
                output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                      help="Parent directory (default: the current one)."),
                force: bool = typer.Option(False, "--force", help="Overwrite an existing directory.")):
    """Write a complete, installable plugin package for a new slot type: pyproject with the entry point, the hooks
    of a small working feature modality, a README and tests (the conformance suite included)."""
    from .templates import render_plugin

    try:
        root = render_plugin(name, slot, output or Path.cwd(), force=force)
    except OfasysError as err:
        raise _fail(err)
    typer.echo(f"wrote {root}")
    typer.echo(f"next: pip install -e {root}  &&  pytest {root / 'tests'}")


@plugins_app.command("show")
def plugins_show(slot_type: str = typer.Argument(..., help="A slot type, e.g. IMAGE."),
                 as_json: bool = typer.Option(False, "--json")):
    """Show one slot type: its attributes, component variants and providing distribution."""
    from .plugins import get_manager

    try:
        spec, dist, version = get_manager().slot_type(slot_type.upper(), slot_type, (0, len(slot_type)))
    except OfasysError as err:
        raise _fail(err)
    if as_json:
        typer.echo(json.dumps({"distribution": dist, "version": version, **spec.to_json()}, indent=2))
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{spec.name}[/bold] from {dist} {version} ({spec.kind}) {spec.help}")
    for stage, variants in spec.components.items():
        con.print(f"  {stage}: {', '.join(variants)}")
    table = Table(title="attributes")
    for col in ("name", "type", "default", "sides", "help"):
        table.add_column(col)
    for a in spec.attributes:
        table.add_row(a.name, a.type, repr(a.default), ", ".join(a.sides), a.help)
    con.print(table)


# ------------------------------------------------------------------------------------------------ explain
@app.command()
def explain(instruction: str = typer.Argument(..., help="An instruction, e.g. \"[IMAGE:img] caption? -> [TEXT:cap]\""),
            as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")):
    """Print the logical plan of an instruction: which plugin and components serve each slot."""
    from .plan import GroupPlan, build_plan

    try:
        plan = build_plan(instruction)
    except OfasysError as err:
        raise _fail(err)
    if as_json:
        typer.echo(json.dumps(plan.to_json(), indent=2))
        return
    from rich.table import Table

    con = _console()
    stage_names = {"preprocess": "pre", "adaptor": "adapt", "criterion": "loss", "generator": "gen",
                   "postprocess": "post"}
    for i, t in enumerate(plan.templates):
        table = Table(title=f"plan{' (template ' + str(i + 1) + ')' if len(plan.templates) > 1 else ''}: {t.source}",
                      title_justify="left", show_lines=False)
        for col in ("side", "slot", "components", "attributes", "plugin"):
            table.add_column(col, overflow="fold")

        def rows(items, side, prefix=""):
            for it in items:
                if isinstance(it, GroupPlan):
                    table.add_row(side, f"{prefix}( ... )* group {it.index}",
                                  f"repeated per item of {', '.join(it.columns)}", "", "core")
                    rows(it.items, side, prefix + "  ")
                elif isinstance(it, str):
                    table.add_row(side, f"{prefix}<{it}>", "marker", "", "core")
                else:
                    name = f'"{it.literal}"' if it.literal is not None else f"[{it.type}:{it.column}]"
                    stages = ("preprocess",) if it.literal is not None else (
                        ("preprocess", "adaptor", "criterion", "generator", "postprocess") if side == "output"
                        else ("preprocess", "adaptor"))
                    comps = " ".join(f"{stage_names[st]}={it.components.get(st) or '-'}" for st in stages)
                    attrs = ", ".join(f"{k}={v}" for k, v in it.attrs.items()
                                      if v not in (None, False) and it.literal is None)
                    table.add_row(side, prefix + name, f"{it.kind}: {comps}", attrs, f"{it.plugin} {it.version}")

        rows(t.encoder, "input")
        table.add_section()
        rows(t.decoder, "output")
        con.print(table)
    con.print(f"output: {plan.target_kind} ({', '.join(s.key for s in plan.outputs)}); "
              f"columns: {', '.join(plan.columns())}")


# ------------------------------------------------------------------------------------------------ engine
@app.command()
def train(config: Path = typer.Argument(..., exists=True, dir_okay=False, help="A TOML or YAML training config."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (overrides config)."),
          max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override trainer.max_steps."),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from the last checkpoint.")):
    """Train one model jointly on the tasks a config file lists."""
    try:
        from .engine.commands import train_from_config

        train_from_config(config, output=output, max_steps=max_steps, resume=resume)
    except OfasysError as err:
        raise _fail(err)


@app.command()
def infer(checkpoint: Path = typer.Option(..., "--checkpoint", "-c", exists=True, help="A checkpoint directory."),
          instruction: str = typer.Option(..., "--instruction", "-i", help="The instruction (or a task name)."),
          data: List[str] = typer.Option([], "--data", "-d", help="col=value (repeatable)."),
          jsonl: Optional[Path] = typer.Option(None, "--jsonl", exists=True, help="A JSONL file of rows."),
          beam_size: int = typer.Option(1, "--beam-size"), max_len: Optional[int] = typer.Option(None, "--max-len"),
          sampling: bool = typer.Option(False, "--sampling"), as_json: bool = typer.Option(False, "--json")):
    """Run a trained model on one row (--data) or many (--jsonl)."""
    try:
        from .engine.commands import infer_command

        infer_command(checkpoint, instruction, data, jsonl, beam_size=beam_size, max_len=max_len,
                      sampling=sampling, as_json=as_json)
    except OfasysError as err:
        raise _fail(err)


@app.command("eval")
def evaluate(checkpoint: Path = typer.Argument(..., exists=True, help="A checkpoint directory."),
             config: Path = typer.Argument(..., exists=True, dir_okay=False, help="The training config."),
             split: str = typer.Option("test", "--split"), as_json: bool = typer.Option(False, "--json")):
    """Report every task's metrics on a split as a table (or JSON)."""
    try:
        from .engine.commands import eval_command

        eval_command(checkpoint, config, split=split, as_json=as_json)
    except OfasysError as err:
        raise _fail(err)


@app.command()
def demo(output: Path = typer.Option(Path("demo"), "--output", "-o", help="Where results, gallery and checkpoint go."),
         quick: bool = typer.Option(False, "--quick", help="A short profile (minutes on 2 CPU cores)."),
         steps: Optional[int] = typer.Option(None, "--steps", help="Override the profile's number of updates."),
         size: str = typer.Option("nano", "--size", help="Model size."),
         device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
         variant: str = typer.Option("dense", "--variant", help="dense, or moe: one encoder FFN expert per modality."),
         compare: bool = typer.Option(False, "--compare",
                                      help="Train a specialist per task and the generalist (dense and MoE) at equal "
                                           "compute, and print the specialist-vs-generalist table."),
         valid_samples: Optional[int] = typer.Option(None, "--valid-samples",
                                                     help="Evaluate each task on at most this many held-out rows."),
         tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated demo task names (default: all)."),
         train_fraction: Optional[float] = typer.Option(None, "--train-fraction",
                                                        help="Fraction of each task's bundled training rows."),
         micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="Cap on every task's micro-batch.")):
    """Train one small generalist on the bundled tasks of every installed plugin and show the results."""
    try:
        from .engine.demo import run_compare, run_demo

        names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
        if compare:
            run_compare(output, quick=quick, device=device, steps=steps, size=size, valid_samples=valid_samples,
                        tasks=names, train_fraction=train_fraction, micro_batch=micro_batch)
        else:
            run_demo(output, quick=quick, device=device, steps=steps, size=size, variant=variant,
                     valid_samples=valid_samples, tasks=names, train_fraction=train_fraction,
                     micro_batch=micro_batch)
    except OfasysError as err:
        raise _fail(err)


def run() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
