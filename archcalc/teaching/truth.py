"""The true value of a claim's key, on the report at the key's qualifiers (its batch, dtype, optimizer, device)."""

from __future__ import annotations

import dataclasses

from ..core import num
from ..report import Report
from . import claim_keys
from .claim_keys import ClaimError, Key


def at_qualifiers(report: Report, key: Key) -> Report:
    """The report a memory claim is about: at its batch size, dtype, optimizer and device (read by claim_keys.parse_key)."""
    given = {("batch" if name == "B" else name): value for name, value in key.at}
    changes = {field: value for field, value in given.items() if value != getattr(report, field)}
    return dataclasses.replace(report, **changes) if changes else report


def value(report: Report, key: Key):
    """The true value of a key: a number, a formula (a share: in %, exactly), or a shape."""
    if key.scope == "memory":
        return report.memory.value(key.quantity)
    if key.scope == "layer" and (key.quantity in claim_keys.AXES or key.quantity == "dense_equivalent_weights"):
        return teaching(report, report.row(key.name), key.quantity)
    if key.quantity in ("output", "input"):  # a layer's; a group's output is its last layer's
        rows = key.rows(report)
        return rows[0].input if key.quantity == "input" else rows[-1].output
    summed = "params" if key.quantity == "share" else key.quantity
    total = report.totals[summed] if key.scope == "total" else num.add(getattr(row, summed) for row in key.rows(report))
    return report.percent(total) if key.quantity == "share" else total


def teaching(report: Report, row, quantity: str):
    """A layer's receptive field or jump (a tuple, one per axis), or a conv's dense-equivalent weights."""
    if quantity == "dense_equivalent_weights":
        dense = row.layer.dense_equivalent_weights(row.input)
        if dense is None:
            raise ClaimError(f"{row.name} is a {row.kind} layer: only conv layers have dense_equivalent_weights")
        return dense
    field = report.fields[row.index - 1]
    if field is None:
        raise ClaimError(f"archcalc does not know the receptive field of {row.kind} layers ({row.name})")
    if quantity == "jump" and field.whole:
        raise ClaimError(f"{row.name} sees the whole input: its values are no longer spread over the image, it has no jump")
    if not field.size:
        raise ClaimError(f"{report.model}'s input has no spatial axes: no receptive field")
    return field.size if quantity == "receptive_field" else field.jump


