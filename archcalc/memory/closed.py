"""Bytes for a batch of B: parameters, gradients, optimizer state, and what autograd keeps for backward.

Every byte count is `fixed + per_sample·B` (`PerBatch`), exact, and a formula in B until B is
given. The tensors a layer keeps come from its class (`Layer.keeps`); this module only adds
them up the way autograd stores them: a tensor kept by two layers (a ReLU's output that the
next conv keeps too, or a flatten, which is a view) is one storage, counted once, and it is
credited to the first layer that keeps it. Measured against torch 2.13 on CPU with
`saved_tensors_hooks` (tests/memory/test_memory_oracle.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ..analysis import checkpoint
from ..core import autocast, num
from ..core.dtypes import Device, DType, Optimizer, precision_name
from ..core.errors import SpecError
from ..core.num import Dim, Value
from ..layers import layout
from ..layers.base import Kept, Storage, Tensor, storage_bytes
from . import timeline

if TYPE_CHECKING:
    from ..analysis.network import Network


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


class Timelines:
    """The step's timeline (archcalc/memory/timeline.py) at a batch, each batch simulated once."""

    def __init__(self, report: Network):
        self.report = report
        self.cache: dict = {}

    def __call__(self, batch: Value | None) -> timeline.Timeline:
        key = batch if batch is not None and num.is_concrete(batch) else None
        if key not in self.cache:
            self.cache[key] = timeline.simulate(self.report, key)
        return self.cache[key]


@dataclass(frozen=True, eq=False)
class StepBytes:
    """A peak of the step's timeline: the largest of affine functions of B, fixed_i + per_sample_i·B.

    At a concrete batch it is the timeline simulated at that batch (on CUDA each block rounded up to
    512 bytes, and the blocks the caching allocator hands out replayed: archcalc/memory/allocator.py); with B a
    symbol, the formula max(...)."""

    timelines: Timelines
    phase: str  # "step" (the highest of the three), "forward", "backward", "optimizer" or "inference"

    def _peak(self, line: timeline.Timeline):
        return line.inference if self.phase == "inference" else line.phases.get(self.phase)

    def at(self, batch: Value | None) -> Value:
        if batch is not None and num.is_concrete(batch):
            line = self.timelines(batch)
            return line.peak(batch) if self.phase == "step" else self._peak(line).at(batch)
        line = self.timelines(None)
        b = num.symbol("B") if batch is None else batch
        return num.maximum(*(num.normal(f + p * b) for f, p in self.pairs_of(line)))

    def pairs_of(self, line: timeline.Timeline) -> list:
        return line.pairs if self.phase == "step" else self._peak(line).pairs

    @property
    def pieces(self) -> tuple[PerBatch, ...]:
        """The affine functions whose largest is this peak (with B a symbol: no allocator rounding)."""
        return tuple(dict.fromkeys(PerBatch(f, p) for f, p in self.pairs_of(self.timelines(None))))

    @property
    def fixed(self) -> Dim:
        return num.maximum(*(p.fixed for p in self.pieces))

    @property
    def per_sample(self) -> Dim:
        return num.maximum(*(p.per_sample for p in self.pieces))

    def alive(self, batch: Value) -> dict[str, Value]:
        """What is alive at this peak for a concrete batch, by kind."""
        line = self.timelines(batch)
        phase = (line.peak_phase(batch) or "backward") if self.phase == "step" else self.phase
        return (line.inference if phase == "inference" else line.phases[phase]).alive(batch)

    def __str__(self) -> str:
        return str(self.at(None))


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
    timelines: Timelines
    autocast: str | None = None  # mixed precision: the step under torch.autocast in this dtype

    @property
    def summed(self) -> PerBatch:
        """The parts added up as if alive together (the model before the timeline; never below the peak's parts)."""
        return self.params + self.buffers + self.gradients + self.optimizer_state + self.saved + self.transient

    @property
    def training(self) -> StepBytes:
        """The training step's peak, what `torch.cuda.max_memory_allocated()` reads."""
        return StepBytes(self.timelines, "step")

    def phase(self, name: str) -> StepBytes:
        return StepBytes(self.timelines, name)

    @property
    def inference_peak(self) -> StepBytes:
        return StepBytes(self.timelines, "inference")

    def peak_phase(self) -> str | None:
        """The phase that sets the peak at this batch (None while B is a symbol)."""
        if self.batch is None or not num.is_concrete(self.batch):
            return None
        return self.timelines(self.batch).peak_phase(self.batch)

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
            "peak_bytes": self.training,
            "summed_training_bytes": self.summed,
            "inference_bytes": self.inference_peak,
            "summed_inference_bytes": self.inference,
            **{f"{phase}_peak_bytes": self.phase(phase) for phase in timeline.PHASES},
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
        if self.autocast is not None:  # mixed precision (float32 runs keep their JSON as it was)
            out |= {"precision": precision_name(str(self.dtype), str(self.autocast)), "autocast": str(self.autocast)}
        out |= {key: num.to_json(value.at(self.batch)) for key, value in self.quantities().items()
                if not key.endswith("_peak_bytes")}
        out["peak_phase"] = self.peak_phase()
        out["phases"] = {phase: num.to_json(self.phase(phase).at(self.batch)) for phase in timeline.PHASES}
        if self.device == Device.cuda:  # inside the peak: cuBLAS's workspaces (and cuDNN's, at the peak's phase)
            workspace = timeline.CUDA_WORKSPACE
            if self.batch is not None and num.is_concrete(self.batch) and num.is_concrete(self.training.at(self.batch)):
                workspace = self.training.alive(self.batch).get("workspace", workspace)
            out["cuda_workspace_bytes"] = num.to_json(workspace)
            out["cuda_context_bytes"] = timeline.CUDA_CONTEXT  # outside it: the driver's share of the card
        out["course"] = {
            "M": num.to_json(self.params.fixed),
            "m": num.to_json(self.course_m),
            "L": self.course_layers,
            "forward_bytes": num.to_json(self.course_forward.at(self.batch)),
            "backward_bytes_as_printed": num.to_json(self.course_forward.at(self.batch)),
            "backward_bytes": num.to_json(self.course_backward.at(self.batch)),
        }
        return out


def measure(report: Network) -> Memory:
    """The memory of `report`'s network for its batch, dtype, optimizer and device."""
    size = report.dtype.bytes
    # opmath: computed in float32 at least (RMSNorm upcasts bfloat16 and float16; a float32 input is kept as is)
    bytes_of = storage_bytes(size, report.device != Device.cpu)
    params = num.normal(report.totals["params"] * size)

    ids = any(row.layer.token_ids is not None for row in report.rows)  # the input is int64 token ids
    seen: set[tuple] = set()
    regions = checkpoint.regions(report)
    starts = {r.first: r for r in regions}
    inside = {i for r in regions for i in range(r.first, r.stop)}
    kept_anyway: dict[tuple, PerBatch] = {}  # with checkpointing: the storages kept outside regions, and regions' inputs
    per_row, kept_by_row = [], []
    storage: dict[str, tuple] = {"input": ("output", 0)}  # a tensor's name -> its storage (a view shares its input's)
    strides: dict[str, object] = {}  # a tensor's name -> its layout when not contiguous (archcalc/layers/layout.py)
    base = {("output", 0): num.mul(report.input)}  # a storage -> its elements (a view may see fewer: select)
    steps = autocast.plan(report) if report.autocast is not None else [None] * len(report.rows)
    for row, step in zip(report.rows, steps):
        sources = [storage[name] for name in row.inputs] or [("output", row.index - 1)]
        layouts = [strides.get(name) for name in row.inputs] or [None]
        view, after = row.layer.is_view(), None
        if view:
            after = row.layer.view(row.input, row.output, layouts[0])
            if after == layout.COPY:  # a reshape of a permuted tensor: a copy of its own
                view, after = False, None
        output = sources[0] if view else ("output", row.index)
        storage[row.name] = output
        if not view:  # a parameter's own storage is no activation: a mul keeping a layer scale keeps 0 bytes
            base[output] = 0 if row.layer.is_parameter() else num.mul(row.output)
        if after is not None:
            strides[row.name] = after
        elif layouts[0] is not None and row.layer.keeps_layout():  # relu of a permuted tensor is permuted too
            strides[row.name] = layouts[0]
        if row.layer.copies_input(row.shapes[0] if row.layer.merges else row.input, layouts[0]):  # it keeps a contiguous copy
            sources = [("copy", row.index), *sources[1:]]
        total, kept = ZERO, []
        row_bytes = bytes_of if step is None else _autocast_bytes(step[0], report)
        for number, item in enumerate(row.layer.keeps(row.input, row.output, row.grad)):
            key = {Tensor.input: sources[item.arg], Tensor.output: output, Tensor.pre: ("pre", row.index)}.get(item.tensor, ("own", row.index, number))
            if item.dtype == Storage.opmath and size < 4:  # an upcast copy, not the tensor itself
                key = ("own", row.index, number)
            # autocast: an input it copied first is kept as that copy; one it took as it is, in its own dtype
            each = row_bytes[item.dtype]
            if step is not None and item.tensor == Tensor.input:
                if step[2][item.arg]:
                    key = ("copy", row.index, item.arg)
                elif item.dtype == Storage.model:
                    each = DType(step[3][item.arg]).bytes
            # autograd keeps a view's whole storage: a selected token keeps all the tokens it was taken from
            elements = base.get(key, item.elements) if item.tensor in (Tensor.input, Tensor.output) else item.elements
            nbytes = num.normal(elements * each)
            kept.append(KeptBytes(item, nbytes, key not in seen))
            if inside and row.index - 1 not in inside:
                kept_anyway.setdefault(key, PerBatch(per_sample=nbytes) if item.per_sample else PerBatch(fixed=nbytes))
            if key not in seen:
                seen.add(key)
                total += PerBatch(per_sample=nbytes) if item.per_sample else PerBatch(fixed=nbytes)
        if step is not None and step[1] == autocast.LOWER and row.backward:  # the weight copies its node keeps
            tensors = timeline._cast_weights(row)  # a tied weight (GPT-2's lm_head) first: its copy of the owner's
            for i in row.layer.autocast_kept_params(row.requires_grad):
                nbytes = num.normal(tensors[i] * DType(str(report.autocast)).bytes)
                kept.append(KeptBytes(Kept(Tensor.own, tensors[i], per_sample=False, what="autocast's weight copy"), nbytes, True))
                total += PerBatch(fixed=nbytes)
        per_row.append(total)
        if row.index - 1 in starts and starts[row.index - 1].first_pack is not None:  # the checkpoint saves its inputs
            for name in timeline.region_inputs(report, starts[row.index - 1]):
                kept_anyway.setdefault(storage[name], PerBatch(per_sample=num.normal(base[storage[name]] * size)))
        kept_by_row.append(tuple(kept))

    saved = PerBatch.sum(per_row)
    if regions:  # kept through the step: all but the regions' tensors; in backward, one region's recomputed at a time
        rerun = [PerBatch.sum(per_row[r.first:r.stop]) for r in regions]
        saved = PerBatch.sum(kept_anyway.values()) + PerBatch(num.maximum(*(p.fixed for p in rerun)),
                                                              num.maximum(*(p.per_sample for p in rerun)))
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
        timelines=Timelines(report),
        autocast=report.autocast,
    )


def _autocast_bytes(compute: str, report: Network) -> dict:
    """The bytes of each Storage kind for a row that computes in `compute` under autocast."""
    return storage_bytes(DType(compute).bytes, report.device != Device.cpu, report.dtype.bytes)


def _live(report: Network, storage: dict[str, tuple]) -> list[Dim]:
    """Per layer, the elements alive while it runs without autograd: its output and every stored
    tensor made before that a layer at or after it still reads (a skip connection's, for one)."""
    elements = {("output", 0): num.mul(report.input)}
    last: dict[tuple, int] = {}
    for row in report.rows:
        elements.setdefault(storage[row.name], num.mul(row.output))
        for name in row.inputs or (report.rows[row.index - 2].name if row.index > 1 else "input",):
            last[storage[name]] = row.index
    for row in report.output_rows:
        last[storage[row.name]] = len(report.rows) + 1  # the network's outputs outlive the last layer
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


# Under a memory cap the caching allocator needs room beyond the bytes allocated at the peak (blocks
# cached for one size cannot serve another): on CUDA `--budget` counts each per-sample byte 4/3 times.
# Fitted on ../shared/measurements/h200-largest-batch.json: AlexNet with Adam at 4 GiB trains 466 and
# with SGD at 8 GiB 1,156; any factor in [1.296, 1.364] answers at most those and within 5% of them.
CUDA_HEADROOM = Fraction(4, 3)


@dataclass(frozen=True)
class Fit:
    """The largest batch whose training step fits a memory budget."""

    budget: int
    batch: Value | None  # None: not even a batch of 1 fits
    report: Network  # at that batch (at 1 when none fits)
    headroom: Fraction = Fraction(1)  # per-sample bytes counted this many times (CUDA_HEADROOM on CUDA)
    context: int = 0  # bytes of the card taken by the CUDA context (--card), already out of the budget

    @property
    def over(self) -> Value:
        """By how many bytes a batch of 1 misses the budget (0 when it fits)."""
        if self.batch is not None:
            return 0
        return num.normal(needed(measure(self.report), 1, self.headroom) - self.budget)


def needed(memory: Memory, batch: Value, headroom: Fraction = Fraction(1)) -> Value:
    """The bytes a budget must hold for `batch`: the peak, its per-sample part counted `headroom` times."""
    if headroom == 1:
        return memory.training.at(batch)
    return num.maximum(*(num.normal(p.fixed + headroom * p.per_sample * batch) for p in memory.training.pieces))


def largest_batch(report: Network, budget: int, card: bool = False) -> Fit:
    """The largest whole B whose step's peak fits `budget`: max_i(fixed_i + per_sample_i·B) <= budget,
    so B = min_i ⌊(budget - fixed_i) / per_sample_i⌋, a formula if sizes are symbolic. On CUDA the
    per-sample bytes count CUDA_HEADROOM times; with `card`, the budget is the card's memory and the
    CUDA context is taken out of it first."""
    cuda = report.device == Device.cuda
    headroom = CUDA_HEADROOM if cuda else Fraction(1)
    context = timeline.CUDA_CONTEXT if cuda and card else 0
    usable = budget - context
    memory = measure(report)
    pieces = memory.training.pieces
    if all(num.is_concrete(p.per_sample) and p.per_sample == 0 for p in pieces):
        raise SpecError("the training memory does not grow with the batch: every batch fits or none does", where="--budget")
    bounds = [num.floordiv(usable - p.fixed, num.normal(headroom * p.per_sample)) for p in pieces
              if not (num.is_concrete(p.per_sample) and p.per_sample == 0)]
    fixed_only = [p.fixed for p in pieces if num.is_concrete(p.per_sample) and p.per_sample == 0]
    batch = num.minimum(*bounds)
    if num.is_concrete(batch):
        # at a concrete batch the simulation rounds every block up (CUDA): step down until it fits
        while batch >= 1 and needed(memory, batch, headroom) > usable:
            batch -= 1
    if num.is_concrete(batch) and (batch < 1 or any(num.is_concrete(f) and f > usable for f in fixed_only)):
        return Fit(budget, None, dataclasses.replace(report, batch=1), headroom, context)
    return Fit(budget, batch, dataclasses.replace(report, batch=batch), headroom, context)


@dataclass(frozen=True)
class Solved:
    """The largest value of a size (--solve H: the image side; T: the sequence length) that fits at a batch."""

    name: str
    value: int | None  # None: not even 1 fits
    budget: int
    report: Network | None  # at that value


def largest_size(analyze_at, name: str, budget: int, batch: int, headroom: Fraction = Fraction(1), limit: int = 2**20) -> Solved:
    """The largest whole value v of `name` whose step at `batch` fits `budget`, by doubling then bisection
    (the peak grows with every size); `analyze_at(v)` is the report at v, or raises SpecError where v
    is too small for the network (such values do not fit)."""

    def fits(value: int):
        try:
            report = analyze_at(value)
        except SpecError:
            return None
        return report if needed(measure(report), batch, headroom) <= budget else None

    low, high = 0, 1
    best = None
    while high <= limit:  # the smallest size the network accepts may be above 1: look upward first
        report = fits(high)
        if report is not None:
            low, best = high, report
            break
        try:
            analyze_at(high)
            return Solved(name, None, budget, None)  # a valid size that does not fit: nothing smaller will
        except SpecError:
            high *= 2
    if best is None:
        return Solved(name, None, budget, None)
    high = low * 2
    while high <= limit and (report := fits(high)) is not None:
        low, best, high = high, report, high * 2
    high = min(high, limit + 1)
    while high - low > 1:  # low fits, high does not
        middle = (low + high) // 2
        report = fits(middle)
        if report is not None:
            low, best = middle, report
        else:
            high = middle
    return Solved(name, low, budget, best)


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
