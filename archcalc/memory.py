"""Bytes for a batch of B: parameters, gradients, optimizer state, and what autograd keeps for backward.

Every byte count is `fixed + per_sample·B` (`PerBatch`), exact, and a formula in B until B is
given. The tensors a layer keeps come from its class (`Layer.keeps`); this module only adds
them up the way autograd stores them: a tensor kept by two layers (a ReLU's output that the
next conv keeps too, or a flatten, which is a view) is one storage, counted once, and it is
credited to the first layer that keeps it. Measured against torch 2.13 on CPU with
`saved_tensors_hooks` (tests/test_memory_oracle.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING

from . import num
from .errors import SpecError
from .layers import layout
from .layers.base import Kept, Storage, Tensor
from .num import Dim, Value

if TYPE_CHECKING:
    from .report import Report


class Optimizer(StrEnum):
    """Training optimizers by the state they keep: copies of the parameters."""

    none = "none"
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"

    @property
    def states(self) -> int:
        return {"none": 0, "sgd": 0, "momentum": 1, "adam": 2}[self.value]


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


@dataclass(frozen=True)
class PerBatch:
    """fixed + per_sample·B: a byte count for a batch of B."""

    fixed: Dim = 0
    per_sample: Dim = 0

    def __post_init__(self):  # made normal here, so that no caller has to
        object.__setattr__(self, "fixed", num.normal(self.fixed))
        object.__setattr__(self, "per_sample", num.normal(self.per_sample))

    def __add__(self, other: PerBatch) -> PerBatch:
        return PerBatch(self.fixed + other.fixed, self.per_sample + other.per_sample)

    @classmethod
    def sum(cls, parts) -> PerBatch:
        """Byte counts added up, each half in one go through num.add (`+` one at a time is quadratic for formulas)."""
        parts = list(parts)
        return cls(num.add(p.fixed for p in parts), num.add(p.per_sample for p in parts))

    def at(self, batch: Value | None) -> Value | PerBatch:
        """The bytes at `batch`; with no batch, this formula in B (a sympy expression if it has other symbols)."""
        if batch is not None:
            return num.normal(self.fixed + self.per_sample * batch)
        if self.per_sample == 0:
            return self.fixed
        if num.is_concrete(self.fixed) and num.is_concrete(self.per_sample):
            return self
        return num.normal(self.fixed + self.per_sample * num.symbol("B"))

    def __str__(self) -> str:
        """As sympy's str() writes fixed + per_sample*B, without importing sympy."""
        if not (num.is_concrete(self.fixed) and num.is_concrete(self.per_sample)):
            return str(self.at(None))
        if self.per_sample == 0:
            return str(self.fixed)
        slope = "B" if self.per_sample == 1 else f"{self.per_sample}*B"
        return f"{slope} + {self.fixed}" if self.fixed else slope


ZERO = PerBatch()


@dataclass(frozen=True)
class KeptBytes:
    """A tensor a layer keeps, its bytes, and whether they count here (False: a storage counted before)."""

    item: Kept
    nbytes: Dim
    counted: bool


@dataclass(frozen=True)
class Memory:
    """The memory of a training step (and of inference) for a batch of B, in bytes."""

    batch: Value | None  # None: B stays a symbol
    dtype: str
    optimizer: Optimizer
    device: Device
    per_row: tuple[PerBatch, ...]  # saved for backward, credited to the first layer that keeps it
    kept: tuple[tuple[KeptBytes, ...], ...]  # per row: each tensor it keeps, its bytes, whether counted here
    input: PerBatch
    params: PerBatch
    buffers: PerBatch
    gradients: PerBatch
    optimizer_state: PerBatch
    saved: PerBatch
    transient: PerBatch  # the largest gradient pair (of a layer's output and input) alive at once in backward
    inference: PerBatch  # parameters, buffers and the largest input + output of a layer, without autograd
    course_m: Dim  # the course's m: the largest layer output, bytes per sample
    course_layers: int  # the course's "nombre de couches"

    @property
    def training(self) -> PerBatch:
        return self.params + self.buffers + self.gradients + self.optimizer_state + self.saved + self.transient

    @property
    def course_forward(self) -> PerBatch:
        """The course's M + B·m·L (as printed, also for the backward pass: an erratum)."""
        return PerBatch(self.params.fixed, num.normal(self.course_m * self.course_layers))

    @property
    def course_backward(self) -> PerBatch:
        """The course's model done right: M + a gradient per parameter (M) + B·m·L kept + B·m·L their gradients."""
        return PerBatch(num.normal(2 * self.params.fixed), num.normal(2 * self.course_m * self.course_layers))

    def quantities(self) -> dict[str, PerBatch]:
        """The byte counts by their JSON key."""
        return {
            "input_bytes": self.input,
            "params_bytes": self.params,
            "buffers_bytes": self.buffers,
            "gradients_bytes": self.gradients,
            "optimizer_bytes": self.optimizer_state,
            "saved_for_backward_bytes": self.saved,
            "backward_transient_bytes": self.transient,
            "training_bytes": self.training,
            "inference_bytes": self.inference,
        }

    def course(self) -> dict[str, PerBatch]:
        """The notes' memory model (DESIGN.md section 6), by its claim key."""
        return {"course.forward_bytes": self.course_forward, "course.backward_bytes": self.course_backward}

    def quantity(self, key: str) -> PerBatch:
        """A byte count by its key, one of `quantities` or of `course` (the keys of memory claims)."""
        return (self.quantities() | self.course())[key]

    def value(self, key: str) -> Value:
        """That byte count at this batch; without one, a formula in B."""
        return self.quantity(key).at(num.symbol("B") if self.batch is None else self.batch)

    def to_dict(self) -> dict:
        out: dict = {
            "batch": num.to_json(self.batch) if self.batch is not None else "B",
            "dtype": str(self.dtype),
            "optimizer": str(self.optimizer),
            "device": str(self.device),
        }
        out |= {key: num.to_json(value.at(self.batch)) for key, value in self.quantities().items()}
        out["course"] = {
            "M": num.to_json(self.params.fixed),
            "m": num.to_json(self.course_m),
            "L": self.course_layers,
            "forward_bytes": num.to_json(self.course_forward.at(self.batch)),
            "backward_bytes_as_printed": num.to_json(self.course_forward.at(self.batch)),
            "backward_bytes": num.to_json(self.course_backward.at(self.batch)),
        }
        return out


def measure(report: Report) -> Memory:
    """The memory of `report`'s network for its batch, dtype, optimizer and device."""
    size = report.dtype.bytes
    # opmath: computed in float32 at least (RMSNorm upcasts bfloat16 and float16; a float32 input is kept as is)
    bytes_of = {Storage.model: size, Storage.int64: 8, Storage.float32: 4, Storage.mask: size if report.device == Device.cpu else 1,
                Storage.opmath: max(size, 4)}
    params = num.normal(report.totals["params"] * size)

    ids = any(row.layer.token_ids() is not None for row in report.rows)  # the input is int64 token ids
    seen: set[tuple] = set()
    per_row, kept_by_row = [], []
    storage: dict[str, tuple] = {"input": ("output", 0)}  # a tensor's name -> its storage (a view shares its input's)
    strides: dict[str, object] = {}  # a tensor's name -> its layout when not contiguous (archcalc/layers/layout.py)
    base = {("output", 0): num.mul(report.input)}  # a storage -> its elements (a view may see fewer: select)
    for row in report.rows:
        sources = [storage[name] for name in row.inputs] or [("output", row.index - 1)]
        layouts = [strides.get(name) for name in row.inputs] or [None]
        view, after = row.layer.is_view(), None
        if view:
            after = row.layer.view(row.input, row.output, layouts[0])
            if after == layout.COPY:  # a reshape of a permuted tensor: a copy of its own
                view, after = False, None
        output = sources[0] if view else ("output", row.index)
        storage[row.name] = output
        if not view:
            base[output] = num.mul(row.output)
        if after is not None:
            strides[row.name] = after
        elif layouts[0] is not None and row.layer.keeps_layout():  # relu of a permuted tensor is permuted too
            strides[row.name] = layouts[0]
        if layouts[0] is not None and row.layer.contiguous_input():  # it keeps a contiguous copy of its input
            sources = [("copy", row.index), *sources[1:]]
        total, kept = ZERO, []
        for number, item in enumerate(row.layer.keeps(row.input, row.output, row.grad)):
            key = {Tensor.input: sources[item.arg], Tensor.output: output, Tensor.pre: ("pre", row.index)}.get(item.tensor, ("own", row.index, number))
            if item.dtype == Storage.opmath and size < 4:  # an upcast copy, not the tensor itself
                key = ("own", row.index, number)
            # autograd keeps a view's whole storage: a selected token keeps all the tokens it was taken from
            elements = base.get(key, item.elements) if item.tensor in (Tensor.input, Tensor.output) else item.elements
            nbytes = num.normal(elements * bytes_of[item.dtype])
            kept.append(KeptBytes(item, nbytes, key not in seen))
            if key not in seen:
                seen.add(key)
                total += PerBatch(per_sample=nbytes) if item.per_sample else PerBatch(fixed=nbytes)
        per_row.append(total)
        kept_by_row.append(tuple(kept))

    saved = PerBatch.sum(per_row)
    gradient_pairs = [
        num.normal(num.mul(row.output) + num.add(num.mul(x) for x, grad in zip(row.shapes, row.grads or (row.requires_grad,)) if grad))
        for row in report.rows
        if row.backward and (row.requires_grad or row.params != 0)
    ]
    live = _live(report, storage)
    buffers = num.add(row.layer.buffer_bytes(row.input, size) for row in report.rows)
    return Memory(
        batch=report.batch,
        dtype=report.dtype,
        optimizer=report.optimizer,
        device=report.device,
        per_row=tuple(per_row),
        kept=tuple(kept_by_row),
        input=PerBatch(per_sample=num.normal(num.mul(report.input) * (8 if ids else size))),
        params=PerBatch(fixed=params),
        buffers=PerBatch(fixed=buffers),
        gradients=PerBatch(fixed=params),
        optimizer_state=PerBatch(fixed=num.normal(params * report.optimizer.states)),
        saved=saved,
        transient=PerBatch(per_sample=num.normal(num.maximum(*gradient_pairs) * size)) if gradient_pairs else ZERO,
        inference=PerBatch(fixed=num.normal(params + buffers), per_sample=num.normal(num.maximum(*live) * size)),
        course_m=num.normal(num.maximum(*(num.mul(row.output) for row in report.rows)) * size),
        course_layers=len(report.rows),
    )


def _live(report: Report, storage: dict[str, tuple]) -> list[Dim]:
    """Per layer, the elements alive while it runs without autograd: its output and every stored
    tensor made before that a layer at or after it still reads (a skip connection's, for one)."""
    elements = {("output", 0): num.mul(report.input)}
    last: dict[tuple, int] = {}
    for row in report.rows:
        elements.setdefault(storage[row.name], num.mul(row.output))
        for name in row.inputs or (report.rows[row.index - 2].name if row.index > 1 else "input",):
            last[storage[name]] = row.index
    last[storage[report.rows[-1].name]] = len(report.rows) + 1  # the network's output outlives the last layer
    alive: dict[tuple, None] = {}
    out = []
    for row in report.rows:
        for name in row.inputs or ("input",):
            alive[storage[name]] = None
        alive[storage[row.name]] = None
        out.append(num.add(elements[key] for key in alive))
        for key in [key for key in alive if last.get(key, 0) <= row.index]:
            del alive[key]
    return out


@dataclass(frozen=True)
class Fit:
    """The largest batch whose training step fits a memory budget."""

    budget: int
    batch: Value | None  # None: not even a batch of 1 fits
    report: Report  # at that batch (at 1 when none fits)

    @property
    def over(self) -> Value:
        """By how many bytes a batch of 1 misses the budget (0 when it fits)."""
        if self.batch is not None:
            return 0
        return num.normal(self.report.memory.training.at(1) - self.budget)


def largest_batch(report: Report, budget: int) -> Fit:
    """Solve fixed + per_sample·B <= budget for the largest whole B (a formula if sizes are symbolic)."""
    training = report.memory.training
    if num.is_concrete(training.per_sample) and training.per_sample == 0:
        raise SpecError("the training memory does not grow with the batch: every batch fits or none does", where="--budget")
    batch = num.floordiv(budget - training.fixed, training.per_sample)
    if num.is_concrete(batch) and batch < 1:
        return Fit(budget, None, dataclasses.replace(report, batch=1))
    return Fit(budget, batch, dataclasses.replace(report, batch=batch))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'80GiB' -> 85899345920; GB, MB... are decimal, GiB, MiB... binary; a bare number is bytes."""
    match = _SIZE.match(text)
    unit = match and match.group(2).upper()
    if unit and not unit.endswith("B"):
        unit += "B"
    if not match or unit not in _UNITS:
        raise SpecError(f"cannot read {text!r} as a size", "write it like 80GiB, 24GB, 512MiB or a number of bytes", where="--budget")
    return int(Fraction(match.group(1)) * _UNITS[unit])
