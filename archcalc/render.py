"""Report -> a rich table, markdown, csv or json. Returns renderables and strings; never prints."""

from __future__ import annotations

import csv as _csv
import io
import json as _json
from enum import StrEnum

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from . import explain, fmt, num
from .report import Report, Row


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


def _title(report: Report) -> str:
    return f"{report.model}: input {fmt.shape(report.input)}, {report.dtype}"


def table(report: Report, width: int = 100, explained: bool = False) -> Group:
    """The report as a rich table with its footer (and, if `explained`, every derivation), to fit `width`."""
    rows = [_cells(report, row) for row in report.rows]
    totals = _total_cells(report)
    headers = HEADERS
    if sum(max(len(h), *(len(r[h]) for r in rows)) + 1 for h in HEADERS) > width:
        headers = COMPACT
        for r in rows:
            r["hyperparameters"] = f"{r['type']} {r['hyperparameters']}".strip()
    grid = Table(title=_title(report), box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False, collapse_padding=True)
    for header in headers:
        short = all(len(r[header]) <= 16 for r in rows) and len(totals[header]) <= 16  # formulas may fold
        grid.add_column(header, footer=totals[header], justify="right" if header in NUMERIC else "left",
                        no_wrap=short and header != "hyperparameters", overflow="fold",
                        min_width=20 if header == "hyperparameters" else None)
    for r in rows:
        grid.add_row(*(r[h] for h in headers))
    footer = Table.grid(padding=(0, 2))
    footer.add_column(style="bold", no_wrap=True)
    footer.add_column(overflow="fold")
    for label, value in summary_lines(report):
        footer.add_row(label, value)
    parts = [grid, footer]
    if explained:
        parts.append(explanation(report))
    return Group(*parts)


def explanation(report: Report) -> Group:
    blocks = []
    for row in report.rows:
        head = Text.assemble(
            ("\n" + row.name, "bold"),
            f" ({row.kind}{', ' + row.layer.summary(row.input) if row.layer.summary(row.input) else ''}): ",
            f"{fmt.shape(row.input)} → {fmt.shape(row.output)}",
        )
        blocks.append(head)
        for _, line in explain.steps(row):
            blocks.append(Text("  " + line, style="yellow" if line.startswith("note:") else ""))
    return Group(*blocks)


def markdown(report: Report, explained: bool = False) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {_title(report)}", "", line(HEADERS),
           "|" + "|".join("---:" if h in NUMERIC else "---" for h in HEADERS) + "|"]
    out += [line(_cells(report, row).values()) for row in report.rows]
    out.append(line(f"**{c}**" if c else "" for c in _total_cells(report).values()))
    out.append("")
    out += [f"- **{label}**: {value}" for label, value in summary_lines(report)]
    if explained:
        for row in report.rows:
            out += ["", f"**{row.name}** ({row.kind}): {fmt.shape(row.input)} → {fmt.shape(row.output)}", ""]
            out += [f"- {text}" for _, text in explain.steps(row)]
    return "\n".join(out) + "\n"


def csv(report: Report) -> str:
    """One line per layer, plain numbers (no grouping), for spreadsheets."""
    buffer = io.StringIO()
    writer = _csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "type", "hyperparameters", "input", "output", "weights", "biases", "params", "share", "macs", "flops"])
    for row in report.rows:
        share = report.share(row.params)
        writer.writerow([
            row.name, row.kind, row.layer.summary(row.input),
            "x".join(str(d) for d in row.input), "x".join(str(d) for d in row.output),
            *(str(num.to_json(getattr(row, q))) for q in ("weights", "biases", "params")),
            "" if share is None else f"{float(share):.4f}",
            str(num.to_json(row.macs)), str(num.to_json(row.flops)),
        ])
    return buffer.getvalue()


def json(report: Report, explained: bool = False) -> str:
    data = report.to_dict()
    if explained:
        for entry, row in zip(data["layers"], report.rows):
            entry["explain"] = [text for _, text in explain.steps(row)]
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"
