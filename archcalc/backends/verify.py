"""Prove a report's numbers against the network torch builds from the same spec, layer by layer.

Shapes and parameters come from a build on the meta device: no memory, no
compute, instant for AlexNet's 62M parameters. FLOPs and the bytes saved for
backward need a real forward pass: that one runs on the CPU, in training mode,
at the report's batch size (2 if it has none) and dtype.

Each row of the report runs on its own, its inputs the outputs of the rows its
`from` names (the previous row's, in a straight stack), detached (requiring grad
exactly when they would in the whole network), so that FlopCounterMode's total
belongs to that row alone: its per-module breakdown credits a module that
returns its input (dropout with p = 0) with its neighbour's backward FLOPs.
Detaching keeps the storage, so a tensor that two rows save (a ReLU's output
and the next conv's input; a block's input read by its first conv and its
shortcut) is still counted once, for the row that saved it first. The backward
runs row by row from the last: a tensor read by several rows gets the sum of
their gradients, as autograd accumulates it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from ..core import num
from ..core.dtypes import Device
from ..core.errors import SpecError
from ..report import Report
from .build import INPUT, concrete, dtype_of, fits, network, parts, require, sample

DEFAULT_BATCH = 2  # not 1: a per-sample count that forgot the batch shows, and batchnorm needs 2 samples
QUANTITIES = ("output", "weights", "biases", "flops", "training_flops", "saved_bytes")


@dataclass(frozen=True)
class Check:
    """One number of one layer: archcalc's and torch's."""

    layer: str
    quantity: str  # one of QUANTITIES
    expected: object  # archcalc's: a shape (one sample) or a count for the whole batch
    measured: object  # torch's
    counted: object = None  # where torch is known to count otherwise (note): what it counts; None: not comparable
    note: str = ""  # why torch's count differs from archcalc's convention here

    @property
    def ok(self) -> bool:
        if self.expected == self.measured:
            return True
        return bool(self.note) and self.measured is not None and self.counted in (None, self.measured)


@dataclass(frozen=True)
class Measured:
    """What torch says about one row, for a batch of `batch` (None: not measured)."""

    output: tuple[int, ...] | str | None = None  # one sample's shape, or what torch said when it refused the layer
    weights: int | None = None
    biases: int | None = None
    flops: int | None = None  # forward
    backward_flops: int | None = None
    saved_bytes: int | None = None  # storages this row's forward saved first, parameters and buffers excluded


def verify(report: Report) -> list[Check]:
    """Every number of every row of `report` beside torch's, in row order.

    The saved bytes are the memory model's for the CPU, where torch runs here
    (a dropout mask takes the dtype's size there, one byte on CUDA). A layer
    that torch refuses fails its output check with torch's message; the layers
    after it cannot be measured and fail too.
    """
    report = concrete(report)
    if report.device != Device.cpu:
        report = dataclasses.replace(report, device=Device.cpu)
    batch = batch_of(report)
    fits(report, "verify", batch=batch, factor=2)  # each row's input, output and saved tensors stay alive
    structure = measure_structure(report, batch)
    refused = any(isinstance(m.output, str) for m in structure)
    compute = [Measured()] * len(report.rows) if refused else measure_compute(report, batch)
    checks = []
    for part, shape, run, saved in zip(parts(report), structure, compute, report.memory.per_row):
        row = part.row
        training = None if run.flops is None else run.flops + run.backward_flops
        quirks = row.layer.torch_counts(row.input, row.requires_grad)

        def known(quantity: str, quirks=quirks) -> dict:
            if quantity not in quirks:
                return {}
            counted, note = quirks[quantity]
            return {"counted": None if counted is None else num.normal(counted * batch), "note": note}

        checks += [
            Check(row.name, "output", tuple(row.output), shape.output),
            Check(row.name, "weights", row.weights, shape.weights),
            Check(row.name, "biases", row.biases, shape.biases),
            Check(row.name, "flops", num.normal(row.flops * batch), run.flops, **known("flops")),
            # each row runs on its own here: a checkpointed region's recomputation is not in it (tests check it on a whole step)
            Check(row.name, "training_flops", num.normal((row.training_flops - row.recompute_flops) * batch), training,
                  **known("training_flops")),
            Check(row.name, "saved_bytes", saved.at(batch), run.saved_bytes, **known("saved_bytes")),
        ]
    return checks


def batch_of(report: Report) -> int:
    if report.batch is None:
        return DEFAULT_BATCH
    if not isinstance(report.batch, int):
        raise SpecError(f"verify needs a whole number for the batch size, got {report.batch}", where="--batch")
    return report.batch


def measure_structure(report: Report, batch: int) -> list[Measured]:
    """Output shapes and parameters of every row: on the meta device (no memory, no compute), else on the CPU."""
    try:
        return _structure(report, batch, "meta")
    except NotImplementedError:  # an operator without a meta kernel
        return _structure(report, batch, "cpu")


def _structure(report: Report, batch: int, device: str) -> list[Measured]:
    torch = require()
    with torch.device(device):
        net = network(report).to(dtype_of(report.dtype))
        values = {INPUT: sample(report, batch, dtype_of(report.dtype), random=False)}
    out = []
    counted: set[int] = set()  # a tied weight counts for the first layer that has it
    for part in parts(report):
        children = [net.get_submodule(name) for name in part.names]
        try:
            y = children[0](*(values[name] for name in part.row.inputs))
            for child in children[1:]:
                y = child(y)
        except NotImplementedError:  # a RuntimeError too, but no refusal: measure_structure retries on the CPU
            raise
        except (RuntimeError, ValueError) as error:
            out.append(Measured(output=f"refused: {str(error).splitlines()[0]}"))
            return out + [Measured()] * (len(report.rows) - len(out))
        values[part.row.name] = y
        weights = biases = 0
        for child in children:
            for name, p in child.named_parameters():
                if id(p) in counted:
                    continue
                counted.add(id(p))
                last = name.rsplit(".", 1)[-1]  # bias, an LSTM's bias_ih_l0, bias_hh_l0_reverse, MultiheadAttention's in_proj_bias
                if last.startswith("bias") or last.endswith("_bias"):
                    biases += p.numel()
                else:
                    weights += p.numel()
        # a parameter broadcast as it is (a layer scale, positions added) has no batch axis: [1, *shape] in torch
        out.append(Measured(output=_sample(y, 1 if part.row.layer.batchless() else batch), weights=weights, biases=biases))
    return out


def measure_compute(report: Report, batch: int) -> list[Measured]:
    """Forward and backward FLOPs and saved-for-backward bytes of every row, from a training step on the CPU."""
    torch = require()
    from torch.autograd.graph import saved_tensors_hooks
    from torch.utils.flop_counter import FlopCounterMode

    # oneDNN off: its LSTM is one fused op that FlopCounterMode counts as 0 FLOPs, with an opaque workspace;
    # archcalc's LSTM figures are torch's native implementation's (see archcalc/layers/recurrent.py)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():  # the caller's random state stays as it was
        warnings.simplefilter("ignore")  # oneDNN's flags warn about TF32 on Intel GPUs
        torch.manual_seed(0)
        with torch.backends.mkldnn.flags(enabled=False):
            return _compute(torch, report, batch, saved_tensors_hooks, FlopCounterMode)


def _compute(torch, report: Report, batch: int, saved_tensors_hooks, FlopCounterMode) -> list[Measured]:
    dtype = dtype_of(report.dtype)
    net = network(report).to(dtype).train()
    own = {t.untyped_storage().data_ptr() for t in (*net.parameters(), *net.buffers())}
    first: dict[int, tuple[int, int]] = {}  # storage -> (row, bytes), for the row that saved it first
    kept = []  # the saved tensors, alive until the end: a freed storage's address could be reused
    current = 0

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in own and storage.nbytes() and key not in first:
            first[key] = (current, storage.nbytes())
        kept.append(tensor)
        return tensor

    values = {INPUT: sample(report, batch, dtype)}  # outputs, detached
    steps = []  # (names read, their detached copies, row output or None without gradient) per row, for the backward
    flops = []
    with saved_tensors_hooks(pack, lambda tensor: tensor):
        for current, part in enumerate(parts(report)):  # noqa: B007 (pack reads `current`)
            children = [net.get_submodule(name) for name in part.names]
            names = part.row.inputs
            xs = [_detached(values[name], getattr(values[name], "requires_grad", False)) for name in names]
            grad = not part.row.layer.detached and (any(getattr(x, "requires_grad", False) for x in xs)
                                                    or any(p.requires_grad for c in children for p in c.parameters()))
            with FlopCounterMode(display=False) as counter:
                y = children[0](*xs)
                for child in children[1:]:
                    y = child(y)
            flops.append(counter.get_total_flops())
            steps.append((names, xs, y if grad else None))
            values[part.row.name] = _detached(y, grad)
    backward = _backward(steps, [p.row.name for p in parts(report)], FlopCounterMode)
    saved = [0] * len(steps)
    for row, nbytes in first.values():
        saved[row] += nbytes
    return [Measured(flops=f, backward_flops=b, saved_bytes=s) for f, b, s in zip(flops, backward, saved)]


def _backward(steps, names: list[str], FlopCounterMode) -> list[int]:
    """Backward FLOPs per row, the rows' backward passes run one by one from the last (loss = sum of the output).

    A row's output gradient is the sum of what the rows that read it passed back (autograd's accumulation,
    which FlopCounterMode does not count)."""
    torch = require()
    out = [0] * len(steps)
    grads: dict[str, object] = {}
    for i in reversed(range(len(steps))):
        reads, xs, y = steps[i]
        if y is None:  # nothing before or in this row has parameters: no gradient flows here
            continue
        grad = torch.ones_like(y) if i == len(steps) - 1 else grads.pop(names[i], None)
        if grad is None:  # nothing after reads it (a dead end): no gradient reaches it
            continue
        with FlopCounterMode(display=False) as counter:
            torch.autograd.backward(y, grad)
        out[i] = counter.get_total_flops()
        for name, x in zip(reads, xs):
            if getattr(x, "grad", None) is not None:
                grads[name] = x.grad if name not in grads else grads[name] + x.grad
    return out

def _detached(value, grad: bool):
    """A row's output for the next rows: a tensor detached (requiring grad where the row's does), or a tuple of them
    (the rotary tables, cos and sin), detached."""
    if isinstance(value, tuple):
        return tuple(v.detach() for v in value)
    return value.detach().requires_grad_(grad)


def _sample(x, batch: int) -> tuple[int, ...]:
    """One sample's shape of a batch; a lost or changed batch axis shows as a mismatch. A tuple of tensors of one
    row for the batch (the rotary tables) is their count, then one's shape."""
    if isinstance(x, tuple):
        return (len(x), *x[0].shape[1:]) if all(t.shape[0] == 1 for t in x) else ("batch", len(x))
    shape = tuple(x.shape)
    return shape[1:] if shape and shape[0] == batch else ("batch", *shape)
