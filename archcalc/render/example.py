"""A worked example (example.py) -> a rich renderable, or JSON. Never prints."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..teaching import example
from ..teaching.example import Matrix, Worked


def grid(title: str, values: Matrix, marked: set[tuple[int, int]] = frozenset(), first: int = 0) -> Group:
    """A matrix as a small bordered grid under its title; `marked` cells in bold; `first`: the index of its
    first column (a band of a matrix too wide for the terminal)."""
    out = Table(box=box.SQUARE, show_header=False, padding=(0, 1))
    for _ in values[0]:
        out.add_column(justify="right", no_wrap=True)
    for i, row in enumerate(values):
        out.add_row(*(Text(example.text(v), style="bold" if (i, j + first) in marked else "") for j, v in enumerate(row)))
    return Group(Text(title, style="bold"), out)


@dataclass(frozen=True)
class Matrices:
    """Matrices side by side, as many as fit the width, the others on rows below; a matrix wider than the
    width in bands of its columns, each titled with them: no cell is ever squeezed out of sight."""

    shown: tuple[tuple[str, Matrix], ...]
    gap: int = 3

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        rows: list[list[tuple[Group, int]]] = [[]]
        for part in (band for title, values in self.shown for band in _bands(title, values, width)):
            used = sum(w for _, w in rows[-1]) + self.gap * len(rows[-1])
            if rows[-1] and used + part[1] > width:
                rows.append([])
            rows[-1].append(part)
        for index, row in enumerate(rows):
            line = Table.grid(padding=(0, self.gap, 0, 0))
            for _, w in row:
                line.add_column(width=w, no_wrap=True)
            line.add_row(*(g for g, _ in row))
            if index:
                yield Text("")
            yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widths = [w for title, values in self.shown for _, w in _bands(title, values, options.max_width)]
        return Measurement(max(widths), min(options.max_width, sum(widths) + self.gap * (len(widths) - 1)))


def _bands(title: str, values: Matrix, width: int) -> list[tuple[Group, int]]:
    """A matrix as grids no wider than `width` (bands of whole columns, one at least) and their widths."""
    cells = [max(cell_len(example.text(row[j])) for row in values) for j in range(len(values[0]))]
    out, start = [], 0
    while start < len(cells):
        stop, used = start, 1
        while stop < len(cells) and (stop == start or used + cells[stop] + 3 <= width):
            used += cells[stop] + 3  # the cell, a space either side, its right border
            stop += 1
        named = title if (start, stop) == (0, len(cells)) else f"{title}, columns {start}–{stop - 1}"
        band = tuple(row[start:stop] for row in values)
        out.append((grid(named, band, first=start), max(used, cell_len(named))))
        start = stop
    return out


def table(worked: Worked) -> Group:
    settings = ", ".join(f"{name} = {_setting(value)}" for name, value in worked.settings)
    rows, cols = len(worked.input), len(worked.input[0])
    head = Text.assemble((f"{worked.kind}", "bold"), f" ({settings}) on a {rows}×{cols} matrix → "
                         f"{len(worked.output)}×{len(worked.output[0])}")
    matrices = Matrices((("input", worked.input), *((label, m) for label, _, m in worked.extra), ("output", worked.output)))
    steps = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    steps.add_column("output", no_wrap=True)
    windows = worked.windows
    if windows:
        steps.add_column("reads", no_wrap=True)
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
