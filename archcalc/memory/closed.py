"""Bytes for a batch of B: parameters, gradients, optimizer state, and what autograd keeps for backward.

Every byte count is `fixed + per_sample·B` (perbatch.py), exact, and a formula in B until B is
given; the step's peaks come from the timeline (peaks.py). The tensors a layer keeps come from its class (`Layer.keeps`); this module only adds
them up the way autograd stores them: a tensor kept by two layers (a ReLU's output that the
next conv keeps too, or a flatten, which is a view) is one storage, counted once, and it is
credited to the first layer that keeps it. Measured against torch 2.13 on CPU with
`saved_tensors_hooks` (tests/memory/test_memory_oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..analysis import checkpoint
from ..core import autocast, num
from ..core.dtypes import Device, DType, Optimizer, precision_name
from ..core.num import Dim, Value
from ..layers.base import Kept, Storage, Tensor, storage_bytes
from . import timeline, views
from .peaks import StepBytes, Timelines
from .perbatch import ZERO, PerBatch
from .timeline.parameters import param_bytes, trained_bytes

if TYPE_CHECKING:
    from ..analysis.network import Network
    from .generation import Generation


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
    generation: Generation | None = None  # generation with a KV cache, where asked (generation.py)

    @property
    def summed(self) -> PerBatch:
        """The parts added up as if alive together (the model before the timeline; never below the peak's parts)."""
        return self.params + self.buffers + self.gradients + self.optimizer_state + self.saved + self.transient

    @property
    def training(self) -> StepBytes:
        """The training step's peak, what `torch.cuda.max_memory_allocated()` reads."""
        return StepBytes(self.timelines, "step")

    def phase(self, name: str) -> StepBytes:
        """The peak of one phase of the step: forward, backward or optimizer."""
        if name not in timeline.PHASES:
            raise ValueError(f"phase(name): name must be one of {', '.join(timeline.PHASES)}, got {name!r}"[:200])
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
        """The notes' memory model (docs/design.md section 6), by its claim key."""
        return {"course.forward_bytes": self.course_forward, "course.backward_bytes": self.course_backward}

    def quantity(self, key: str) -> PerBatch:
        """A byte count by its key, one of `quantities` or of `course` (the keys of memory claims)."""
        known = self.quantities() | self.course()
        if key not in known:
            raise KeyError(f"quantity(key): no byte count is named {key!r}; the keys are {', '.join(known)}"[:400])
        return known[key]

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
        out |= {key: value.to_json(self.batch) for key, value in self.quantities().items() if not key.endswith("_peak_bytes")}
        out["peak_phase"] = self.peak_phase()
        out["phases"] = {phase: self.phase(phase).to_json(self.batch) for phase in timeline.PHASES}
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
        if self.generation is not None:
            out["generation"] = self.generation.to_dict(self.batch)
        return out


def measure(report: Network) -> Memory:
    """The memory of `report`'s network for its batch, dtype, optimizer and device."""
    size = report.dtype.bytes
    params = num.normal(report.totals["params"] * size)
    trained = params
    if report.finetune:  # fine-tuning: parameters as stored (quantized, float32 adapters), gradients for what trains
        params = num.add(b for row in report.rows for b in param_bytes(row, size))
        trained = num.add(b for row in report.rows for b in trained_bytes(row, size))
    ids = any(row.layer.token_ids is not None for row in report.rows)  # the input is int64 token ids
    kept = _SavedWalk(report).walk()
    saved = kept.saved()
    transient = _transient(report, size)
    live = _live(report, kept.storage)
    buffers = num.add(row.layer.buffer_bytes(row.input, size) for row in report.rows)
    return Memory(
        batch=report.batch,
        dtype=report.dtype,
        optimizer=report.optimizer,
        device=report.device,
        per_row=tuple(kept.per_row),
        kept=tuple(kept.kept),
        input=PerBatch(per_sample=num.normal(num.mul(report.input) * (8 if ids else size))),
        params=PerBatch(fixed=params),
        buffers=PerBatch(fixed=buffers),
        gradients=PerBatch(fixed=trained),
        optimizer_state=PerBatch(fixed=num.normal(trained * report.optimizer.states)),
        saved=saved,
        transient=transient,
        inference=PerBatch(fixed=num.normal(params + buffers), per_sample=num.normal(num.maximum(*live) * size)),
        course_m=num.normal(num.maximum(*(num.mul(row.output) for row in report.rows)) * size),
        course_layers=len(report.rows),
        timelines=Timelines(report),
        autocast=report.autocast,
    )


class _SavedWalk:
    """`measure`'s walk over the rows: what each keeps for backward, a storage counted once (credited to the first
    row that keeps it), and with checkpointing what stays kept outside the regions (and the regions' inputs)."""

    def __init__(self, report: Network) -> None:
        self.report, self.size = report, report.dtype.bytes
        # opmath: computed in float32 at least (RMSNorm upcasts bfloat16 and float16; a float32 input is kept as is)
        self.bytes_of = storage_bytes(self.size, report.device != Device.cpu)
        self.seen: set[tuple] = set()
        self.regions = checkpoint.regions(report)
        self.starts = {r.first: r for r in self.regions}
        self.inside = {i for r in self.regions for i in range(r.first, r.stop)}
        self.kept_anyway: dict[tuple, PerBatch] = {}  # with checkpointing: the storages kept outside regions, and regions' inputs
        self.walked = views.walk(report)  # which storage each tensor lives in: views, layouts, contiguous copies
        self.storage, self.base = self.walked.storage, self.walked.elements  # a storage -> its elements (a view may see fewer: select)
        self.per_row: list[PerBatch] = []  # saved for backward, credited to the first row that keeps it
        self.kept: list[tuple[KeptBytes, ...]] = []  # per row: each tensor it keeps

    def walk(self) -> _SavedWalk:
        report = self.report
        steps = autocast.plan(report) if report.autocast is not None else [None] * len(report.rows)
        for row, step, place in zip(report.rows, steps, self.walked.places):
            total, kept = self._keeps(row, step, place)
            for copy in self._weight_copies(row, step):
                kept.append(copy)
                total += PerBatch(fixed=copy.nbytes)
            self.per_row.append(total)
            self._region_inputs(row)
            self.kept.append(tuple(kept))
        return self

    def _keeps(self, row, step, place) -> tuple[PerBatch, list[KeptBytes]]:
        """The tensors the row's layer keeps, and the bytes of those no row before kept."""
        total, kept = ZERO, []
        row_bytes = self.bytes_of if step is None else _autocast_bytes(step[0], self.report)
        recorded = checkpoint.records_node(row)  # a node keeps what the layer keeps (none: nothing before it trains)
        for number, item in enumerate(row.layer.keeps(row.input, row.output, row.grad) if recorded else ()):
            key, each = self._storage(row, step, place, number, item, row_bytes)
            # autograd keeps a view's whole storage: a selected token keeps all the tokens it was taken from
            elements = self.base.get(key, item.elements) if item.tensor in (Tensor.input, Tensor.output) else item.elements
            nbytes = num.normal(elements * each)
            kept.append(KeptBytes(item, nbytes, key not in self.seen))
            part = PerBatch(per_sample=nbytes) if item.per_sample else PerBatch(fixed=nbytes)
            if self.inside and row.index - 1 not in self.inside:
                self.kept_anyway.setdefault(key, part)
            if key not in self.seen:
                self.seen.add(key)
                total += part
        return total, kept

    def _storage(self, row, step, place, number: int, item: Kept, row_bytes: dict) -> tuple[tuple, int]:
        """The storage a kept tensor is counted by, and its bytes per element."""
        own = ("own", row.index, number)
        key = {Tensor.input: place.reads[item.arg], Tensor.output: place.output, Tensor.pre: ("pre", row.index)}.get(item.tensor, own)
        if item.dtype == Storage.opmath and self.size < 4:  # an upcast copy, not the tensor itself
            key = own
        # autocast: an input it copied first is kept as that copy; one it took as it is, in its own dtype
        each = row_bytes[item.dtype]
        if step is not None and item.tensor == Tensor.input:
            if step[2][item.arg]:
                key = ("copy", row.index, item.arg)
            elif item.dtype == Storage.model:
                each = DType(step[3][item.arg]).bytes
        return key, each

    def _weight_copies(self, row, step) -> list[KeptBytes]:
        """Under autocast, the copies of its weights in the lower dtype that the row's node keeps."""
        if step is None or step[1] != autocast.LOWER or not row.backward:
            return []
        tensors = timeline._cast_weights(row)  # a tied weight (GPT-2's lm_head) first: its copy of the owner's
        each = DType(str(self.report.autocast)).bytes
        return [KeptBytes(Kept(Tensor.own, tensors[i], per_sample=False, what="autocast's weight copy"),
                          num.normal(tensors[i] * each), True)
                for i in row.layer.autocast_kept_params(row.requires_grad)]

    def _region_inputs(self, row) -> None:
        """A checkpointed region that begins at this row saves its inputs."""
        start = self.starts.get(row.index - 1)
        if start is not None and start.first_pack is not None:
            for name in timeline.region_inputs(self.report, start):
                key = self.storage[name]
                self.kept_anyway.setdefault(key, PerBatch(per_sample=num.normal(self.base[key] * self.size)))

    def saved(self) -> PerBatch:
        """Saved for backward: every row's; with checkpointing, all but the regions' tensors kept through the step,
        and in backward one region's recomputed at a time."""
        saved = PerBatch.sum(self.per_row)
        if self.regions:
            rerun = [PerBatch.sum(self.per_row[r.first:r.stop]) for r in self.regions]
            saved = PerBatch.sum(self.kept_anyway.values()) + PerBatch(num.maximum(*(p.fixed for p in rerun)),
                                                                       num.maximum(*(p.per_sample for p in rerun)))
        return saved


def _transient(report: Network, size: int) -> PerBatch:
    """The largest gradient pair (of a layer's output and of its inputs that need one) alive at once in backward."""
    gradient_pairs = [
        num.normal(num.mul(row.output) + num.add(num.mul(x) for x, grad in zip(row.shapes, row.grads or (row.requires_grad,)) if grad))
        for row in report.rows
        if row.backward and checkpoint.records_node(row)
    ]
    return PerBatch(per_sample=num.normal(num.maximum(*gradient_pairs) * size)) if gradient_pairs else ZERO


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
        for name in row.inputs:
            last[storage[name]] = row.index
    for row in report.output_rows:
        last[storage[row.name]] = len(report.rows) + 1  # the network's outputs outlive the last layer
    alive: dict[tuple, None] = {}
    out = []
    for row in report.rows:
        for name in row.inputs:
            alive[storage[name]] = None
        alive[storage[row.name]] = None
        out.append(num.add(elements[key] for key in alive))
        for key in [key for key in alive if last.get(key, 0) <= row.index]:
            del alive[key]
    return out
