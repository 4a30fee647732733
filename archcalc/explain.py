"""Each number of a row derived step by step, with the numbers substituted (`show --explain`)."""

from __future__ import annotations

from . import fmt, num
from .report import Row


ORDER = ("output", "weights", "biases", "params", "macs")


def steps(row: Row) -> list[tuple[str, str]]:
    """(quantity, text) lines: output, weights, biases, params, MACs, each derived with its numbers."""
    lines = row.layer.derive(row.input)
    if not any(q == "output" for q, _ in lines) and row.output == row.input:
        lines.insert(0, ("output", "same shape as the input"))
    lines.append(("output", f"output = {fmt.shape(row.output)} ({fmt.group(num.mul(row.output))} values per sample)"))
    if row.weights != 0 and row.biases != 0:
        lines.append(("params", f"params = {fmt.group(row.weights)} + {fmt.group(row.biases)} = {fmt.group(row.params)}"))
    elif row.params == 0 and not any(q == "weights" for q, _ in lines):
        lines.append(("params", "no parameters"))
    return sorted(lines, key=lambda line: ORDER.index(line[0]) if line[0] in ORDER else len(ORDER))


def text(row: Row, quantity: str | None = None) -> str:
    """The derivation as plain text, all of it or only the lines about `quantity`."""
    return "\n".join(t for q, t in steps(row) if quantity is None or q == quantity)
