"""verify's checks and bench's timings as rich renderables and JSON. Never prints; imports no torch."""

from __future__ import annotations

import json as _json

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .. import fmt, num
from ..report import Report
from .verify import QUANTITIES, Check

HEADERS = {"output": "output", "weights": "weights", "biases": "biases", "flops": "FLOPs", "saved_bytes": "saved bytes"}


def _value(quantity: str, value) -> str:
    if quantity == "output":
        return fmt.shape(value) if all(isinstance(d, int) for d in value) else str(value)
    return fmt.group(value) if value is not None else "—"


def _cell(check: Check) -> Text:
    if check.ok:
        return Text.assemble(("✓ ", "green"), _value(check.quantity, check.expected))
    return Text.assemble(
        ("✗ ", "bold red"), _value(check.quantity, check.expected), (" ≠ torch ", "red"), _value(check.quantity, check.measured)
    )


def verification(report: Report, checks: list[Check], batch: int, torch_version: str) -> Group:
    """One line per layer, one ✓ or ✗ per quantity; a mismatch shows archcalc's value and torch's."""
    quantities = [q for q in (*QUANTITIES, "saved_bytes") if any(c.quantity == q for c in checks)]
    grid = Table(
        title=f"{report.model} against torch {torch_version}: batch {batch}, {report.dtype}",
        caption="FLOPs and bytes are for the whole batch", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    grid.add_column("layer")
    for q in quantities:
        grid.add_column(HEADERS[q], justify="left" if q == "output" else "right", overflow="fold")
    layers = list(dict.fromkeys(c.layer for c in checks))
    cells = {(c.layer, c.quantity): _cell(c) for c in checks}
    for layer in layers:
        grid.add_row(layer, *(cells.get((layer, q), Text("")) for q in quantities))
    wrong = [c for c in checks if not c.ok]
    if wrong:
        verdict = Text(f"{len(wrong)} of {len(checks)} checks differ from torch", style="bold red")
    else:
        verdict = Text(f"all {len(checks)} checks agree with torch", style="bold green")
    return Group(grid, verdict)


def verification_json(report: Report, checks: list[Check], batch: int, torch_version: str) -> str:
    def plain(value):
        return [num.to_json(d) for d in value] if isinstance(value, tuple) else num.to_json(value)

    data = {
        "model": report.model,
        "batch": batch,
        "dtype": str(report.dtype),
        "torch": torch_version,
        "ok": all(c.ok for c in checks),
        "checks": [
            {"layer": c.layer, "quantity": c.quantity, "expected": plain(c.expected), "measured": plain(c.measured), "ok": c.ok}
            for c in checks
        ],
    }
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"
