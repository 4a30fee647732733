"""Report -> a rich table, markdown, csv or json. Returns renderables and strings; never prints."""

from __future__ import annotations

import csv as _csv
import dataclasses
import functools
import io
import itertools
import json as _json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..analysis import checkpoint
from ..analysis.finetune import trains
from ..core import fmt, num
from ..memory import timeline
from ..report import Report, Row, communication, rank_phases
from ..teaching import explain_row
from . import wrap


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    csv = "csv"


HEADERS = ("layer", "type", "hyperparameters", "output", "weights", "biases", "params", "share", "MACs", "FLOPs")
NUMERIC = {"weights", "biases", "params", "share", "MACs", "FLOPs"}
# Narrower than the full table (an 80-column terminal), the type joins the hyperparameters and the
# per-layer MACs and FLOPs go (the footer keeps their totals; --format json keeps them all).
COMPACT = ("layer", "hyperparameters", "output", "weights", "biases", "params", "share")


@dataclass(frozen=True)
class Line:
    """A line of the table: one layer, or a group of them (a block use, a path prefix) with its totals."""

    name: str
    level: int  # 1 at the top; a group's layers are one level deeper
    rows: tuple[Row, ...]
    group: bool = False
    kind: str = ""  # a group's block ("basic", "basic ×2"), if it is a block use


def outline(report: Report, depth: int | None = None) -> list[Line]:
    """The table's lines: each group (path prefix) opens with a line of its totals, its layers indented
    below it; groups `depth` levels down are folded into that one line (as torchinfo's depth)."""
    kinds = {use.path: use.block + (f" ×{use.repeat}" if use.repeat else "") + (", checkpointed" if use.checkpoint else "")
             for use in report.uses}
    lines: list[Line] = []
    members: dict[str, list[Row]] = {}
    open_: list[str] = []
    for row in report.rows:
        parts = row.name.split(".")
        shown = len(parts) if depth is None else min(len(parts), depth)
        prefixes = [".".join(parts[:k]) for k in range(1, shown + (shown < len(parts)))]
        prefixes = prefixes[: len(parts) - 1]
        keep = 0
        while keep < min(len(open_), len(prefixes)) and open_[keep] == prefixes[keep]:
            keep += 1
        open_ = open_[:keep]
        for prefix in prefixes[keep:]:
            members[prefix] = []
            lines.append(Line(prefix, prefix.count(".") + 1, (), True, kinds.get(prefix, "")))
            open_.append(prefix)
        for prefix in open_:
            members[prefix].append(row)
        if depth is None or len(parts) <= depth:
            lines.append(Line(row.name, len(parts), (row,)))
    return [dataclasses.replace(line, rows=tuple(members[line.name])) if line.group else line for line in lines]


def _group_cells(report: Report, line: Line) -> dict[str, str]:
    total = {q: num.add(getattr(row, q) for row in line.rows) for q in ("weights", "biases", "params", "macs", "flops")}
    return {
        "layer": "  " * (line.level - 1) + line.name,
        "type": line.kind or "group",
        "hyperparameters": f"{len(line.rows)} layers",
        "output": fmt.shape(line.rows[-1].output),
        "weights": fmt.group(total["weights"]),
        "biases": fmt.group(total["biases"]),
        "params": fmt.group(total["params"]),
        "share": fmt.percent(total["params"], report.totals["params"]),
        "MACs": fmt.short(total["macs"]),
        "FLOPs": fmt.short(total["flops"]),
    }


def _line_cells(report: Report, line: Line) -> dict[str, str]:
    if line.group:
        return _group_cells(report, line)
    cells = _cells(report, line.rows[0])
    cells["layer"] = "  " * (line.level - 1) + cells["layer"]
    return cells


def _inputs_text(row: Row) -> str:
    return " and ".join(fmt.shape(x) for x in row.shapes)


def _cells(report: Report, row: Row) -> dict[str, str]:
    return {
        "layer": row.name,
        "type": row.kind,
        "hyperparameters": row.layer.summary(row.input),
        "output": fmt.shape(row.output),
        "weights": fmt.group(row.weights),
        "biases": fmt.group(row.biases),
        "params": fmt.group(row.params),
        "share": fmt.percent(row.params, report.totals["params"]),
        "MACs": fmt.short(row.macs),
        "FLOPs": fmt.short(row.flops),
    }


def _total_cells(report: Report) -> dict[str, str]:
    t = report.totals
    return dict.fromkeys(HEADERS, "") | {
        "layer": "total",
        "weights": fmt.group(t["weights"]),
        "biases": fmt.group(t["biases"]),
        "params": fmt.group(t["params"]),
        "share": "100%" if num.is_concrete(t["params"]) else "",
        "MACs": fmt.short(t["macs"]),
        "FLOPs": fmt.short(t["flops"]),
    }


def summary_lines(report: Report) -> list[tuple[str, str]]:
    """The footer: totals, shares per layer type, the largest layer, the forward cost."""
    t = report.totals
    short = fmt.short(t["params"]) if num.is_concrete(t["params"]) else ""
    short = f" ({short})" if short and short != fmt.group(t["params"]) else ""  # "156", not "156 (156)"
    lines = [("Parameters", f"{fmt.group(t['params'])}{short}: weights {fmt.group(t['weights'])}, biases {fmt.group(t['biases'])}")]
    if report.finetune:  # fine-tuning: what trains, beside what does not
        lines.append(("Trainable", f"{fmt.group(t['trainable_params'])} ({fmt.percent(t['trainable_params'], t['params'])}): "
                                   f"{trains(report)}"))
    shares = [
        f"{kind} {fmt.group(p)} ({fmt.percent(p, t['params'])})" for kind, p in report.by_type.items() if p != 0
    ]
    if shares:
        lines.append(("By type", " · ".join(shares)))
    concrete = [row for row in report.rows if num.is_concrete(row.params)]
    if concrete and num.is_concrete(t["params"]):
        top = max(concrete, key=lambda row: row.params)
        lines.append(("Largest layer", f"{top.name}: {fmt.group(top.params)} ({fmt.percent(top.params, t['params'])})"))
    if num.is_concrete(t["macs"]):
        cost = (f"{fmt.group(t['macs'])} MACs = {fmt.group(t['flops'])} FLOPs "
                f"({fmt.short(t['macs'], 'MACs')}, {fmt.short(t['flops'], 'FLOPs')}; 1 multiply-accumulate = 2 FLOPs)")
    else:
        cost = f"{t['macs']} MACs; FLOPs = 2 × MACs"
    lines.append(("Forward, per sample", cost))
    return lines


KIND_LABELS = {"parameters": "params", "buffers": "buffers", "batch": "batch", "optimizer state": "opt. state",
               "gradients": "grads", "activations": "kept", "activation gradients": "grads in flight",
               "temporaries": "temp.", "workspace": "workspace", "weight copies": "autocast's weight copies",
               "block slack": "cached blocks' slack", "kv cache": "KV cache", "gathered parameters": "gathered params",
               "communication buffers": "comm. buffers"}


def memory_lines(report: Report) -> list[tuple[str, str, str]]:
    """The memory panel's rows: (what, in binary units, in bytes): the step's timeline, phase by phase."""
    m, batch = report.memory, report.batch
    setting = m.peak_phase()
    peaks = _Peaks(m, batch, _sizes(report))
    rows = []
    if m.autocast is not None:  # mixed precision: say so (float32 runs print as they did)
        rows.append(("under autocast", "", f"{m.autocast}, float32 parameters and optimizer state"))
    for phase in ("forward", "backward", "optimizer"):
        label = f"{phase} peak" + (" (the step's peak)" if phase == setting else "")
        rows.append((label, *peaks.text(phase)))
        if batch is not None and num.is_concrete(batch) and num.is_concrete(m.phase(phase).at(batch)):
            alive = m.phase(phase).alive(batch)
            total = sum(alive.values())
            parts = " · ".join(f"{KIND_LABELS[k]} {fmt.size_bytes(v)}" for k, v in alive.items() if v * 2000 >= total)
            rows.append(("", "", parts))
    rows.append(("training step, peak", *peaks.text("step")))
    rows += peaks.examples()
    regions = checkpoint.regions(report)
    if regions:
        named = ", ".join(r.path for r in regions) if len(regions) <= 3 else f"{regions[0].path} … {regions[-1].path}"
        rows.append(("checkpointed", f"{len(regions)} block use{'s' * (len(regions) > 1)}", f"recomputed in backward: {named}"))
    rows += parallel_lines(report)
    rows.append(("inference, peak (eval, inference_mode)", *peaks.text("inference")))
    if m.generation is not None:
        rows += generation_lines(m.generation, batch)
    if str(m.device) == "cuda":
        rows.append(("CUDA context, outside the peak", fmt.size_bytes(timeline.CUDA_CONTEXT), f"{fmt.group(timeline.CUDA_CONTEXT)} bytes"))
    return rows


def parallel_lines(report: Report) -> list[tuple[str, str, str]]:
    """Over many GPUs: what one GPU hands to each collective in a step, and each rank's peak where the ranks differ
    (ZeRO-1's partition, FSDP's uneven shards; the panel's phases are the largest rank's)."""
    if report.parallel is None:
        return []
    rows = [(f"{name.replace('_', '-')} per GPU, a step", *_bytes(sent))
            for name, sent in communication(report).items() if sent != 0]
    for rank, (phases, peak) in enumerate(rank_phases(report) or ()):
        each = (" · ".join(f"{phase} {fmt.size_bytes(v)}" for phase, v in phases.items())
                if all(num.is_concrete(v) for v in phases.values()) else "each phase: --format json")
        rows.append((f"rank {rank}, peak", _bytes(peak)[0], each))
    return rows


def _bytes(value) -> tuple[str, str]:
    """A byte count: (in binary units, in bytes), or a formula."""
    if num.is_concrete(value):
        return fmt.size_bytes(value), f"{fmt.group(value)} bytes"
    return str(value), "bytes"


def generation_lines(g, batch) -> list[tuple[str, str, str]]:
    """The memory panel's generation rows: the settings, each phase's peak (what is alive at it, at a batch), the cache."""
    s = g.settings
    setting = g.phase(batch) if batch is not None and num.is_concrete(batch) else None
    rows = [("generation", f"{fmt.group(s.prompt)} + {fmt.group(s.new_tokens)} tokens",
             f"{s.cache} cache, {'the last position' if s.logits == 'last' else 'every position'}'s logits")]
    for phase, peak in (("prefill", g.prefill), ("decode", g.decode)):
        label = f"{phase} peak" + (" (generation's peak)" if phase == setting else "")
        rows.append((label, *fmt.per_batch(peak, batch)))
        if batch is not None and num.is_concrete(batch) and num.is_concrete(peak.at(batch)):
            alive = peak.alive(batch)
            total = sum(alive.values())
            labels = KIND_LABELS | {"activations": "activations"}  # nothing is kept for a backward
            rows.append(("", "", " · ".join(f"{labels[k]} {fmt.size_bytes(v)}" for k, v in alive.items() if v * 2000 >= total)))
    kept = f"KV cache at {fmt.group(s.tokens)} tokens"
    if g.window is not None and num.is_concrete(g.window) and g.window < s.tokens:
        kept = f"KV cache, the last {fmt.group(g.window)} of {fmt.group(s.tokens)} tokens"  # a sliding window's
    rows.append((kept, *fmt.per_batch(g.kv_cache, batch)))
    return rows


# The sizes a peak that is still a formula in more than B is also shown at, each named beside its figure
# (the formulas hold at every size): a short sequence and GPT-2's context, ImageNet's image side and classes.
EXAMPLE_SIZES = {"T": (128, 1024), "H": (224,), "W": (224,), "classes": (1000,)}


@dataclass(frozen=True)
class _Line:
    """fixed + per_sample·B in numbers: one of a peak's formulas at given sizes."""

    fixed: int
    per_sample: int

    def at(self, batch):
        return self.fixed + self.per_sample * batch


@dataclass(frozen=True)
class _Envelope:
    """The largest of a few lines (those highest somewhere on B >= 1), as fmt.per_batch reads a peak."""

    pieces: tuple[_Line, ...]

    def at(self, batch):
        return max(line.at(batch) for line in self.pieces)


class _Peaks:
    """The memory panel's peaks (the step's, each phase's, inference's) as text, each one's formulas read once:
    a peak that is the largest of many formulas in sizes besides B says how many and in what, and the step's
    is shown at the sizes of EXAMPLE_SIZES (`examples`)."""

    def __init__(self, memory, batch, sizes: list[str]):
        self.memory, self.batch, self.sizes = memory, batch, sizes
        self.peaks = {"step": memory.training, "inference": memory.inference_peak,
                      **{phase: memory.phase(phase) for phase in timeline.PHASES}}
        self.read: dict[str, tuple] = {}

    def formulas(self, name: str) -> tuple[tuple, ...]:
        """A peak's formulas as (fixed, per_sample): with B a symbol, its pieces; at a batch, the terms of the
        max its value is there (per_sample 0). Formulas only: () where the peak is a number, or one formula."""
        if name not in self.read:
            peak, batch = self.peaks[name], self.batch
            if batch is None:
                pieces = peak.pieces
                symbolic = len(pieces) > 1 and not all(num.is_concrete(p.fixed) and num.is_concrete(p.per_sample) for p in pieces)
                self.read[name] = tuple((p.fixed, p.per_sample) for p in pieces) if symbolic else ()
            else:
                value = peak.at(batch)  # a number, unless sizes besides B are unknown (the timeline at that batch)
                self.read[name] = tuple(dict.fromkeys((arg, 0) for arg in _arguments(value))) if _is_max(value) else ()
        return self.read[name]

    def names(self) -> list[str]:
        """The sizes the peaks' formulas are in, B first where it is a symbol."""
        return ["B"] * (self.batch is None) + self.sizes

    def text(self, name: str) -> tuple[str, str]:
        """A peak at the batch: (in binary units, in bytes)."""
        peak, batch = self.peaks[name], self.batch
        if self.formulas(name):
            count = len(self.formulas(name))
            return f"the largest of {count} formulas in {', '.join(self.names())}", "--format json gives them"
        if batch is not None and not num.is_concrete(peak.at(batch)):  # one formula in other sizes: no unit to put on it
            return fmt.group(peak.at(batch)), "bytes"
        return fmt.per_batch(peak, batch)

    def examples(self) -> list[tuple[str, str, str]]:
        """The step's peak at the sizes of EXAMPLE_SIZES: one formula in B (or a number at the batch) and the
        phase it comes from; then how to get it at any size."""
        batch = self.batch
        names = self.sizes if self.formulas("step") else []
        if not names or not (batch is None or num.is_concrete(batch)):  # a batch that is itself a formula: no example
            return []
        rows = []
        if all(name in EXAMPLE_SIZES for name in names):
            for values in itertools.product(*(EXAMPLE_SIZES[name] for name in names)):
                at = dict(zip(names, values))
                where = ", ".join(f"{name} = {value}" for name, value in at.items())
                peak, phase = self.at(at)
                units, exact = fmt.per_batch(peak, batch)
                if batch is None and len(peak.pieces) > 1:  # the bytes of three formulas are for --set to give
                    rows.append(("", f"at {where}:\n{units}", f"the {phase} peak for large B"))
                else:
                    rows.append(("", f"at {where}:\n{units}", f"{exact}, the {phase} peak"))
        sets = " ".join(f"--set {name}=…" for name in names)
        rows.append(("", "", f"at any size: {sets}{' --batch B' if batch is None else ''}"))
        return rows

    def at(self, sizes: dict[str, int]) -> tuple[_Envelope, str]:
        """The step's peak at `sizes`: the envelope of its phases' formulas there, and the phase of the highest
        (at the batch; with B a symbol, for large B: the steepest)."""
        values = {num.symbol(name): value for name, value in sizes.items()}
        known: dict = {}  # each term at `sizes`: a peak's formulas share a few (T, T², a floor)

        def value(x):
            total = 0
            for term, coefficient in _terms(x):
                if term not in known:
                    known[term] = 1 if term == 1 else num.normal(term.xreplace(values))
                total += coefficient * known[term]
            return total

        lines: dict[tuple, str] = {}  # each line (fixed, per_sample) and the first phase it is in
        for phase in timeline.PHASES:
            for fixed, per_sample in self.formulas(phase) or self._numbers(phase):
                lines.setdefault((value(fixed), value(per_sample)), phase)
        batch = self.batch
        top = max(lines, key=(lambda line: (line[1], line[0])) if batch is None else (lambda line: line[0] + line[1] * batch))
        return _Envelope(tuple(_Line(num.normal(f), num.normal(p)) for f, p in _upper(list(lines)))), lines[top]

    def _numbers(self, phase: str) -> tuple[tuple, ...]:
        """A phase whose peak is one formula or numbers, as formulas."""
        peak = self.peaks[phase]
        if self.batch is not None:
            return ((peak.at(self.batch), 0),)
        return tuple((p.fixed, p.per_sample) for p in peak.pieces)


def _is_max(x) -> bool:
    return not num.is_concrete(x) and type(x).__name__ == "Max"


def _arguments(x) -> list:
    """The formulas a max (of maxes: the step's is the largest of its phases') is the largest of."""
    return [y for arg in x.args for y in _arguments(arg)] if _is_max(x) else [x]


@functools.lru_cache(maxsize=8192)
def _terms(x) -> tuple[tuple[object, object], ...]:
    """A formula's (term, coefficient) pairs, from its own arguments (sympy's as_coefficients_dict, 5 times faster
    on a sum of a few monomials); a number's is ((1, it),)."""
    if num.is_concrete(x):
        return ((1, x),)
    out = []
    for part in x.args if x.is_Add else (x,):
        coefficient, term = part.as_coeff_Mul()
        out.append((term, num.normal(coefficient)))
    return tuple(out)


def _sizes(report: Report) -> list[str]:
    """The unknown sizes of a report, B aside: those of its input, its layers' outputs and parameters (where
    every tensor's size, and so every byte count of its memory, comes from)."""
    names: set[str] = set()
    for x in report.input:
        names |= num.free_names(x)
    for row in report.rows:
        names |= num.free_names(row.params)
        for x in row.output:
            names |= num.free_names(x)
    return sorted(names - {"B"})


def _upper(lines: list[tuple]) -> list[tuple]:
    """The lines (fixed, per_sample) that are the highest somewhere on B >= 1 (the upper envelope), by slope."""
    hull: list[tuple] = []
    for f, p in sorted(set(lines), key=lambda line: (line[1], line[0])):
        while hull and hull[-1][1] == p:
            hull.pop()  # the same slope: this one is at least as high
        while len(hull) >= 2:
            (f1, p1), (f2, p2) = hull[-2], hull[-1]  # the middle one is never the highest once the outer two cross
            if (f1 - f) * (p2 - p1) <= (f1 - f2) * (p - p1):  # at or before it rises above them
                hull.pop()
            else:
                break
        hull.append((f, p))
    while len(hull) >= 2 and sum(hull[0]) <= sum(hull[1]):
        hull.pop(0)  # below the next one from B = 1 on
    return hull


def course_lines(report: Report) -> list[tuple[str, str, str]]:
    """The course's memory model (section 5.1) beside the real one, its erratum named."""
    m, batch = report.memory, report.batch
    return [
        ("forward, M + B·m·L", *fmt.per_batch(m.course_forward, batch)),
        ("backward as printed, M + B·m·L", "wrong", "the notes repeat the forward formula"),
        ("backward, 2M + 2·B·m·L", *fmt.per_batch(m.course_backward, batch)),
    ]


def memory_panel(report: Report, width: int = 100) -> Group:
    m = report.memory
    batch = "B" if report.batch is None else fmt.group(report.batch)
    title = f"Memory for a batch of {batch}: {report.dtype}, optimizer {m.optimizer}, on {m.device}"
    if report.parallel is not None:  # the step's peaks are one GPU's
        title = f"Memory per GPU ({_gpus(report.parallel)}) for a batch of {batch}: {report.dtype}, optimizer {m.optimizer}, on {m.device}"
    panels = [(title, memory_lines(report))] + ([("The course's model", course_lines(report))] if report.course else [])
    grids = [_panel(heading, lines, width) for heading, lines in panels]
    if not report.course:
        return grids[0]
    notes = wrap.Wrapped(
        f"m = {fmt.size_bytes(m.course_m)}, the largest layer output per sample; L = {m.course_layers} layers. "
        "The backward pass also holds a gradient for every parameter (+M) and the gradients of the activations (+B·m·L). "
        "Binary units: 1 MiB = 2²⁰ bytes.",
        style="dim",
    )
    return Group(grids[0], Text(""), grids[1], notes)


def _panel(heading: str, lines: list[tuple[str, str, str]], width: int) -> Table:
    """Rows of (what, in binary units, in bytes), left-aligned: in three columns where they fit whole; else the
    bytes under the binary units, both broken between terms; narrower still, each value under its label."""
    labels, units, exact = (max((cell_len(line[k]) for line in lines), default=0) for k in range(3))
    grid = Table(title=Text(heading), title_justify="left", box=None, show_header=False, pad_edge=False)
    if labels + units + exact + 4 <= width:
        grid.add_column(style="bold", no_wrap=True, width=labels)
        grid.add_column(no_wrap=True, width=units)
        grid.add_column(no_wrap=True, style="dim", width=exact)
        for line in lines:
            grid.add_row(*map(Text, line))  # formulas and names are text, never markup
        return grid
    room = width - labels - 2
    if room >= max(24, max(wrap.narrowest(text) for line in lines for text in line[1:])):
        grid.add_column(style="bold", no_wrap=True, width=labels)
        grid.add_column(no_wrap=True, width=room)
        for label, *values in lines:
            grid.add_row(Text(label), _values(values, room))
        return grid
    grid.add_column(no_wrap=True, width=width)
    for label, *values in lines:
        grid.add_row(Text.assemble((label, "bold"), "\n" * bool(label), _values(values, width - 2, "  ")))
    return grid


def _values(values: list[str], width: int, indent: str = "") -> Text:
    """A row's value in binary units, then (dim) in bytes, each on lines of its own broken between terms."""
    plain, dim = values
    out = Text()
    for text, style in ((plain, ""), (dim, "dim")):
        for line in wrap.lines(text, width) if text else ():
            out.append(("\n" if out else "") + indent)
            out.append(line, style=style)
    return out


def _gpus(layout) -> str:
    """A layout in a few words: "tp 2 × dp 4 over 8 GPUs", "replicated over 8 GPUs", "fsdp, tp 2 × dp 4 over 8 GPUs"."""
    over = f"over {layout.gpus} GPU{'s' if layout.gpus > 1 else ''}"
    if layout.tp == 1:
        return f"{layout.strategy} {over}"
    return f"{'' if layout.strategy == 'tp' else f'{layout.strategy}, '}tp {layout.tp} × dp {layout.dp} {over}"


def _title(report: Report) -> str:
    return f"{report.model}: input {fmt.shape(report.input)}, {report.dtype}"


def _plain(cell: str) -> bool:
    """A cell rich would draw as written, one terminal column a character: no control, wide or combining
    characters, no blanks at the end (rich drops them)."""
    return cell.isprintable() and (cell.isascii() or cell_len(cell) == len(cell)) and not cell.endswith(" ")


@dataclass(frozen=True)
class _Rows:
    """The layer table as rich draws it, its rows given as lines of plain text: laying out 100 rows of
    cells costs rich a twentieth of a second, a string join nothing. Rich draws the title, the header and
    the totals (`frame`: the table without rows, its columns at their natural widths), the rows go between;
    where they do not fit the terminal, `table()` is the rich table itself."""

    frame: Table
    lines: list[str]
    width: int
    table: Callable[[], Table]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.width > options.max_width:
            yield self.table()
            return
        framed = console.render_lines(self.frame, options, pad=False)
        rows = [[Segment(line)] for line in self.lines]
        for line in framed[:-3] + rows + framed[-3:]:  # the totals' rule, the totals, the bottom edge
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        if self.width > options.max_width:
            return Measurement.get(console, options, self.table())
        return Measurement(self.width, self.width)


def table(report: Report, width: int = 100, explained: bool = False, depth: int | None = None) -> Group:
    """The report as a rich table with its footer (and, if `explained`, every derivation), to fit `width`;
    `depth` folds the groups below it (a block use, a path prefix) into one line each."""
    lines = outline(report, depth)
    rows = [_line_cells(report, line) for line in lines]
    totals = _total_cells(report)
    headers, widths, whole = _layout(rows, totals, width, [line.group for line in lines])

    def grid(cells: bool = True) -> Table:
        grid = Table(title=Text(_title(report)), box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False, collapse_padding=True)
        for h in headers:
            grid.add_column(_cell(h, h, widths[h]), footer=_cell(h, totals[h], widths[h]),
                            justify="right" if h in NUMERIC else "left", width=widths[h], no_wrap=True)
        for r in rows if cells else ():
            grid.add_row(*(_cell(h, r[h], widths[h]) for h in headers))
        return grid

    if whole:  # a block's kind keeps its spaces whole only where it might have been broken
        for r in rows:
            r["hyperparameters"] = r["hyperparameters"].replace(wrap.NBSP, " ")
    if whole and all(_plain(r[h]) for h in headers for r in [*rows, totals]):
        # each row one line of plain text, at the width rich would give it: rich draws only the frame
        lines = [" " + "  ".join(r[h].rjust(widths[h]) if h in NUMERIC else r[h].ljust(widths[h]) for h in headers) + " "
                 for r in rows]
        parts = [_Rows(grid(cells=False), lines, sum(widths.values()) + 2 * len(headers), grid)]
    else:
        parts = [grid()]
    parts += [_footer(summary_lines(report), width), Text(""), memory_panel(report, width)]
    if explained:
        parts.append(explanation(report))
    return Group(*parts)


# Narrower still (a ResNet's dotted names, a formula's output shape), weights and biases go too: params
# is their sum, the footer keeps their totals; every column given up is room for the formulas.
NARROW = ("layer", "hyperparameters", "output", "params", "share")


def _layout(rows: list[dict[str, str]], totals: dict[str, str], width: int,
            groups: list[bool]) -> tuple[tuple[str, ...], dict[str, int], bool]:
    """The columns shown and their widths. The full table, or the compact one (the type joined to the
    hyperparameters), or the narrow one: the first whose cells fit whole but for the hyperparameters (at
    least 15 columns wide); else the first that fits with its widest columns cut down to a common cap, the
    layer names whole and every other column at least 24 wide (or whole); else the narrow one, cut down as
    far as it takes. A cell cut down is broken between terms and words (`wrap`). Also: whether every cell is whole."""
    sets = []
    for headers in (HEADERS, COMPACT, NARROW):
        if headers is COMPACT:
            for r, group in zip(rows, groups):  # a group's "bottleneck ×3" and "23 layers": "bottleneck ×3 · 23 layers"
                kind = r["type"].replace(" ", wrap.NBSP) if group else r["type"]  # "basic ×2, checkpointed" stays whole
                r["hyperparameters"] = (" · " if group else " ").join(part for part in (kind, r["hyperparameters"]) if part)
        natural = {h: _natural(h, rows, totals) for h in headers}
        room = width - 2 * len(headers)
        if sum(natural.values()) <= room:
            return headers, natural, True
        least = {h: max(wrap.narrowest(h), *(wrap.narrowest(r[h]) for r in [*rows, totals])) for h in headers}
        least["layer"] = natural["layer"]  # names whole where they can be
        rest = room - sum(natural.values()) + natural["hyperparameters"]
        if rest >= max(15, least["hyperparameters"]):
            return headers, natural | {"hyperparameters": rest}, rest >= natural["hyperparameters"]
        sets.append((headers, natural, least, room))
    for headers, natural, least, room in sets:
        if sum(max(least[h], min(natural[h], 15 if h == "hyperparameters" else 24)) for h in headers) <= room:
            return headers, _capped(headers, natural, least, room), False
    if sum(least.values()) > room:  # the full paths show the nesting without the indents
        for r in rows:
            r["layer"] = r["layer"].lstrip(" ")
        natural["layer"] = least["layer"] = _natural("layer", rows, totals)
    if sum(least.values()) > room:  # a dotted name broken before a dot
        least["layer"] = max(_narrowest(r["layer"]) for r in rows)
    if sum(least.values()) > room:  # not even every word whole: cut the widest (the last resort, under ~60 columns)
        least = _shrink(least, room)
    return headers, _capped(headers, natural, least, room), False


def _capped(headers, natural: dict[str, int], least: dict[str, int], room: int) -> dict[str, int]:
    """Widths that fill `room`: the widest columns brought down to a common cap, none below its `least`."""
    low, high = 0, max(natural.values())
    while low < high:
        cap = (low + high + 1) // 2
        if sum(max(least[h], min(natural[h], cap)) for h in headers) <= room:
            low = cap
        else:
            high = cap - 1
    widths = {h: max(least[h], min(natural[h], low)) for h in headers}
    spare = room - sum(widths.values())
    for h in headers:  # what the cap leaves over, a column each, to those it cut
        if spare > 0 and widths[h] < natural[h]:
            widths[h] += 1
            spare -= 1
    return widths


def _natural(header: str, rows: list[dict[str, str]], totals: dict[str, str]) -> int:
    return max(cell_len(header), cell_len(totals[header]), *(cell_len(r[header]) for r in rows))


def _narrowest(cell: str) -> int:
    """The narrowest a layer's cell may be: its dotted name broken before a dot, each line indented as the first."""
    name = cell.lstrip(" ")
    return len(cell) - len(name) + wrap.narrowest(name, dots=True)


def _shrink(least: dict[str, int], room: int) -> dict[str, int]:
    """Widths cut down to fit `room`, the widest first."""
    least = dict(least)
    while sum(least.values()) > room and max(least.values()) > 1:
        widest = max(least, key=least.get)
        least[widest] -= 1
    return least


def _cell(header: str, text: str, width: int) -> Text:
    """A cell's text in lines of `width`; a formula broken over lines reads from the left, as text does."""
    if cell_len(text) <= width:
        return Text(text.replace(wrap.NBSP, " "))
    if header == "layer":
        name = text.lstrip(" ")
        indent = " " * (len(text) - len(name))
        return Text("\n".join(indent + line for line in wrap.lines(name, width - len(indent), dots=True)), justify="left")
    return Text("\n".join(wrap.lines(text, width)), justify="left")


def _footer(lines: list[tuple[str, str]], width: int) -> Table:
    """The footer's label: value lines, the values broken between terms to fit."""
    footer = Table.grid(padding=(0, 2))
    label = max(cell_len(name) for name, _ in lines)
    footer.add_column(style="bold", no_wrap=True, width=label)
    footer.add_column(no_wrap=True)
    for name, value in lines:
        footer.add_row(name, Text("\n".join(wrap.lines(value, width - label - 2))))
    return footer


def explanation(report: Report) -> Group:
    blocks = []
    for row in report.rows:
        kind = ", ".join(part for part in (row.kind, row.layer.summary(row.input)) if part)
        blocks += [Text(""), wrap.Wrapped(f"{row.name} ({kind}): {_inputs_text(row)} → {fmt.shape(row.output)}", bold=len(row.name))]
        for _, line in explain_row.lines(report, row):  # wrapped lines keep the indent, formulas break between terms
            blocks.append(wrap.Wrapped(line, "yellow" if line.startswith("note:") else "", 2))
    lines = peak_lines(report)
    if lines:
        blocks.append(Text("\ntraining step, peak", style="bold"))
        blocks += [wrap.Wrapped(line, indent=2) for line in lines]
    return Group(*blocks)


def peak_lines(report: Report) -> list[str]:
    """--explain's account of a step's peak that is the largest of many formulas in B and other sizes: what
    the formulas are, the largest at the sizes shown, how to get a number (nothing where the peak is numbers)."""
    peaks = _Peaks(report.memory, report.batch, _sizes(report))
    formulas = peaks.formulas("step")
    if not formulas or not (report.batch is None or num.is_concrete(report.batch)):
        return []
    counts = ", ".join(f"{phase} {len(peaks.formulas(phase) or peaks._numbers(phase))}" for phase in timeline.PHASES)
    names = ", ".join(peaks.sizes)
    out = [f"the largest of {len(formulas)} formulas (by phase: {counts}), one for each moment of the step's timeline "
           f"that can be its highest; each is exact, and which one is the largest depends on {names}"
           + (" and B" if report.batch is None else "")]
    for _, units, exact in peaks.examples():
        if units:
            where, _, value = units.partition("\n")
            out.append(f"{where} {value} ({exact})")
        else:
            out.append(f"for a number: {exact.removeprefix('at any size: ')}; --format json lists every formula")
    return out


def markdown(report: Report, explained: bool = False, depth: int | None = None) -> str:
    def line(cells) -> str:  # a cell's lines joined: markdown's table rows are one line each
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    out = [f"### {_title(report)}", "", line(HEADERS),
           "|" + "|".join("---:" if h in NUMERIC else "---" for h in HEADERS) + "|"]
    # indents as non-breaking spaces: markdown would collapse plain ones
    out += [line(c.replace("  ", "\u00a0\u00a0") if h == "layer" else c for h, c in _line_cells(report, item).items())
            for item in outline(report, depth)]
    out.append(line(f"**{c}**" if c else "" for c in _total_cells(report).values()))
    out.append("")
    out += [f"- **{label}**: {value}" for label, value in summary_lines(report)]
    m = report.memory
    batch = "B" if report.batch is None else fmt.group(report.batch)
    out += ["", f"#### Memory for a batch of {batch}: {report.dtype}, optimizer {m.optimizer}, on {m.device}", "",
            "| | | bytes |", "|---|---:|---:|"]
    out += [line(row) for row in memory_lines(report) + (course_lines(report) if report.course else [])]
    if explained:
        for row in report.rows:
            out += ["", f"**{row.name}** ({row.kind}): {_inputs_text(row)} → {fmt.shape(row.output)}", ""]
            out += [f"- {text}" for _, text in explain_row.lines(report, row)]
        peak = peak_lines(report)
        out += ["", "**training step, peak**", "", *(f"- {text}" for text in peak)] if peak else []
    return "\n".join(out) + "\n"


def csv(report: Report) -> str:
    """One line per layer, plain numbers (no grouping), for spreadsheets."""
    buffer = io.StringIO()
    writer = _csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "type", "hyperparameters", "input", "output", "weights", "biases", "params", "share",
                     "macs", "flops", "training_flops", "saved_for_backward_bytes", "inputs"])
    for row, saved in zip(report.rows, report.memory.per_row):
        share = report.share(row.params)
        writer.writerow([
            row.name, row.kind, row.layer.summary(row.input),
            ";".join("x".join(str(num.to_json(d)) for d in x) for x in row.shapes),
            "x".join(str(num.to_json(d)) for d in row.output),
            *(str(num.to_json(getattr(row, q))) for q in ("weights", "biases", "params")),
            "" if share is None else f"{float(share):.4f}",
            str(num.to_json(row.macs)), str(num.to_json(row.flops)), str(num.to_json(row.training_flops)),
            str(num.to_json(saved.at(report.batch))),
            " ".join(row.inputs),
        ])
    return buffer.getvalue()


def json(report: Report, explained: bool = False) -> str:
    data = report.to_dict()
    if explained:
        for entry, row in zip(data["layers"], report.rows):
            entry["explain"] = [text for _, text in explain_row.lines(report, row)]
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def fit(result, width: int = 100) -> Group:
    """`archcalc memory --budget`: the largest batch, why, and the memory at that batch, to fit `width`."""
    budget = f"{fmt.size_bytes(result.budget)} ({fmt.group(result.budget)} bytes)"
    training = result.report.memory.training
    context = (f"; the CUDA context's {fmt.size_bytes(result.context)} taken out first" if result.context else "")
    if result.batch is None:
        needs = training.at(1) if result.needs is None else result.needs
        head = Text.assemble(("Not even a batch of 1 fits ", "bold red"), budget,
                             f": a training step of 1 needs {fmt.size_bytes(needs)}"
                             f"{'' if result.needs is None else ' under the caching allocator'}, "
                             f"{fmt.size_bytes(result.over)} ({fmt.group(result.over)} bytes) more{context}.{_assumed(result)}")
    else:
        pieces = training.pieces
        if result.trial is not None:
            why = _replayed(result) + _assumed(result)
        elif all(num.is_concrete(p.fixed) and num.is_concrete(p.per_sample) for p in pieces):
            terms = ", ".join(f"{fmt.group(p.fixed)} + {fmt.group(p.per_sample)}·B" for p in pieces)
            why = f"the step's peak is {'max(' + terms + ')' if len(pieces) > 1 else terms} bytes{context}{_assumed(result)}"
        else:
            why = f"B = {result.batch}{_assumed(result)}"
        layout = result.report.parallel  # over many GPUs: each GPU's batch, and the samples a step trains
        under = "" if layout is None else f"under {_gpus(layout)}: {fmt.group(result.batch * layout.dp)} samples a step\n"
        head = Text.assemble(("Largest batch" + (" per GPU" if layout else "") + ": ", "bold"), (fmt.group(result.batch), "bold green"),
                             f" fits {budget}\n", under, "\n".join(wrap.lines(why, width)))  # the formulas broken between their terms
    return Group(head, Text(""), memory_panel(result.report, width))


def fit_json(result) -> str:
    trial, refused = result.trial, result.refused
    data = {
        "budget_bytes": result.budget,
        "batch": None if result.batch is None else num.to_json(result.batch),
        "over_bytes": num.to_json(result.over),
        "cuda_context_bytes": result.context,
        # CUDA: the caching allocator replayed under the cap at the batch (at 1 when none fits), and what fails next
        "allocator": None if trial is None else {
            "cap_bytes": result.usable, "reserved_bytes": trial.reserved, "margin_bytes": result.usable - trial.reserved,
            "next_batch_fails": None if refused is None or refused.failure is None else dataclasses.asdict(refused.failure),
        },
        "assumed": dict(result.assumed),
        "memory": result.report.memory.to_dict(),
    }
    return _json.dumps(data, indent=2) + "\n"


def _replayed(result) -> str:
    """Under a cap on CUDA, what the budget holds at the largest batch, a line each (under 80 columns), and what fails
    at the next: the CUDA context (--card), the step's peak (allocated), the most the caching allocator reserves
    (beyond the peak: blocks cached for one size that another cannot use), the margin never reserved."""
    batch, trial, refused = result.batch, result.trial, result.refused
    peak = result.report.memory.training.at(batch)
    rows = [("CUDA context, taken out first", result.context)] if result.context else []
    rows += [(f"the step's peak at {fmt.group(batch)}", peak), ("the most it reserves", trial.reserved),
             ("margin, never reserved", result.usable - trial.reserved)]
    width = max(len(label) for label, _ in rows)
    lines = ["PyTorch's caching allocator replayed under that cap (2 warm-up steps and 1):"]
    lines += [f"  {label:<{width}}  {fmt.size_bytes(n):>10}  {fmt.group(n)} bytes" for label, n in rows]
    lines.append("  (reserved beyond the peak: blocks cached for one size that another cannot use)" if trial.reserved >= peak
                 else "  (cuDNN's workspaces, in the peak, take only what the cap leaves)")
    if refused is not None and refused.failure is not None:
        f = refused.failure
        lines += [f"at {fmt.group(batch + 1)}: {fmt.size_bytes(f.size)} of {f.kind} (step {f.step}, {f.phase}) finds no room,",
                  f"  the cached blocks freed ({fmt.size_bytes(f.allocated)} allocated, {fmt.size_bytes(f.reserved)} reserved)"]
    elif refused is not None:
        lines.append(f"at {fmt.group(batch + 1)}: the step's peak alone is over the cap")
    return "\n".join(lines)


def _assumed(result) -> str:
    """The line that names the settings the command assumed (a budget means a GPU), or ''."""
    if not result.assumed:
        return ""
    values, flags = " and ".join(v for _, v in result.assumed), "/".join(f"--{k}" for k, _ in result.assumed)
    return f"\nassuming {values}: give {flags} to change"


def solved(result, size: str, batch: str) -> str:
    """`archcalc memory --solve NAME`: the largest value, in words; `size` and `batch` as the command line gave them."""
    if result.value is None:
        return f"No {result.name} fits {size} at batch {batch}."
    peak = result.report.memory.training.at(int(batch))
    return (f"Largest {result.name}{' = W' if result.name == 'H' else ''}: {result.value:,} fits {size} at batch {batch}"
            f" (peak {peak:,} bytes)")


def solved_json(result, batch: str) -> str:
    data = {"solve": result.name, "value": result.value, "batch": int(batch), "budget_bytes": result.budget,
            "memory": result.report.memory.to_dict() if result.report else None}
    return _json.dumps(data, indent=2) + "\n"
