"""Verdicts -> a rich table per claims file, or one JSON document for a grader. Never prints."""

from __future__ import annotations

import json as _json
import math
import re
from fractions import Fraction

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..analysis import receptive
from ..core import fmt, num
from ..core.untrusted import one_line, visible
from ..report import Report
from ..teaching.check import Result, Verdict


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
    who = ", ".join(one_line(f"{value}") for value in result.student.values())
    source = "[expect]" if result.source == "expect" else "answers"
    return f"{one_line(result.file or '<claims>')} ({source}{': ' + who if who else ''})"


def summary(result: Result) -> str:
    return f"{result.right}/{len(result.verdicts)} right"


def table(results: list[Result]) -> Group:
    """A table per file: claim, claimed, true, ✓/✗, and why for the wrong ones; a summary line each."""
    parts = []
    for result in results:
        parts.append(Text(heading(result), style="bold"))
        if result.error:
            parts += [Text("not checked: " + one_line(result.error.splitlines()[0]), style="red"), Text("")]
            continue
        grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name, justify in (("claim", "left"), ("claimed", "right"), ("true", "right"), ("", "center"), ("why", "left")):
            grid.add_column(name, justify=justify, overflow="fold", no_wrap=name in ("claim", ""))
        for verdict in result.verdicts:
            mark = Text("✓", style="green") if verdict.ok else Text("✗", style="bold red")
            # Text, not str: a cell of student text is never read as rich markup ("[classes]" stays on screen)
            grid.add_row(Text(one_line(verdict.key)), Text(one_line(claimed(verdict))), Text(true_value(verdict)), mark,
                         Text(visible(why(verdict))))
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
    return _CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", _json.dumps(_jsonable(data), indent=2, ensure_ascii=False)) + "\n"


# json escapes the C0 controls itself; these others would still reach a terminal that shows the document
_CONTROLS = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _jsonable(x):
    """Data that json.dumps writes as valid JSON: non-finite floats and anything else as strings."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return x.isoformat() if hasattr(x, "isoformat") else str(x)
