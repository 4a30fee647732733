"""Verdicts -> a rich table per claims file, or one JSON document for a grader. Never prints."""

from __future__ import annotations

import json as _json
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from ..analysis import receptive
from ..core import fmt, num
from ..core.untrusted import one_line, visible
from ..report import Report
from ..teaching.check import Result, Verdict
from . import wrap


def shown(value) -> str:
    """A true value as people read it: 256×27×27, 34,944, 60.52%."""
    if isinstance(value, tuple):
        return fmt.shape(value)
    if isinstance(value, Fraction):
        return f"{float(value):,.4g}"
    return fmt.group(value)


MAX_SHOWN = 80  # characters of a true value in a table cell: a longer formula is named, not printed


def true_value(verdict: Verdict) -> str:
    if verdict.error or verdict.actual is None:
        return "—"
    if not all(num.is_concrete(d) for d in (verdict.actual if isinstance(verdict.actual, tuple) else (verdict.actual,))):
        names = sorted(num.free_names(num.mul(verdict.actual) if isinstance(verdict.actual, tuple) else verdict.actual))
        text = shown(verdict.actual)
        limit = MAX_SHOWN if not verdict.decided else 3 * MAX_SHOWN  # a verdict names a long formula, never prints it
        return text if len(text) <= limit else f"a formula in {', '.join(names)} ({len(text):,} characters)"
    if verdict.kind == "axes":
        return receptive.text(verdict.actual)
    if verdict.kind == "share" and num.is_concrete(verdict.actual):
        return f"{float(verdict.actual):.2f}%"
    return shown(verdict.actual)


def claimed(verdict: Verdict) -> str:
    """The claim as written, on one line of at most MAX_SHOWN characters (a student's value can be anything)."""
    raw = verdict.claimed
    if isinstance(raw, list):
        text = "[" + ", ".join(map(str, raw[:MAX_SHOWN])) + ("" if len(raw) <= MAX_SHOWN else ", ...") + "]"
        count = f" ({len(raw):,} sizes)"
    else:
        text = fmt.group(raw) if isinstance(raw, int) and not isinstance(raw, bool) else str(raw)[:10 * MAX_SHOWN]
        count = f" ({len(str(raw)):,} characters)"
    text = one_line(text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - len(count) - 1] + "…" + count


def why(verdict: Verdict) -> str:
    """For a wrong claim: the derivation and the likely mistake; for a right one, how it was read if that matters."""
    if verdict.error:
        return "not graded: " + error_text(verdict.error)
    if not verdict.decided:
        return verdict.note or ""
    lines = [] if verdict.ok else verdict.explanation.splitlines()
    if verdict.mistake:
        lines.append(f"likely mistake: {verdict.mistake}")
    approximate = not verdict.reading.startswith(("exactly", "["))
    if verdict.ok and approximate:
        lines.append(f"read as {verdict.reading}" + (f"; {verdict.note}" if verdict.note else ""))
    elif verdict.note:
        lines.append(verdict.note)
    return "\n".join(lines)


def error_text(error: str) -> str:
    """A claim's error as a verdict shows it: the problem and a "did you mean", not the list of every valid key."""
    lines = error.splitlines()
    first = lines[0].split(": ", 1)[1] if lines[0].count(": ") and re.match(r"^\S+:\d+: ", lines[0]) else lines[0]
    hint = next((line.strip() for line in lines[1:] if line.strip().startswith(("hint: did you mean", "did you mean"))), None)
    if hint is None and len(lines) > 1 and lines[1].strip().startswith("hint:") and not lines[1].strip().endswith(":"):
        hint = lines[1].strip()
    return first + (f"\n{hint}" if hint else "")


def who(result: Result) -> str:
    """The student as the heading names them: the [student] fields that are filled in."""
    return ", ".join(one_line(f"{value}") for field, value in result.student.items()
                     if f"{value}".strip() and field != "variant")  # the variant is said with its values


def heading(result: Result) -> str:
    named = who(result)
    source = "[expect]" if result.source == "expect" else "answers"
    variant = f"; {result.variant}" if result.variant else ""
    return f"{one_line(result.file or '<claims>')} ({source}{': ' + named if named else ''}{variant})"


def summary(result: Result) -> str:
    line = f"{result.right}/{result.total} right"
    if result.errors:
        line += f", {len(result.errors)} not graded (errors)"
    if result.undecided:
        line += f", {result.undecided} undecided (not counted)"
    return line


def table(results: list[Result]) -> Group:
    """Per file: each claim, claimed, true, ✓/✗/?/!, and why; a summary line each. A table where the terminal
    is wide enough for it, else each claim stacked on lines of its own (`Verdicts`)."""
    parts = []
    for result in results:
        parts.append(Text(heading(result), style="bold"))
        if result.error:
            parts += [Text("not checked: " + one_line(result.error.splitlines()[0]), style="red"), Text("")]
            continue
        parts += [Verdicts(tuple(result.verdicts)), Text(summary(result), style="bold green" if result.ok else "bold red"),
                  Text("")]
    if len(results) > 1:
        parts.append(Text(totals_line(results), style="bold"))
    for path, reason in getattr(results, "skipped", ()):
        parts.append(wrap.Wrapped(f"skipped {one_line(path)}: {reason}", "yellow"))
    return Group(*parts)


def _mark(verdict: Verdict) -> Text:
    return (Text("✓", style="green") if verdict.ok else Text("?", style="yellow") if not verdict.decided
            else Text("!", style="bold red") if verdict.error else Text("✗", style="bold red"))


WHY = 40  # the narrowest "why" column a table is drawn with: narrower, each claim is stacked instead


@dataclass(frozen=True)
class Verdicts:
    """One file's verdicts, drawn to the width they are given. Cells are Text, never markup: student text
    ("[classes]") stays on screen as written."""

    verdicts: tuple[Verdict, ...]

    def cells(self, verdict: Verdict) -> tuple[str, str, str, str]:
        return one_line(verdict.key), one_line(claimed(verdict)), true_value(verdict), visible(why(verdict))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = [self.cells(v) for v in self.verdicts]
        widest = [max((cell_len(line) for row in rows for line in row[i].split("\n")), default=0) for i in range(3)]
        if sum(widest) + 3 + min(WHY, max((cell_len(r[3]) for r in rows), default=0)) + 8 <= options.max_width:
            yield self.grid(rows)
            return
        for verdict, (key, said, true, because) in zip(self.verdicts, rows):
            yield Text.assemble(_mark(verdict), " ", (key, "bold"))
            for label, text in (("claimed", said), ("true", true), ("why", because)):
                for index, line in enumerate(piece for part in text.split("\n") for piece in wrap.lines(part, options.max_width - 10)):
                    yield Text(f"  {label if index == 0 else '':<8}{line}", no_wrap=True, overflow="ignore")

    def grid(self, rows: list[tuple[str, str, str, str]]) -> Table:
        grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name, justify in (("claim", "left"), ("claimed", "right"), ("true", "right"), ("", "center"), ("why", "left")):
            grid.add_column(name, justify=justify, overflow="fold", no_wrap=name in ("claim", ""))
        for verdict, (key, said, true, because) in zip(self.verdicts, rows):
            grid.add_row(Text(key), Text(said), Text(true), _mark(verdict), wrap.Wrapped(because))
        return grid


def totals_line(results: list[Result]) -> str:
    right = sum(r.right for r in results)
    total = sum(r.total for r in results)
    perfect = sum(r.ok for r in results)
    unchecked = sum(r.error is not None for r in results)
    bad = sum(r.error is not None or bool(r.errors) for r in results)
    line = f"{len(results)} files: {perfect} all right, {len(results) - perfect - bad} with wrong claims"
    if bad:
        line += f", {bad} with errors" + (f" ({unchecked} not checked)" if unchecked else "")
    undecided = sum(r.undecided for r in results)
    return line + f"; {right}/{total} claims right" + (f", {undecided} undecided" if undecided else "")


def json(results: list[Result], report: Report) -> str:
    """One document: the network, then per file its student, counts and per-claim verdicts."""
    data = {
        "spec": report.path,
        "model": report.model,
        "files": [result.to_dict() for result in results],
        "summary": {
            "files": len(results),
            "all_right": sum(r.ok for r in results),
            "errors": sum(r.error is not None or bool(r.errors) for r in results),
            "right": sum(r.right for r in results),
            "total": sum(r.total for r in results),
        },
        "skipped": [{"path": path, "why": reason} for path, reason in getattr(results, "skipped", ())],
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
