"""The structured-knowledge tasks, their instructions and metrics, on the bundled data.

>>> from ofasys_struct.tasks import make_tasks                                   # doctest: +SKIP
>>> tasks = make_tasks("data/")            # text_to_sql, table_to_text, table_qa, sudoku  # doctest: +SKIP
>>> Trainer(max_steps=400).fit(GeneralistModel("nano"), tasks)                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import data

#: One instruction per task. Text-to-SQL generates a ``sql`` STRUCT output, which runs on the row's database
#: (so ``out.struct`` holds the result rows and the ``execution_accuracy`` metric works inside the engine);
#: ``-> [TEXT:sql]`` trains the same model output but leaves execution to the caller. The instructions are
#: short on purpose: every token of the input costs CPU time, and a nano model learns to attend to short inputs
#: faster (OFASys' ``" [TEXT:src] " ; structured knowledge: " [STRUCT:database] " . generating sql code.`` works
#: too).
INSTRUCTIONS: dict[str, str] = {
    "text_to_sql": "[TEXT:question] ; structured knowledge: [STRUCT:database,question=question] "
                   "-> [STRUCT:sql,preprocess=sql]",
    "table_to_text": 'structured knowledge: " [STRUCT:triples,preprocess=triples] " . '
                     "describe the knowledge in a sentence. -> [TEXT:sentence]",
    "table_qa": '" [TEXT:question] " ; structured knowledge: " [STRUCT:table] " . answer the question. '
                "-> [TEXT:answer]",
    "sudoku": "solve the sudoku: [STRUCT:puzzle] -> [STRUCT:solution]",
}

#: Metrics reported for each task (the first is the headline score).
METRICS: dict[str, list[str]] = {
    "text_to_sql": ["execution_accuracy", "sql_exact_match"],
    "table_to_text": ["bleu"],
    "table_qa": ["accuracy"],
    "sudoku": ["solved_rate", "struct_exact_match"],
}

#: Default split sizes (train, valid, test).
SIZES: dict[str, tuple[int, int, int]] = {
    "text_to_sql": (800, 60, 30),
    "table_to_text": (800, 100, 100),
    "table_qa": (800, 100, 100),
    "sudoku": (2000, 100, 100),
}


def make_splits(directory: "str | Path", names: "list[str] | None" = None, seed: int = 0,
                sizes: "dict[str, tuple[int, int, int]] | None" = None) -> dict[str, dict[str, list[dict]]]:
    """The bundled data of each task as ``{task: {"train", "valid", "test": rows}}``; the shop database is
    written to ``directory/shop.sqlite`` (the text-to-SQL rows hold its path)."""
    names = list(names or INSTRUCTIONS)
    sizes = {**SIZES, **(sizes or {})}
    unknown = [n for n in names if n not in INSTRUCTIONS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; the bundled tasks are {', '.join(INSTRUCTIONS)}")
    out: dict[str, dict[str, list[dict]]] = {}
    for name in names:
        n_train, n_valid, n_test = sizes[name]
        if name == "text_to_sql":
            db = data.build_shop_database(Path(directory) / "shop.sqlite", seed=seed)
            out[name] = data.text_to_sql(db, n_train, n_valid, n_test, seed=seed)
        elif name == "table_to_text":
            out[name] = data.splits(data.table_to_text, n_train, n_valid, n_test, seed=seed)
        elif name == "table_qa":
            out[name] = data.splits(data.table_qa, n_train, n_valid, n_test, seed=seed)
        else:
            out[name] = data.splits(data.sudoku, n_train, n_valid, n_test, seed=seed, size=4)
    return out


def make_tasks(directory: "str | Path", names: "list[str] | None" = None, seed: int = 0,
               sizes: "dict[str, tuple[int, int, int]] | None" = None, micro_batch_size: int = 16,
               **task_options: Any) -> list:
    """``ofasys.Task`` objects for the bundled tasks with their train/valid/test data attached."""
    from ofasys import Task

    tasks = []
    for name, split in make_splits(directory, names, seed, sizes).items():
        t = Task(name=name, instruction=INSTRUCTIONS[name], micro_batch_size=micro_batch_size,
                 metrics=METRICS[name], **task_options)
        for s, rows in split.items():
            if rows:
                t.add_dataset(rows, s)
        tasks.append(t)
    return tasks


def write_config(directory: "str | Path", names: "list[str] | None" = None, seed: int = 0,
                 max_steps: int = 400) -> Path:
    """Write the bundled data as JSONL files plus ``struct.toml``, a config for ``ofasys train``."""
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["# The ofasys-struct bundled tasks (written by `ofasys-struct make-data`).", "[model]", 'size = "nano"',
             "", "[trainer]", f"max_steps = {max_steps}", "lr = 0.003", "warmup_steps = 20",
             'output_dir = "runs/struct"']
    for name, split in make_splits(directory, names, seed).items():
        lines += ["", "[[tasks]]", f'name = "{name}"', f"instruction = {json.dumps(INSTRUCTIONS[name])}",
                  "micro_batch_size = 16", f"metrics = {json.dumps(METRICS[name])}"]
        for s, rows in split.items():
            if rows:
                data.write_jsonl(rows, directory / f"{name}.{s}.jsonl")
                lines.append(f'{s} = "{name}.{s}.jsonl"')
    path = directory / "struct.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
