"""Each number of a row derived step by step, with the numbers substituted (`show --explain`)."""

from __future__ import annotations

from ..analysis import receptive
from ..core import fmt, num
from ..report import Report, Row

ORDER = ("output", "weights", "biases", "params", "dense_equivalent_weights", "macs", "flops", "training_flops",
         "receptive_field", "saved_for_backward_bytes")


def steps(row: Row) -> list[tuple[str, str]]:
    """(quantity, text) lines: output, weights, biases, params, MACs, each derived with its numbers."""
    lines = row.layer.derive(row.input)
    if not any(q == "output" for q, _ in lines) and row.output == row.input:
        lines.insert(0, ("output", "same shape as the input"))
    values = num.mul(row.output)
    count = f"{fmt.group(values)} values per sample" if num.is_concrete(values) else f"values per sample: {values}"
    lines.append(("output", f"output = {fmt.shape(row.output)}" + (f" ({count})" if len(row.output) > 1 else "")))
    if row.weights != 0 and row.biases != 0:
        lines.append(("params", f"params = {fmt.group(row.weights)} + {fmt.group(row.biases)} = {fmt.group(row.params)}"))
    elif row.params == 0 and not any(q == "weights" for q, _ in lines):
        lines.append(("params", "no parameters"))
    if row.macs != 0:
        torch_counts = row.layer.torch_counts(row.input, row.requires_grad)
        quirk = torch_counts.get("flops")
        lines.append(("flops", f"FLOPs = 2·MACs = {fmt.group(row.flops)}"
                               + (f" (torch's FlopCounterMode counts {fmt.group(quirk[0])}: {quirk[1]})" if quirk else "")))
        backward = row.training_flops - row.flops - row.recompute_flops  # fmt makes it normal
        why = "gradients of the weights and of the input" if row.requires_grad else (
            "gradient of the weights only: nothing before this layer needs one")
        if quirk := torch_counts.get("training_flops"):
            why += f"; torch's FlopCounterMode counts {fmt.group(quirk[0])} in all: {quirk[1]}"
        again = f" + forward again {fmt.group(row.recompute_flops)} (checkpointed: rerun in backward)" if row.recompute_flops else ""
        lines.append(("training_flops", f"training FLOPs = forward {fmt.group(row.flops)} + backward "
                                        f"{fmt.group(backward)} ({why}){again} = {fmt.group(row.training_flops)}"))
    return sorted(lines, key=lambda line: ORDER.index(line[0]) if line[0] in ORDER else len(ORDER))


def text(row: Row, quantity: str | None = None) -> str:
    """The derivation as plain text, all of it or only the lines about `quantity`."""
    return "\n".join(t for q, t in steps(row) if quantity is None or q == quantity)


def kept(report: Report, row: Row) -> list[tuple[str, str]]:
    """What autograd keeps for this layer's backward pass, and which of it an earlier layer already counted."""
    items = report.memory.kept[row.index - 1]
    if not items:
        why = " (no layer before it has parameters: no gradient flows here)" if not row.requires_grad and row.params == 0 else ""
        return [("saved_for_backward_bytes", f"keeps nothing for backward{why}")]
    out = []
    for kept in items:
        size = f"{fmt.group(kept.nbytes)} bytes{' per sample' if kept.item.per_sample else ''}"
        out.append(("saved_for_backward_bytes", f"keeps {kept.item.what}: {size}{'' if kept.counted else ' (a storage counted before)'}"))
    return out


def lines(report: Report, row: Row) -> list[tuple[str, str]]:
    """Everything --explain says about a row."""
    return steps(row) + receptive.lines(report, row) + kept(report, row)
