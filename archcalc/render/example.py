"""A worked example (example.py) -> a rich renderable, or JSON. Never prints."""

from __future__ import annotations

import json as _json

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..teaching import example
from ..teaching.example import Matrix, Worked


def grid(title: str, values: Matrix, marked: set[tuple[int, int]] = frozenset()) -> Table:
    """A matrix as a small bordered grid; `marked` cells in bold."""
    out = Table(title=Text(title, style="bold"), title_justify="left", box=box.SQUARE, show_header=False, padding=(0, 1))
    for _ in values[0]:
        out.add_column(justify="right")
    for i, row in enumerate(values):
        out.add_row(*(Text(example.text(v), style="bold" if (i, j) in marked else "") for j, v in enumerate(row)))
    return out


def table(worked: Worked) -> Group:
    settings = ", ".join(f"{name} = {_setting(value)}" for name, value in worked.settings)
    rows, cols = len(worked.input), len(worked.input[0])
    head = Text.assemble((f"{worked.kind}", "bold"), f" ({settings}) on a {rows}×{cols} matrix → "
                         f"{len(worked.output)}×{len(worked.output[0])}")
    matrices = Table.grid(padding=(0, 3))
    shown = [grid("input", worked.input), *(grid(label, m) for label, _, m in worked.extra), grid("output", worked.output)]
    for _ in shown:
        matrices.add_column(vertical="top")
    matrices.add_row(*shown)
    steps = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    steps.add_column("output", no_wrap=True)
    windows = worked.windows
    if windows:
        steps.add_column("reads")
    steps.add_column("step", overflow="fold")
    for step in worked.steps:
        steps.add_row(_place(step.at), *([_reads(step.window)] if windows else []), step.text)
    notes = [Text(f"note: {note}", style="yellow") for note in worked.notes]
    return Group(head, Text(""), matrices, steps, *notes)


def _setting(value) -> str:
    if isinstance(value, tuple):
        return "×".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else example.text(value)


def _place(at) -> str:
    return "[" + ", ".join(map(str, at)) + "]"


def _reads(window) -> str:
    """The input rows and columns a window read: 'rows 0–1, cols 2–3' (0-based, as in PyTorch)."""
    if not window:
        return "padding only"
    rows = sorted({r for r, _ in window})
    cols = sorted({c for _, c in window})
    def span(xs, what):
        return f"{what} {xs[0]}" if len(xs) == 1 else f"{what}s {xs[0]}–{xs[-1]}"
    return f"{span(rows, 'row')}, {span(cols, 'col')}"


def json(worked: Worked) -> str:
    def matrix(m):
        return [[example.to_json(v) for v in row] for row in m]

    data = {
        "kind": worked.kind,
        "settings": {name: (list(v) if isinstance(v, tuple) else example.to_json(v) if not isinstance(v, (str, bool)) else v)
                     for name, v in worked.settings},
        "input": matrix(worked.input),
        "output": matrix(worked.output),
        "output_exact": [[example.text(v) for v in row] for row in worked.output],
        **{key: matrix(m) for _, key, m in worked.extra},
        "steps": [{"at": list(s.at), "reads": [list(p) for p in s.window], "text": s.text, "value": example.to_json(s.value)}
                  for s in worked.steps],
        "notes": list(worked.notes),
    }
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"
