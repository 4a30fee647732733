"""The parameters along the step: the tensors each row holds, which of them train, and their gradients.

`Trained` is the policy "which parameters get gradients and optimizer state": today every parameter of a row
whose output leads to the loss. Fine-tuning replaces it (frozen layers: none; LoRA: the adapters' only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import num
from ...core.num import Dim

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from .tape import Tape


def param_tensors(row: Row) -> tuple[Dim, ...]:
    """The element counts of a row's parameter tensors (weight, bias), as torch holds them."""
    return row.layer.param_tensors(row.input)


def reaching(net: Network) -> set[str]:
    """The names of the tensors whose value leads to the loss (the model's output and what it is made from)."""
    rows = net.rows
    reach = {rows[-1].name}
    for row in reversed(rows):
        if row.name in reach:
            reach.update(row.inputs)
    return reach


class Trained:
    """Which parameter tensors get a gradient in backward and a state in the optimizer.

    Rows whose output leads to the loss: the others' parameters get no gradient, so the optimizer keeps no
    state for them and makes no temporaries; their nodes never run (and keep nothing that outlives their output)."""

    def __init__(self, reach: set[str]):
        self.reach = reach

    def tensors(self, row: Row) -> tuple[Dim, ...]:
        """The element counts of the row's trained parameter tensors."""
        return row.layer.param_tensors(row.input) if row.name in self.reach else ()


def tied_gradient(tape: Tape, row: Row, tied: set, size: int, tensors: tuple[Dim, ...]) -> None:
    """A row's parameter gradients (`tensors`' element counts). A layer that shares an earlier layer's weight (tie)
    makes that weight's gradient first (backward runs in reverse; AccumulateGrad keeps it as .grad); when the
    owner's backward runs, its own gradient of the weight is added into .grad in place and freed."""
    owner = row.layer.tie
    if owner is not None and owner not in tied:
        tied.add(owner)
        tape.new(tape.size(num.mul(row.layer.weight_shape(row.input)) * size, 0), "gradients", mark=False)
    for number, n in enumerate(tensors):
        if number == 0 and row.name in tied:
            tape.transient(tape.size(n * size, 0), "temporaries")
        else:
            tape.new(tape.size(n * size, 0), "gradients", mark=False)
