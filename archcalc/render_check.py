"""Verdicts -> a rich table per claims file, or one JSON document for a grader. Never prints."""

from __future__ import annotations

import json as _json
from fractions import Fraction

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from . import fmt, num, receptive
from .check import Result, Verdict
from .report import Report


def shown(value) -> str:
    """A true value as people read it: 256×27×27, 34,944, 60.52%."""
    if isinstance(value, tuple):
        return fmt.shape(value)
    if isinstance(value, Fraction):
        return f"{float(value):,.4g}"
    return fmt.group(value)


def true_value(verdict: Verdict) -> str:
    if verdict.kind == "axes":
        return receptive.text(verdict.actual)
    if verdict.kind == "share" and num.is_concrete(verdict.actual):
        return f"{float(verdict.actual):.2f}%"
    return shown(verdict.actual)


def claimed(verdict: Verdict) -> str:
    raw = verdict.claimed
    if isinstance(raw, list):
        return "[" + ", ".join(map(str, raw)) + "]"
    return fmt.group(raw) if isinstance(raw, int) and not isinstance(raw, bool) else str(raw)


def why(verdict: Verdict) -> str:
    """For a wrong claim: the derivation and the likely mistake; for a right one, how it was read if that matters."""
    lines = [] if verdict.ok else verdict.explanation.splitlines()
    if verdict.mistake:
        lines.append(f"likely mistake: {verdict.mistake}")
    if verdict.note:
        lines.append(verdict.note)
    elif verdict.ok and not verdict.reading.startswith(("exactly", "[")):
        lines.append(f"read as {verdict.reading}")
    return "\n".join(lines)


def heading(result: Result) -> str:
    who = ", ".join(f"{value}" for value in result.student.values())
    source = "[expect]" if result.source == "expect" else "answers"
    return f"{result.file or '<claims>'} ({source}{': ' + who if who else ''})"


def summary(result: Result) -> str:
    return f"{result.right}/{len(result.verdicts)} right"


def table(results: list[Result]) -> Group:
    """A table per file: claim, claimed, true, ✓/✗, and why for the wrong ones; a summary line each."""
    parts = []
    for result in results:
        parts.append(Text(heading(result), style="bold"))
        if result.error:
            parts += [Text("not checked: " + result.error.splitlines()[0], style="red"), Text("")]
            continue
        grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name, justify in (("claim", "left"), ("claimed", "right"), ("true", "right"), ("", "center"), ("why", "left")):
            grid.add_column(name, justify=justify, overflow="fold", no_wrap=name in ("claim", ""))
        for verdict in result.verdicts:
            mark = Text("✓", style="green") if verdict.ok else Text("✗", style="bold red")
            grid.add_row(verdict.key, claimed(verdict), true_value(verdict), mark, why(verdict))
        parts += [grid, Text(summary(result), style="bold green" if result.ok else "bold red"), Text("")]
    if len(results) > 1:
        parts.append(Text(totals_line(results), style="bold"))
    return Group(*parts)


def totals_line(results: list[Result]) -> str:
    right = sum(r.right for r in results)
    total = sum(len(r.verdicts) for r in results)
    perfect = sum(r.ok for r in results)
    bad = sum(r.error is not None for r in results)
    line = f"{len(results)} files: {perfect} all right, {len(results) - perfect - bad} with wrong claims"
    return line + (f", {bad} not checked" if bad else "") + f"; {right}/{total} claims right"


def json(results: list[Result], report: Report) -> str:
    """One document: the network, then per file its student, counts and per-claim verdicts."""
    data = {
        "spec": report.path,
        "model": report.model,
        "files": [result.to_dict() for result in results],
        "summary": {
            "files": len(results),
            "all_right": sum(r.ok for r in results),
            "errors": sum(r.error is not None for r in results),
            "right": sum(r.right for r in results),
            "total": sum(len(r.verdicts) for r in results),
        },
    }
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"
