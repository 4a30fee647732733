"""Report -> a rich table, markdown, csv or json. Returns renderables and strings; never prints."""

from __future__ import annotations

import csv as _csv
import dataclasses
import io
import json as _json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..analysis import checkpoint
from ..core import fmt, num
from ..memory import timeline
from ..report import Report, Row
from ..teaching import explain_row


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
    short = f" ({fmt.short(t['params'])})" if num.is_concrete(t["params"]) else ""
    lines = [("Parameters", f"{fmt.group(t['params'])}{short}: weights {fmt.group(t['weights'])}, biases {fmt.group(t['biases'])}")]
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
               "block slack": "cached blocks' slack"}


def memory_lines(report: Report) -> list[tuple[str, str, str]]:
    """The memory panel's rows: (what, in binary units, in bytes): the step's timeline, phase by phase."""
    m, batch = report.memory, report.batch
    setting = m.peak_phase()
    rows = []
    if m.autocast is not None:  # mixed precision: say so (float32 runs print as they did)
        rows.append(("under autocast", "", f"{m.autocast}, float32 parameters and optimizer state"))
    for phase in ("forward", "backward", "optimizer"):
        label = f"{phase} peak" + (" (the step's peak)" if phase == setting else "")
        rows.append((label, *fmt.per_batch(m.phase(phase), batch)))
        if batch is not None and num.is_concrete(batch) and num.is_concrete(m.phase(phase).at(batch)):
            alive = m.phase(phase).alive(batch)
            total = sum(alive.values())
            parts = " · ".join(f"{KIND_LABELS[k]} {fmt.size_bytes(v)}" for k, v in alive.items() if v * 2000 >= total)
            rows.append(("", "", parts))
    rows.append(("training step, peak", *fmt.per_batch(m.training, batch)))
    regions = checkpoint.regions(report)
    if regions:
        named = ", ".join(r.path for r in regions) if len(regions) <= 3 else f"{regions[0].path} … {regions[-1].path}"
        rows.append(("checkpointed", f"{len(regions)} block use{'s' * (len(regions) > 1)}", f"recomputed in backward: {named}"))
    rows.append(("inference, peak (eval, inference_mode)", *fmt.per_batch(m.inference_peak, batch)))
    if str(m.device) == "cuda":
        rows.append(("CUDA context, outside the peak", fmt.size_bytes(timeline.CUDA_CONTEXT), f"{fmt.group(timeline.CUDA_CONTEXT)} bytes"))
    return rows


def course_lines(report: Report) -> list[tuple[str, str, str]]:
    """The course's memory model (section 5.1) beside the real one, its erratum named."""
    m, batch = report.memory, report.batch
    return [
        ("forward, M + B·m·L", *fmt.per_batch(m.course_forward, batch)),
        ("backward as printed, M + B·m·L", "wrong", "the notes repeat the forward formula"),
        ("backward, 2M + 2·B·m·L", *fmt.per_batch(m.course_backward, batch)),
    ]


def memory_panel(report: Report) -> Group:
    m = report.memory
    batch = "B" if report.batch is None else fmt.group(report.batch)
    title = f"Memory for a batch of {batch}: {report.dtype}, optimizer {m.optimizer}, on {m.device}"
    grids = []
    panels = [(title, memory_lines(report))] + ([("The course's model", course_lines(report))] if report.course else [])
    for heading, lines in panels:
        grid = Table(title=Text(heading), title_justify="left", box=None, show_header=False, pad_edge=False)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(justify="right", overflow="fold")
        grid.add_column(overflow="fold", style="dim")
        for line in lines:
            grid.add_row(*map(Text, line))  # formulas and names are text, never markup
        grids.append(grid)
    if not report.course:
        return grids[0]
    notes = Text.assemble(
        f"m = {fmt.size_bytes(m.course_m)}, the largest layer output per sample; L = {m.course_layers} layers. "
        "The backward pass also holds a gradient for every parameter (+M) and the gradients of the activations (+B·m·L). "
        "Binary units: 1 MiB = 2²⁰ bytes.",
        style="dim",
    )
    return Group(grids[0], Text(""), grids[1], notes)


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
    rows = [_line_cells(report, line) for line in outline(report, depth)]
    totals = _total_cells(report)

    def natural(header: str) -> int:
        return max(len(header), len(totals[header]), *(len(r[header]) for r in rows))

    headers = HEADERS
    if sum(natural(h) + 1 for h in HEADERS) > width:
        headers = COMPACT
        for r in rows:
            r["hyperparameters"] = f"{r['type']} {r['hyperparameters']}".strip()
    fits = sum(natural(h) + 1 for h in headers) <= width
    # A column of short cells gets its width up front (rich then need not measure 2,000 rows);
    # formulas and, when the table must shrink, the hyperparameters fold.
    fixed = {h: natural(h) <= 16 and (fits or h != "hyperparameters") for h in headers}
    # The others share what the fixed columns leave (each column takes its width and a space either side),
    # the narrowest first and none beyond its natural width: a formula folds at its share, where rich
    # would keep whole words and crop the table's right edge.
    room, caps = width - sum(natural(h) + 2 for h in headers if fixed[h]), {}
    flexible = sorted((h for h in headers if not fixed[h]), key=natural)
    for left, header in enumerate(flexible):
        caps[header] = max(len(header), min(natural(header), room // (len(flexible) - left) - 2))
        room -= caps[header] + 2

    def grid(cells: bool = True, natural_widths: bool = False) -> Table:
        grid = Table(title=Text(_title(report)), box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False, collapse_padding=True)
        for h in headers:
            whole = fixed[h] or natural_widths
            grid.add_column(h, footer=Text(totals[h]), justify="right" if h in NUMERIC else "left",
                            width=natural(h) if whole else None, no_wrap=whole, overflow="fold", max_width=caps.get(h))
        for r in rows if cells else ():
            grid.add_row(*(Text(r[h]) for h in headers))
        return grid

    plain = all(caps.get(h, natural(h)) >= natural(h) for h in headers) and all(
        _plain(r[h]) for h in headers for r in [*rows, totals])
    if plain:  # each row one line of plain text, at the width rich would give it: rich draws only the frame
        widths = {h: natural(h) for h in headers}
        lines = [" " + "  ".join(r[h].rjust(widths[h]) if h in NUMERIC else r[h].ljust(widths[h]) for h in headers) + " "
                 for r in rows]
        parts = [_Rows(grid(cells=False, natural_widths=True), lines, sum(widths.values()) + 2 * len(headers), grid)]
    else:
        parts = [grid()]
    footer = Table.grid(padding=(0, 2))
    footer.add_column(style="bold", no_wrap=True)
    footer.add_column(overflow="fold")
    for label, value in summary_lines(report):
        footer.add_row(label, Text(value))
    parts += [footer, Text(""), memory_panel(report)]
    if explained:
        parts.append(explanation(report))
    return Group(*parts)


def explanation(report: Report) -> Group:
    blocks = []
    for row in report.rows:
        kind = ", ".join(part for part in (row.kind, row.layer.summary(row.input)) if part)
        head = Text.assemble(("\n" + row.name, "bold"), f" ({kind}): ", f"{_inputs_text(row)} → {fmt.shape(row.output)}")
        blocks.append(head)
        for _, line in explain_row.lines(report, row):  # wrapped lines keep the indent
            blocks.append(Padding(Text(line, style="yellow" if line.startswith("note:") else ""), (0, 0, 0, 2)))
    return Group(*blocks)


def markdown(report: Report, explained: bool = False, depth: int | None = None) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

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


def fit(result) -> Group:
    """`archcalc memory --budget`: the largest batch, why, and the memory at that batch."""
    budget = f"{fmt.size_bytes(result.budget)} ({fmt.group(result.budget)} bytes)"
    training = result.report.memory.training
    context = (f"; the CUDA context's {fmt.size_bytes(result.context)} taken out first" if result.context else "")
    headroom = (f"; per-sample bytes counted {float(result.headroom):.3g}× (the caching allocator's headroom under a cap, measured)"
                if result.headroom != 1 else "")
    if result.batch is None:
        head = Text.assemble(("Not even a batch of 1 fits ", "bold red"), budget,
                             f": a training step of 1 needs {fmt.size_bytes(training.at(1))}, "
                             f"{fmt.size_bytes(result.over)} ({fmt.group(result.over)} bytes) more{context}.")
    else:
        pieces = training.pieces
        if all(num.is_concrete(p.fixed) and num.is_concrete(p.per_sample) for p in pieces):
            terms = ", ".join(f"{fmt.group(p.fixed)} + {fmt.group(p.per_sample)}·B" for p in pieces)
            why = f"the step's peak is {'max(' + terms + ')' if len(pieces) > 1 else terms} bytes{headroom}{context}"
        else:
            why = f"B = {result.batch}"
        head = Text.assemble(("Largest batch: ", "bold"), (fmt.group(result.batch), "bold green"), f" fits {budget}\n", why)
    return Group(head, Text(""), memory_panel(result.report))


def fit_json(result) -> str:
    data = {
        "budget_bytes": result.budget,
        "batch": None if result.batch is None else num.to_json(result.batch),
        "over_bytes": num.to_json(result.over),
        "headroom": float(result.headroom),
        "cuda_context_bytes": result.context,
        "memory": result.report.memory.to_dict(),
    }
    return _json.dumps(data, indent=2) + "\n"


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
