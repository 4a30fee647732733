"""Receptive fields of a report's rows, over the worst path of a graph (layers/field.py has the rules)."""

from __future__ import annotations

from ..core import fmt
from ..layers.receptive_field import Field, merge


def fields(report, jumps: bool = True) -> tuple[Field | None, ...]:
    """One Field per row (None where a layer kind does not say how it moves a field).

    `jumps=False` is the usual mistake, for the likely-mistake hints: every jump left at 1."""
    start = Field.of_input(max(len(report.input) - 1, 0))
    by_name: dict[str, Field | None] = {"input": start}
    out: list[Field | None] = []
    for row in report.rows:
        inputs = getattr(row, "inputs", None)  # a graph's rows name what they read; a stack's read the row before
        if inputs is None:
            incoming = out[-1] if out else start
        else:
            incoming = merge(by_name.get(name) for name in inputs)
        if incoming is None or incoming.whole:
            field = incoming
        else:
            field = row.layer.receptive(row.input, incoming)
            if not jumps and field is not None and not field.whole:
                field = Field(field.size, incoming.jump)
        out.append(field)
        by_name[row.name] = field
    return tuple(out)


def incoming(report, row) -> Field | None:
    """The field of what `row` reads: the row before's, or the worst of its inputs'."""
    inputs = getattr(row, "inputs", None)
    if inputs is None:
        return report.fields[row.index - 2] if row.index > 1 else Field.of_input(max(len(report.input) - 1, 0))
    by_name = {r.name: f for r, f in zip(report.rows, report.fields)}
    return merge(by_name.get(name, Field.of_input(max(len(report.input) - 1, 0)) if name == "input" else None)
                 for name in inputs)


def per_axis(values) -> object:
    """(195, 195) -> 195: one value when every axis agrees, else the tuple."""
    values = tuple(values)
    return values[0] if values and len(set(map(str, values))) == 1 else values


def lines(report, row) -> list[tuple[str, str]]:
    """--explain lines: how the row's receptive field and jump come from its input's."""
    field = report.fields[row.index - 1]
    if len(report.input) < 2:
        return []  # a flat or token input has no spatial axes to see
    before = incoming(report, row)
    if field is None:
        if before is None:
            return []  # the first layer without a field said so
        return [("receptive_field", f"receptive field: archcalc does not know it for {row.kind} layers "
                                    "(nor, then, for the layers after it)")]
    inputs = [name for name in getattr(row, "inputs", ()) if name != row.name]
    if len(inputs) > 1 and before is not None:
        by_name = {r.name: f for r, f in zip(report.rows, report.fields)}
        each = ", ".join(f"{name} {text(by_name[name].size)}" for name in inputs if by_name.get(name) is not None)
        return [("receptive_field", f"receptive field = the largest of its inputs' (the worst path): {each} → "
                                    f"{text(field.size)}" + ("" if field.whole else f", jump {text(field.jump)}"))]
    rf, jump = text(field.size), None if field.whole else text(field.jump)
    ws = row.layer.windows(row.input)  # () for a layer without a sliding window
    if ws and before is not None and not before.whole and rf != text(before.size):
        terms = [f"{fmt.term(r)} + ({fmt.term(w.k)} − 1)·{fmt.term(w.d)}·{fmt.term(j)}"
                 for r, w, j in zip(before.size, ws, before.jump)]
        shown = terms[0] if len(set(terms)) == 1 else " × ".join(f"[{t}]" for t in terms)
        lines = [("receptive_field", f"receptive field = rf_in + (k − 1)·d·jump_in = {shown} = {rf} input pixels")]
        strides = [w.s for w in ws]
        if any(s != 1 for s in strides):
            lines.append(("receptive_field", f"jump = jump_in·stride = {text(before.jump)}·{text(strides)} = {jump}"))
        else:
            lines.append(("receptive_field", f"jump = {jump} (stride 1 keeps it)"))
        return lines
    if field.whole and before is not None and not before.whole:
        return [("receptive_field", f"receptive field = rf_in + (n − 1)·jump_in = {rf}: every value now sees the whole map")]
    if field.whole:
        return [("receptive_field", f"receptive field = {rf} (the whole input seen so far)")]
    return [("receptive_field", f"receptive field = {rf}, jump = {jump}")]


def text(values) -> str:
    """(195, 195) -> '195'; (5, 7) -> '5×7'."""
    values = tuple(values)
    if len(set(map(str, values))) == 1:
        return fmt.group(values[0])
    return "×".join(fmt.term(v) for v in values)
