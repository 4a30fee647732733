"""The parameters along the step: the tensors each row holds, which of them train, and their gradients.

`Trained` is the policy "which parameters get gradients and optimizer state": every parameter of a row whose output
leads to the loss, but a frozen layer's own (fine-tuning, archcalc/layers/tuning.py: a frozen layer trains none, one
with LoRA its adapters only). A parameter's storage is `param_bytes`': the model's dtype, but a quantized frozen
weight's storages (bitsandbytes) and float32 adapters beside a 16-bit base.
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


def param_bytes(row: Row, size: int) -> tuple[Dim, ...]:
    """The bytes of each storage a row's parameters take (`size`: bytes of the model's dtype)."""
    if row.layer.tuning is None:
        return tuple(num.normal(n * size) for n in param_tensors(row))
    return row.layer.stored_bytes(row.input, size)


def reaching(net: Network) -> set[str]:
    """The names of the tensors whose value leads to the loss (the model's outputs and what they are made from)."""
    rows = net.rows
    reach = {row.name for row in net.output_rows}
    for row in reversed(rows):
        if row.name in reach:
            reach.update(row.inputs)
    return reach


class Trained:
    """Which parameter tensors get a gradient in backward and a state in the optimizer.

    Rows whose output leads to the loss: the others' parameters get no gradient, so the optimizer keeps no
    state for them and makes no temporaries; their nodes never run (and keep nothing that outlives their output).
    A frozen layer's own parameters get none either; LoRA's adapters do (Layer.trained_tensors)."""

    def __init__(self, reach: set[str]):
        self.reach = reach

    def tensors(self, row: Row) -> tuple[Dim, ...]:
        """The element counts of the row's trained parameter tensors."""
        if row.name not in self.reach:
            return ()
        return row.layer.param_tensors(row.input) if row.layer.tuning is None else row.layer.trained_tensors(row.input)

    def sizes(self, row: Row, size: int) -> tuple[Dim, ...]:
        """The bytes of each trained tensor (and of its gradient and each optimizer state)."""
        return trained_bytes(row, size) if row.name in self.reach else ()


def trained_bytes(row: Row, size: int) -> tuple[Dim, ...]:
    """The bytes of each of a row's trained tensors: `size` per value, LoRA's float32 adapters 4 beside a 16-bit base."""
    if row.layer.tuning is None:
        return tuple(num.normal(n * size) for n in param_tensors(row))
    adapter = row.layer.adapter
    width = 4 if adapter is not None and adapter.dtype == "float32" else size
    return tuple(num.normal(n * width) for n in row.layer.trained_tensors(row.input))


def tied_gradient(tape: Tape, row: Row, tied: dict, size: int, tensors: tuple[Dim, ...],
                  made: list | None = None) -> tuple | None:
    """A row's parameter gradients (`tensors`' element counts). A layer that shares an earlier layer's weight (tie)
    makes that weight's gradient first (backward runs in reverse; AccumulateGrad keeps it as .grad: `tied`, the
    owner's name -> its storage); when the owner's backward runs, its own gradient of the weight is returned, (its
    name, its storage), for tied_sum once the node has run. `made`: where the row's own .grad storages are listed."""
    owner = row.layer.tie
    pending = None
    if owner is not None and owner not in tied and not row.layer.frozen:  # a frozen owner's weight gets none
        tied[owner] = tape.new(tape.size(num.mul(row.layer.weight_shape(row.input)) * size, 0), "gradients", mark=False)
    for number, n in enumerate(tensors):
        if number == 0 and row.name in tied:
            pending = (row.name, tape.new(tape.size(n * size, 0), "temporaries"))
        else:
            grad = tape.new(tape.size(n * size, 0), "gradients", mark=False)
            if made is not None:
                made.append(grad)
    return pending


def tied_sum(tape: Tape, tied: dict, pending: tuple | None, inplace: bool) -> None:
    """AccumulateGrad of a tied weight, after the owner's node: its gradient added into .grad in place and freed;
    under a dispatch mode (the CPU oracle) the sum is a new .grad, the old one freed, then the owner's."""
    if pending is None:
        return
    name, own = pending
    if not inplace and tied.get(name) is not None:
        total = tape.new(own.size, "gradients")
        tape.release(tied[name])
        tied[name] = total
    tape.release(own)
