"""A training step's memory as a timeline: every tensor allocated and freed as PyTorch does it.

The step is the one `bench` times and the tests run on the CPU (tests/oracle/timeline_probe.py):

    optimizer.zero_grad(set_to_none=True)      # the previous step's gradients are freed
    loss = cross_entropy(model(x), targets)    # phase "forward" (the loss is part of it; see Loss)
    loss.backward()                            # phase "backward"
    del loss
    optimizer.step()                           # phase "optimizer": torch's foreach implementation

`x` (the batch) and `targets` (int64 classes, one per sample) are alive throughout, as are the
parameters, buffers and the optimizer's state. Each phase's peak is the highest total of live
storages (each storage counted once, whatever views share it), what the CPU oracle measures
through a TorchDispatchMode and what `torch.cuda.max_memory_allocated()` reads on CUDA after
`reset_peak_memory_stats()` before the phase.

Liveness is by reference counts in execution order, so it works on any DAG of rows:
- forward, per row: its first op allocates its own kept tensors (mask, indices, statistics) and
  its output (before the activation: "pre"); then the row's inputs lose the reference of this
  reader (Python drops its variable when the module returns); the activation, if any, allocates
  the row's output and drops "pre". A tensor is freed when its last reader has run and no
  autograd node keeps it (Layer.keeps says which). A view row (flatten, reshape, dropout p=0)
  shares its input's storage.
- the loss: log_softmax allocates its output (kept by two nodes), nll_loss a scalar loss and a
  scalar total weight (kept); the network's output is then dropped. MSE (an output that is no class
  scores, see Loss): its result's storage is the output's size, and its node keeps the output.
- backward, nodes in reverse order of the forward (what the engine's priority queue does on a
  graph connected to the loss): the root's ones scalar lives to the end; each node allocates its
  gradients (input gradients, parameter gradients: AccumulateGrad steals them, no copy), then
  frees the gradient it consumed, then releases what it kept (`release_variables`), then its
  input gradients are added into the gradient buffer of the tensor they belong to: the first to
  arrive is the buffer, a later one is added in place and freed (InputBuffer::accumulate).
- a checkpointed block use (archcalc/analysis/checkpoint.py, measured against torch.utils.checkpoint, non-reentrant):
  in forward its nodes keep nothing and its inputs are kept instead, until its first saving node has run
  in backward; the first of its nodes to run in backward reruns its forward up to the last save (early
  stop), the tensors saved again kept for their nodes, the rest freed when the rerun stops.
- optimizer: foreach SGD adds in place (no temporaries); Adam and AdamW hold one list of
  temporaries the size of every gradient at a time (`_foreach_mul(grads, 1 - beta2)`, then
  `_foreach_sqrt(exp_avg_sqs)`); on the CPU the step counters are float32 scalars in the state
  and `torch.tensor(1.0)` is allocated to increment them.
- mixed precision (report.autocast: Lightning's bf16-mixed, 16-mixed): forward and loss under torch.autocast,
  each row in the dtype archcalc/core/autocast.py gives its ops, with autocast's copies of inputs and weights and
  their ToCopyBackward in backward (see _Autocast); 16-mixed adds the GradScaler's scalars. A layer with its
  own program (Layer.program: attention, gelu_new, parameter) runs it op by op in autocast's dtypes (each op's
  name looked up in archcalc/core/autocast.py; its weight copies cached as the generic rule's are); attention on CUDA
  is then SDPA's flash kernel (FlashAttention-2's temporaries, see Attention._autocast_program).
- CUDA at a concrete batch: the step's allocations and frees (the tape's events) are replayed through the
  caching allocator (archcalc/memory/allocator.py, from c10/cuda/CUDACachingAllocator.cpp) over three steps, as the
  recordings ran them: two warm-up steps (the first also makes the optimizer's state, in its optimizer phase),
  then the step whose phase peaks are read. memory_allocated() counts blocks, not tensors: a large-pool block
  that a cached block serves with at most 1 MiB to spare is handed out whole (should_split), so which tensors
  carry slack depends on the blocks the earlier steps left. What the blocks hold beyond the tensors at a phase's
  peak is the kind "block slack" (ViT-B/16 at batch 2: ~50 MB in the forward, its ~1.2 MB activations).
  With B a symbol (and on the CPU) the peaks are the tensors' bytes, each block rounded up to 512 on CUDA.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..analysis import checkpoint
from ..analysis.checkpoint import records_node as _node
from ..core import autocast, num, tally
from ..core.dtypes import DType
from ..core.errors import SpecError
from ..core.num import Dim, Value
from ..core.tally import Tally
from ..layers import layout
from ..layers.base import storage_bytes
from . import allocator

if TYPE_CHECKING:
    from ..analysis.network import Network, Row

PHASES = ("forward", "backward", "optimizer")
# What is alive, by kind: the breakdown printed at each phase's peak.
KINDS = ("parameters", "buffers", "batch", "optimizer state", "gradients", "activations",
         "activation gradients", "temporaries", "workspace", "weight copies", "block slack")
# CUDA's costs, from tests/fixtures/measurements/h200-training-memory.json (H200, torch 2.11):
CUDA_BLOCK = allocator.BLOCK  # the caching allocator rounds every block up to 512 bytes (and more: archcalc/memory/allocator.py)
CUBLAS_WORKSPACE = 32 * 2**20  # one per thread that runs matmuls, kept once allocated (fixed.after_free)
# Inside every phase's peak after a warm-up step: the forward thread's cuBLAS workspace, autograd's
# device thread's own, and 1 MiB more (LeNet-5: measured - simulated = 34,603,008 in every phase).
CUDA_WORKSPACE = 2 * CUBLAS_WORKSPACE + 2**20
CUDA_CONTEXT = 718077952  # driver and context, never in max_memory_allocated (fixed.device_used - fixed.reserved)
# cuDNN's workspace: each convolution's, during its op only (on top of what is alive then), as a share
# of that convolution's input bytes. Fitted on the recordings: AlexNet's last convolutions run when
# nearly every kept tensor is alive and set its forward and backward peaks (1.5 and 2.0 bring its
# cases within 0.2-1.6%); VGG-16-BN's and the ResNets' peaks fall where no convolution runs, and
# LeNet-5 stays exact (its workspaces come at its low points). A share of the largest convolution's
# input added on top of the phase's peak was 6% high on VGG-16-BN at batch 64.
CUDNN_WORKSPACE = {"forward": 1.5, "backward": 2.0}


Pair = tuple  # (fixed, per_sample): bytes = fixed + per_sample·B


@dataclass(frozen=True)
class Peak:
    """A phase's highest point: the largest of affine functions of B, and what is alive there."""

    candidates: tuple[tuple[Pair, tuple[tuple[str, Pair], ...]], ...]

    def at(self, batch: Value | None) -> Value:
        """The peak's bytes at `batch`; with no batch, the formula max(fixed_i + per_sample_i·B)."""
        b = num.symbol("B") if batch is None else batch
        return num.maximum(*(num.normal(f + p * b) for (f, p), _ in self.candidates))

    def alive(self, batch: Value) -> dict[str, Value]:
        """What is alive at the peak for a concrete batch, by kind (only kinds with bytes)."""
        best = max(self.candidates, key=lambda c: c[0][0] + c[0][1] * batch)
        return {kind: num.normal(f + p * batch) for kind, (f, p) in best[1] if f + p * batch}

    @property
    def pairs(self) -> list[Pair]:
        return [pair for pair, _ in self.candidates]


@dataclass(frozen=True)
class Timeline:
    phases: dict[str, Peak]
    inference: Peak

    def peak(self, batch: Value | None) -> Value:
        if batch is None:
            return num.maximum(*(num.normal(f + p * num.symbol("B")) for f, p in self.pairs))
        return num.maximum(*(p.at(batch) for p in self.phases.values()))

    def peak_phase(self, batch: Value) -> str | None:
        """The phase that sets the peak (a tie goes to the earliest); None while sizes are formulas."""
        values = {name: p.at(batch) for name, p in self.phases.items()}
        if not all(num.is_concrete(v) for v in values.values()):
            return None
        return max(PHASES, key=lambda name: values[name])

    @property
    def pairs(self) -> list[Pair]:
        """The lines whose largest is the step's peak, for B >= 1."""
        cands = [(pair, ()) for p in self.phases.values() for pair in p.pairs]
        _hull(cands)
        return [pair for pair, _ in cands]


class _Storage:
    __slots__ = ("kind", "refs", "size")

    def __init__(self, size: Pair, kind: str):
        self.size, self.kind, self.refs = size, kind, 0


class _Tape:
    """Live storages, their running total, and each phase's candidate peaks."""

    def __init__(self, batch: Value | None, cuda: bool):
        self.batch = batch
        self.cuda = cuda and batch is not None and num.is_concrete(batch)
        self.workspaces = cuda  # cuDNN's, concrete batch or not
        self.total = (Tally(), Tally())  # sums in dicts: sympy's `+` of formulas is slow (archcalc/core/tally.py)
        self.kinds = {kind: (Tally(), Tally()) for kind in KINDS}
        self.phase = ""
        self.candidates: dict[str, list] = {}
        self.best: dict[str, Value] = {}
        self.events: list | None = [] if self.cuda else None  # ("+", storage), ("-", storage), ("mark", None), ("phase", name)

    def size(self, fixed: Dim, per_sample: Dim) -> Pair:
        if self.batch is not None:  # concrete batch: one number
            fixed, per_sample = fixed + per_sample * self.batch, 0
            if self.cuda and num.is_concrete(fixed):
                fixed = -(-fixed // CUDA_BLOCK) * CUDA_BLOCK
            elif self.cuda:  # a formula in another size (H, T): no blocks to round, no allocator to replay
                self.events = None
        return (fixed, per_sample)

    def new(self, size: Pair, kind: str, refs: int = 1, mark: bool = True) -> _Storage:
        s = _Storage(size, kind)
        s.refs = refs
        self.total[0].add(size[0])
        self.total[1].add(size[1])
        k = self.kinds[kind]
        k[0].add(size[0])
        k[1].add(size[1])
        if self.events is not None:
            self.events.append(("+", s))
        if mark:
            self.mark()
        return s

    def release(self, s: _Storage | None, n: int = 1) -> None:
        if s is None:
            return
        s.refs -= n
        if s.refs == 0:
            self.total[0].add(s.size[0], -1)
            self.total[1].add(s.size[1], -1)
            k = self.kinds[s.kind]
            k[0].add(s.size[0], -1)
            k[1].add(s.size[1], -1)
            if self.events is not None:
                self.events.append(("-", s))

    def start(self, phase: str) -> None:
        self.phase = phase
        self.candidates[phase] = []
        if self.events is not None:
            self.events.append(("phase", phase))
        self.mark()

    def mark(self) -> None:
        """The present total is a candidate for the phase's peak (kept unless another is at least as high for every B)."""
        if self.events is not None:
            self.events.append(("mark", None))
        f, p = self.total[0].key(), self.total[1].key()
        cands = self.candidates[self.phase]
        if num.is_concrete(f) and num.is_concrete(p):
            # B >= 1: a line at least as high at B = 1 and at least as steep is at least as high everywhere
            for (cf, cp), _ in cands:
                if num.is_concrete(cf) and num.is_concrete(cp) and cf + cp >= f + p and cp >= p:
                    return
            cands[:] = [c for c in cands if not (num.is_concrete(c[0][0]) and num.is_concrete(c[0][1])
                                                 and c[0][0] + c[0][1] <= f + p and c[0][1] <= p)]
        elif any(c[0] == (f, p) for c in cands):
            return
        cands.append(((f, p), tuple((kind, (v[0].key(), v[1].key())) for kind, v in self.kinds.items())))

    def peak(self, phase: str) -> Peak:
        _hull(self.candidates[phase])
        value = functools.cache(tally.value)  # each distinct sum made a formula once
        if self.batch is None:  # with B a symbol, the breakdown by kind is read at no batch: made on first use
            return Peak(tuple(((value(f), value(p)), _Kinds(kinds, value)) for (f, p), kinds in self.candidates[phase]))
        return Peak(tuple(((value(f), value(p)), tuple((k, (value(a), value(b))) for k, (a, b) in kinds))
                          for (f, p), kinds in self.candidates[phase]))


class _Kinds:
    """A candidate's bytes by kind, (kind, (fixed, per_sample)) pairs, made formulas on first use: with B
    a symbol nothing reads them (a breakdown is read at a concrete batch, its own timeline), and they were
    half a peak's formulas."""

    __slots__ = ("keys", "made", "value")

    def __init__(self, keys: tuple, value):
        self.keys, self.value, self.made = keys, value, None

    def __iter__(self):
        if self.made is None:
            self.made = tuple((k, (self.value(a), self.value(b))) for k, (a, b) in self.keys)
        return iter(self.made)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


def _hull(cands: list) -> None:
    """Keep the lines that are the highest somewhere in B >= 1 (the upper envelope), where all are numbers."""
    if len(cands) < 3 or not all(num.is_concrete(v) for (pair, _) in cands for v in pair):
        return
    lines = sorted(cands, key=lambda c: (c[0][1], c[0][0]))  # by slope
    hull: list = []
    for c in lines:
        f, p = c[0]
        while hull and hull[-1][0][1] == p:
            hull.pop()  # same slope: the later one is at least as high
        while len(hull) >= 2:
            (f1, p1), (f2, p2) = hull[-2][0], hull[-1][0]
            # the middle line is never the highest if the outer two cross at or before it rises above them
            if (f1 - f) * (p2 - p1) <= (f1 - f2) * (p - p1):
                hull.pop()
            else:
                break
        hull.append(c)
    while len(hull) >= 2 and hull[0][0][0] + hull[0][0][1] <= hull[1][0][0] + hull[1][0][1]:
        hull.pop(0)  # below the next one from B = 1 on
    cands[:] = hull


@dataclass(frozen=True)
class Loss:
    """The step's loss (what `bench` computes and the timeline simulates), from the network's last layer:
    cross-entropy against random int64 classes where its output can be class scores (no element-wise
    function ends it and it has more than one feature), over the output's `axis`: the channels (per pixel
    for [C, H, W]), the last axis per token for [T, V] (`cross_entropy(y.flatten(0, -2), t.flatten())`);
    otherwise the mean squared error against a random target of the output's shape (DCGAN's image)."""

    kind: str  # "cross_entropy", "causal_lm" or "mse"
    axis: int = 0  # the classes' axis of one sample's output


def loss_of(report: Network, row: Row | None = None) -> Loss:
    """The loss of `report`'s training step (see Loss), of its output (of `row`'s, one of several); a language model
    (token ids in, [T, V] scores out) is trained on its own input, as Hugging Face's causal LM loss does it (labels =
    the ids, shifted by one)."""
    row = report.output_rows[0] if row is None else row
    y = tuple(row.output)
    axis = row.layer.scores_axis(y) if y else 0
    if not y or not row.layer.gives_scores() or (num.is_concrete(y[axis]) and y[axis] <= 1):
        return Loss("mse")
    if len(y) == 2 and axis == 1 and any(r.layer.token_ids is not None for r in report.rows):
        return Loss("causal_lm", 1)
    return Loss("cross_entropy", axis)


def _inputs(report: Network, row: Row) -> tuple[str, ...]:
    """The names a row reads: its `inputs` (full names, "input" the model's)."""
    if row.inputs:
        return tuple(row.inputs)
    return (report.rows[row.index - 2].name,) if row.index > 1 else ("input",)


def param_tensors(row: Row) -> tuple[Dim, ...]:
    """The element counts of a row's parameter tensors (weight, bias), as torch holds them."""
    return row.layer.param_tensors(row.input)


def simulate(report: Network, batch: Value | None = None, inplace_sums: bool = True) -> Timeline:
    """The timeline of one training step of `report`'s network (see the module's docstring).

    `inplace_sums=False`: gradients that meet are always summed into a new tensor, as torch does
    while a TorchDispatchMode is active (InputBuffer's can_accumulate_inplace refuses tensors when a
    Python dispatch mode is on), which is how the CPU oracle sees them; without a mode, torch sums
    in place where it can (torch/csrc/autograd/input_buffer.cpp), as modelled by default."""
    size = report.dtype.bytes
    cuda = str(report.device) == "cuda"
    bytes_of = {**storage_bytes(size, cuda), "bool": 1}
    tape = _Tape(batch, cuda)
    rows = report.rows
    amp = _Autocast(report, tape, cuda)

    # Rows whose output leads to the loss: the others' parameters get no gradient, so the optimizer
    # keeps no state for them and makes no temporaries; their nodes never run (and keep nothing
    # that outlives their output).
    reach = {row.name for row in report.output_rows}
    for row in reversed(rows):
        if row.name in reach:
            reach.update(_inputs(report, row))

    # Alive before the step: parameters, buffers, optimizer state, the batch and its targets.
    for row in rows:
        for n in param_tensors(row):
            tape.new(tape.size(n * size, 0), "parameters", mark=False)
    params = [tape.size(n * size, 0) for row in rows if row.name in reach for n in param_tensors(row)]
    for row in rows:
        buffers = row.layer.buffer_bytes(row.input, size)
        if buffers != 0:
            tape.new(tape.size(buffers - 8, 0), "buffers", mark=False)  # running mean and variance
            tape.new(tape.size(8, 0), "buffers", mark=False)  # num_batches_tracked, int64
    states = report.optimizer.states
    for p in params:
        for _ in range(states):
            tape.new(p, "optimizer state", mark=False)
        if not cuda and states == 2:  # Adam's step counter: a float32 scalar on the CPU (on CUDA it is on the CPU too)
            tape.new(tape.size(4, 0), "optimizer state", mark=False)
    if cuda:  # two cuBLAS workspaces and the rest (three blocks of the caching allocator)
        for part in (CUBLAS_WORKSPACE, CUBLAS_WORKSPACE, CUDA_WORKSPACE - 2 * CUBLAS_WORKSPACE):
            tape.new(tape.size(part, 0), "workspace", mark=False)
    amp.scaler_state(report)
    ids = any(row.layer.token_ids is not None for row in rows)  # the batch is int64 token ids
    x = tape.new(tape.size(0, num.mul(report.input) * (8 if ids else size)), "batch", mark=False)
    output = rows[-1].output
    loss_fn = loss_of(report)
    several = len(report.output_rows) > 1  # [model] outputs: a loss per output, summed (_losses)
    if several and (report.autocast is not None or any(loss_of(report, r).kind == "causal_lm" for r in report.output_rows)):
        raise SpecError("the training step of several outputs is modelled in the model's dtype, with cross-entropy or MSE "
                        "losses", "without autocast; or one output", "outputs", where="[model]", path=report.path)
    # A language model ([T] ids in, [T, V] logits out) is trained as Hugging Face's causal LM loss does it
    # (loss_utils.ForCausalLMLoss, labels = the ids): the labels padded by one ignore_index and shifted, a
    # contiguous copy that nll_loss keeps; no other targets.
    lm = loss_fn.kind == "causal_lm"
    for fn, out in ((loss_of(report, r), r.output) for r in report.output_rows) if several else ((loss_fn, output),):
        if fn.kind == "mse":  # a random target of the output's shape and dtype
            tape.new(tape.size(0, num.mul(out) * size), "batch", mark=False)
        elif fn.kind != "causal_lm":  # int64 classes, one per position of the output but its classes' axis
            tape.new(tape.size(0, num.mul(out[:fn.axis] + out[fn.axis + 1:]) * 8), "batch", mark=False)
    tape.start("forward")

    # Forward: readers of each name, the storage behind each name, what each node keeps.
    readers: dict[str, int] = {}
    for row in rows:
        for name in _inputs(report, row):
            readers[name] = readers.get(name, 0) + 1
    for row in report.output_rows:
        readers[row.name] = readers.get(row.name, 0) + 1  # the loss
    storage: dict[str, _Storage] = {"input": x}
    x.refs += readers.get("input", 0)  # the batch stays alive anyway (the caller holds it)
    # nn.Sequential (a straight stack) drops a layer's input as soon as its first module returns;
    # archcalc's Graph module (backends/modules.py) drops what a row read once the whole row has run.
    early = _is_chain(report)
    kept_by: list[tuple[list, list]] = []  # per row: (storages kept by its main node, by its activation node)
    strides: dict[str, object] = {}  # a tensor's name -> its layout where not contiguous
    dead = None
    held: list[_Storage] = []  # held by the model's body until the output layer runs (Layer.program's "hold")
    regions = {r.first: r for r in checkpoint.regions(report)}  # activation checkpointing (archcalc/analysis/checkpoint.py)
    inside = {i for r in regions.values() for i in range(r.first, r.stop)}
    for row in rows:
        if row is rows[-1]:
            for s in held:
                tape.release(s)
        names = _inputs(report, row)
        if row.index - 1 in regions or (row.index - 2 in inside and row.index - 1 not in inside):  # a region's edge
            dead = _region_bounds(tape, report, regions, row.index - 1, storage, dead)
        ins = [storage[n] for n in names]
        layer = row.layer
        # layouts (archcalc/layers/layout.py): a reshape of a permuted tensor copies, and a layer that
        # needs a contiguous input (nn.Linear, the norms) copies a permuted one and keeps the copy
        before, view = strides.get(names[0]), layer.is_view()
        after = layer.view(row.input, row.output, before) if view else None
        if after == layout.COPY:
            view, after = False, None
        if after is not None:
            strides[row.name] = after
        elif before is not None and layer.keeps_layout():
            strides[row.name] = before
        elif layer.output_layout(row.input) is not None:
            strides[row.name] = layer.output_layout(row.input)
        if view:
            s = ins[0]
            s.refs += readers.get(row.name, 0) + 1
            storage[row.name] = s
            amp.dtype[row.name] = amp.dtype[names[0]]
            tape.release(dead)
            tape.release(s, 1)
            dead = s if readers.get(row.name, 0) == 0 and not early else None
            if dead is None:
                tape.release(s)
            kept_by.append(([], []))
            amp.rows.append(None)
            continue
        # a checkpointed region's rows keep nothing in forward (the checkpoint packs their inputs instead)
        outside = row.index - 1 not in inside
        program = amp.program(row, names, "cuda" if cuda else "cpu", inplace_sums) if row.name in reach and outside else None
        if program is not None:  # the layer's own ops, one by one (under autocast each in its dtype: _Autocast.program)
            live = _run(tape, program[0], {}, ins[0], bytes_of, "activations", dead, held=held, cache=amp.cached,
                        others={f"x{i}": s for i, s in enumerate(ins[1:], start=1)})
            dead = None
            out = live.pop("out")
            for s in ins:
                tape.release(s)
            out.refs += readers.get(row.name, 0)
            if out.refs == 1 and not early:
                dead = out
            else:
                tape.release(out)
            storage[row.name] = out
            kept_by.append((live, program[1]))
            continue
        recorded = _node(row) and row.name in reach and outside
        keeps = layer.keeps(row.input, row.output, row.grad) if recorded else ()
        activation = layer.activation
        main, act = (keeps[:-1], keeps[-1:]) if activation and keeps else (keeps, ())
        # autocast's copies of inputs and weights (a checkpointed region's nodes keep none: the checkpoint packs them)
        cast = amp.forward(row, names, recorded)
        ins = [c or s for c, s in zip(cast.inputs, ins)]
        row_bytes = cast.bytes_of or bytes_of
        out_size = tape.size(0, num.mul(row.output) * (cast.size or size))
        # The op allocates its own tensors (mask, indices, statistics) whether or not autograd keeps
        # them (measured: max pooling, dropout and batchnorm without a gradient): those kept by no
        # node are freed as soon as the op returns.
        every = layer.keeps(row.input, row.output, tuple(True for _ in names) if layer.merges else True)
        own = {_key(k): tape.new(tape.size(*_kept_size(k, row_bytes)), "activations", mark=False)
               for k in (every[:-1] if activation and every else every) if k.tensor == "own"}
        forward_scratch = layer.forward_scratch(row.input)
        if forward_scratch != 0:
            own["scratch"] = tape.new(tape.size(0, forward_scratch * size), "temporaries", mark=False)
        copy = None
        if layer.copies_input(row.shapes[0] if layer.merges else row.input, before):
            copy = tape.new(tape.size(0, num.mul(row.shapes[0] if layer.merges else row.input) * size), "activations")
            ins = [copy, *ins[1:]]
        # a non-contiguous [B, …, d] (copied or folded as a view) goes through matmul, its bias added after
        unfused = before is not None and layer.contiguous_input() and layer.unfused_bias() and len(row.input) > 1
        product = tape.new(out_size, "temporaries", mark=False) if unfused else None
        first = tape.new(out_size, "activations")  # the op's output ("pre" when an activation follows)
        tape.release(product)
        _workspace(tape, row, cast.size or size, "forward")
        tape.release(dead)  # Graph.forward's local `y` held the last row's unread output until now
        dead = None
        main_saved, act_saved = list(cast.kept), []
        named = {"pre": first, "output": first}
        for k in main:
            s = own[_key(k)] if k.tensor == "own" else ins[k.arg] if k.tensor == "input" else named[k.tensor]
            s.refs += 1
            main_saved.append(s)
        scratch = own.pop("scratch", None)
        for s in own.values():
            tape.release(s)
        update_scratch = layer.update_scratch(row.input)
        if update_scratch != 0:  # InstanceNorm's running statistics' update, then its β's repeat goes
            tape.release(tape.new(tape.size(update_scratch * size, 0), "temporaries"))
        tape.release(scratch)
        if copy is not None:
            tape.release(copy)
        for s in cast.inputs:
            tape.release(s)  # a copy autocast made for the op: gone when the op returns, unless its node keeps it
        ins = [storage[n] for n in names]
        if early:
            for s in ins:
                tape.release(s)
        if activation:
            out = tape.new(cast.activation_size or out_size, "activations")
            named["output"] = out
            for k in act:
                s = ins[k.arg] if k.tensor == "input" else named[k.tensor]
                s.refs += 1
                act_saved.append(s)
            tape.release(first)
        else:
            out = first
        out.refs += readers.get(row.name, 0)
        if not early:
            for s in ins:
                tape.release(s)
        if out.refs == 1 and not early:
            dead = out  # read by no one: Graph.forward's `y` keeps it until the next row's op returns
        else:
            tape.release(out)  # the row's own variable
        storage[row.name] = out
        kept_by.append((main_saved, act_saved))

    y = storage[rows[-1].name]
    if several:
        amp.exit()
        grad, ones, loss = _losses(tape, report, storage, size)
        scaled_loss = None
    elif loss_fn.kind == "mse":
        # mse_loss: its result's storage is the output's size (the squared errors, reduced in place), kept
        # by `loss` to the end of backward; MseLossBackward keeps the output (under autocast, mse_loss runs in
        # float32: a 16-bit output's float32 copy, kept instead)
        copy = amp.loss_input(output, rows[-1].name)
        kept = y if copy is None else copy
        if copy is None:
            y.refs += 1
        loss = tape.new(tape.size(0, num.mul(output) * size), "temporaries")
        tape.release(y)
        amp.exit()  # the autocast context ends: its cached weight copies go, but those a node keeps
        tape.start("backward")
        scaled_loss = amp.scale()
        ones = tape.new(tape.size(size, 0), "temporaries")
        # with a GradScaler, the scaling's MulBackward hands mse_loss's node a gradient of its own (a float32 scalar)
        through = None if scaled_loss is None else tape.new(tape.size(4, 0), "temporaries", mark=False)
        g_y = tape.new(tape.size(0, num.mul(output) * size), "activation gradients")
        tape.release(through)
        tape.release(kept)
        g_y = amp.loss_gradient(g_y, output, rows[-1].name)  # the copy's backward: the gradient in the output's dtype
    else:
        copy = amp.loss_input(output, rows[-1].name)  # under autocast: cross_entropy in float32, on a float32 copy of the logits
        # Hugging Face's causal LM loss upcasts 16-bit logits itself (logits.float()): the loss is float32 from there on
        upcast = lm and copy is None and size < 4
        if upcast:  # the 16-bit logits go with it (the loss's argument, rebound: nothing else holds them)
            copy = tape.new(tape.size(0, num.mul(output) * 4), "temporaries")
            tape.release(y)
            y = None
        lsize = 4 if upcast else size
        if lm:
            padded = tape.new(tape.size(0, (output[0] + 1) * 8), "temporaries")
            # labels[..., 1:].contiguous(): a copy, but for one sample, where the slice is already contiguous
            shifted = None if batch == 1 else tape.new(tape.size(0, output[0] * 8), "temporaries")
        logits = tape.new(tape.size(0, num.mul(output) * lsize), "activations", refs=2)
        loss = tape.new(tape.size(lsize, 0), "temporaries", mark=False)
        total_weight = tape.new(tape.size(lsize, 0), "temporaries")
        tape.release(copy)
        if lm:
            tape.release(padded)
        tape.release(y)
        amp.exit()  # the autocast context ends: its cached weight copies go, but those a node keeps

        # Backward.
        tape.start("backward")
        scaled_loss = amp.scale()
        ones = tape.new(tape.size(lsize, 0), "temporaries")
        g_logits = tape.new(tape.size(0, num.mul(output) * lsize), "activation gradients")
        tape.release(logits)
        tape.release(total_weight)
        if lm:
            tape.release(shifted)
        g_y = tape.new(tape.size(0, num.mul(output) * lsize), "activation gradients")
        tape.release(g_logits)
        tape.release(logits)
        g_y = amp.loss_gradient(g_y, output, rows[-1].name)  # the copy's backward: the gradient in the logits' dtype
        if upcast:  # logits.float()'s ToCopyBackward
            g_low = tape.new(tape.size(0, num.mul(output) * size), "activation gradients")
            tape.release(g_y)
            g_y = g_low
    if not several:
        grad: dict[str, tuple] = {rows[-1].name: (g_y, False)}  # name -> (its gradient buffer's storage, a view of it?)
    batchless = {row.name for row in rows if row.layer.batchless()}  # outputs without a batch axis in torch
    tied: dict = {}  # layers whose weight's gradient a tying layer (GPT-2's lm_head) has already made -> its storage
    recomputed: dict[int, tuple[list, list]] = {}
    rerun: set[int] = set()
    region_of = {i: r for r in regions.values() for i in range(r.first, r.stop)}
    for row, (main_saved, act_saved), info in zip(reversed(rows), reversed(kept_by), reversed(amp.rows)):
        g, _ = grad.pop(row.name, (None, False))
        region = region_of.get(row.index - 1)
        if region is not None and g is not None and _node(row):
            if region.first not in rerun and any(checkpoint.packs(row)):  # its first unpack reruns the forward
                rerun.add(region.first)
                recomputed |= _recompute(tape, report, region, storage, reach, bytes_of, amp)
            main_saved, act_saved = recomputed.get(row.index - 1, ([], []))
        names = _inputs(report, row)
        if g is None:  # no gradient reaches it (nothing after it needs one)
            continue
        if row.layer.is_view():
            whole = tape.size(0, num.mul(row.input) * amp.bytes(names[0], size))
            if row.layer.gradient_is_new():  # select: a new gradient of the input's size
                g_in = tape.new(whole, "activation gradients")
                tape.release(g)
                _accumulate(tape, grad, names[0], g_in, False, whole, inplace_sums)
                tape.release(g_in)
                continue
            _accumulate(tape, grad, names[0], g, True, whole, inplace_sums)
            tape.release(g)
            continue
        if not _node(row):
            tape.release(g)
            continue
        if isinstance(main_saved, dict):  # the layer's own ops (Layer.program)
            def hand(s, name=names[0], shape=row.shapes[0]):  # a gradient for the (first) input, now (InputBuffer::accumulate)
                _accumulate(tape, grad, name, s, False, tape.size(0, num.mul(shape) * amp.bytes(name, size)), inplace_sums)

            live = _run(tape, act_saved, {**main_saved, "g": g}, None, bytes_of, "activation gradients", hand=hand)
            if "gx" in live:
                _accumulate(tape, grad, names[0], live["gx"], False,
                            tape.size(0, num.mul(row.shapes[0]) * amp.bytes(names[0], size)), inplace_sums)
                tape.release(live["gx"])
            continue
        out_size = tape.size(0, num.mul(row.output) * (info.size if info else size))
        if row.layer.activation:
            g_pre = tape.new(out_size, "activation gradients")
            tape.release(g)
            for s in act_saved:
                tape.release(s)
            g = g_pre
            if region is not None and region.first_pack == row.index - 1 and not main_saved:
                _frame_ends(tape, report, region, storage)
        scratch = row.layer.backward_scratch(row.input, row.requires_grad)  # parameter gradients summed out of per-sample ones, later
        if scratch != 0:
            # in the dtype the op computes in under autocast's rule (PReLU's); else the parameters' (InstanceNorm's float32
            # γ and β gradients per sample, from a 16-bit input)
            scratch = tape.new(tape.size(0, scratch * (info.size if info and info.rule else size)), "temporaries", mark=False)
        late = scratch != 0 and not row.layer.sums_scratch_first(row.requires_grad)  # the parameters' gradients after its frees
        low_grads = None if late else amp.weight_grads(row, info)  # autocast's weight copies' gradients, made float32 below
        pending = None  # the owner of a tied weight: its own gradient, added into .grad once the node has run
        if low_grads is None and not late:
            pending = _tied_gradient(tape, row, tied, size)
        elif row.layer.tie is not None:  # its copy's ToCopyBackward below makes the shared weight's gradient
            tied.setdefault(row.layer.tie, None)
        flags = row.grads if row.layer.merges else (row.requires_grad,)
        shapes = row.shapes if row.layer.merges else (row.input,)
        passes = row.layer.passes_gradient()
        g_ins = []
        padded = row.layer.padded_gradient(row.input) if row.requires_grad and not row.layer.merges else 0
        if padded != 0:  # the gradient of the padded copy first; the input's is cut from it after (the pad's node)
            padded = tape.new(tape.size(0, padded * size), "activation gradients", mark=False)
        summed = []  # mul's gradients of a broadcast factor: made at the output's size, summed to the factor's after
        for name, flag, shape in zip(names, flags, shapes):
            if not flag or padded != 0:
                continue
            elements = num.mul(shape) * (info.size if info else size)
            # a parameter broadcast as it is (no batch axis): its gradient is summed to the parameter's own size
            own = tape.size(elements, 0) if name in batchless else tape.size(0, elements)
            if passes == "slice" or (passes == "same" and tuple(shape) == tuple(row.output) and name not in batchless):
                g.refs += 1
                g_ins.append((name, g, passes == "slice" or len(names) > 1, own))
            elif passes == "" and row.layer.merges and info is None and tuple(shape) != tuple(row.output):
                summed.append(len(g_ins))
                g_ins.append((name, tape.new(tape.size(0, num.mul(row.output) * size), "activation gradients", mark=False),
                              False, own))
            else:
                g_ins.append((name, tape.new(own, "activation gradients", mark=False), False, own))
        if info:  # then the engine casts each gradient to its input's dtype, in order (validate_outputs; measured: mul)
            made = [(i, shape) for i, (flag, shape) in enumerate(zip(flags, shapes)) if flag]
            g_ins = [amp.promoted(info, i, shape, entry) for (i, shape), entry in zip(made, g_ins)]
        tape.mark()
        _workspace(tape, row, info.size if info else size, "backward")
        for i in summed:  # validate_outputs: sum_to the factor's shape, while the consumed gradient is still held
            name, full, view, own = g_ins[i]
            g_ins[i] = (name, tape.new(own, "activation gradients"), view, own)
            tape.release(full)
        tape.release(g)
        for s in main_saved:
            tape.release(s)
        _tied_sum(tape, tied, pending, inplace_sums)
        if padded != 0:
            own = tape.size(0, num.mul(row.input) * size)
            g_ins.append((names[0], tape.new(own, "activation gradients"), False, own))
            tape.release(padded)
        if scratch != 0:
            if late:
                low_grads = amp.weight_grads(row, info)
                if low_grads is None:
                    _tied_sum(tape, tied, _tied_gradient(tape, row, tied, size), inplace_sums)
            tape.release(scratch)
        if region is not None and region.first_pack == row.index - 1 and main_saved:
            _frame_ends(tape, report, region, storage)
        later = amp.copied(info, names, flags, shapes)  # the gradients of autocast's input copies: converted after the node
        for name, g_in, view, own in g_ins:
            if name not in later:
                _accumulate(tape, grad, name, g_in, view, own, inplace_sums)
        for name, g_in, _, _ in g_ins:
            if name not in later:
                tape.release(g_in)  # the node's outputs are dropped once they are in the buffers
        for name, g_in, _, own in reversed(g_ins):
            if name in later:  # ToCopyBackward: the gradient in the input's own dtype (the last input's first)
                own = tape.size(0, num.mul(later[name]) * amp.bytes(name, size))
                g_in = amp.convert(g_in, own, "activation gradients")
                _accumulate(tape, grad, name, g_in, False, own, inplace_sums)
                tape.release(g_in)
        amp.weights_to_float32(low_grads)
    tape.release(ones)
    tape.release(scaled_loss)
    tape.release(loss)
    for g, _ in grad.values():
        tape.release(g)

    # The optimizer step.
    tape.start("optimizer")
    found_inf = amp.unscale()
    if report.optimizer.states == 2:
        if not cuda:
            tape.release(tape.new(tape.size(4, 0), "temporaries"))  # torch.tensor(1.0): the step counters' increment
        temporaries = [tape.new(p, "temporaries", mark=False) for p in params]
        tape.mark()
        for t in temporaries:
            tape.release(t)
    tape.release(found_inf)
    phases = {phase: tape.peak(phase) for phase in PHASES}
    if tape.events is not None:  # CUDA at a concrete batch: the blocks the caching allocator hands out
        phases = _replayed(tape, phases)
    return Timeline(phases, _inference(report, batch))


def _losses(tape: _Tape, report: Network, storage: dict, size: int) -> tuple[dict, _Storage, _Storage]:
    """Several outputs ([model] outputs, returned as a dict), trained on the sum of their losses as bench computes it
    (backends/bench.py summed_losses): each output's loss in turn (cross-entropy or MSE, as loss_of says for its
    layer), the losses added one by one (each partial sum a scalar, the one before it freed), then the outputs go
    (but what a loss's node keeps) and the losses themselves. Backward: the sum hands its gradient to every loss,
    whose backward runs the last made first. Returns the outputs' gradient buffers, `ones` and the sum."""
    made = []
    for row in report.output_rows:
        fn, y, out = loss_of(report, row), storage[row.name], row.output
        if fn.kind == "mse":  # its result's storage is the output's size; its node keeps the output
            y.refs += 1
            made.append((row, fn, y, tape.new(tape.size(0, num.mul(out) * size), "temporaries"), None))
        else:  # log_softmax's output (kept by two nodes), nll_loss's scalar and total weight
            logits = tape.new(tape.size(0, num.mul(out) * size), "activations", refs=2)
            loss = tape.new(tape.size(size, 0), "temporaries", mark=False)
            made.append((row, fn, logits, loss, tape.new(tape.size(size, 0), "temporaries")))
    total = made[0][3]
    total.refs += 1
    for _ in made[1:]:
        added = tape.new(tape.size(size, 0), "temporaries")
        tape.release(total)
        total = added
    for row in report.output_rows:
        tape.release(storage[row.name])
    for entry in made:
        tape.release(entry[3])
    tape.start("backward")
    ones = tape.new(tape.size(size, 0), "temporaries")
    grad: dict[str, tuple] = {}
    for row, fn, kept, _, weight in reversed(made):
        out = tape.size(0, num.mul(row.output) * size)
        if fn.kind == "mse":
            g_y = tape.new(out, "activation gradients")
            tape.release(kept)
        else:
            g_logits = tape.new(out, "activation gradients")
            tape.release(kept)
            tape.release(weight)
            g_y = tape.new(out, "activation gradients")
            tape.release(g_logits)
            tape.release(kept)
        _accumulate(tape, grad, row.name, g_y, False)
        tape.release(g_y)
    return grad, ones, total


def _replayed(tape: _Tape, phases: dict[str, Peak]) -> dict[str, Peak]:
    """Each phase's peak as memory_allocated() reads it in the third step (two warm-up steps first: the
    recordings' method), the step's allocations replayed through the caching allocator (archcalc/memory/allocator.py):
    a cached block too large by at most 1 MiB is handed out whole. What the blocks hold beyond the tensors at
    the peak is the kind "block slack" (beside the tensors alive at the timeline's own peak)."""
    peaks = allocator.replay(tape.events)
    if peaks is None:  # no block of the large pool: the blocks are the tensors
        return phases
    out = {}
    for phase, peak in phases.items():
        best = max(peak.candidates, key=lambda c: c[0][0])
        slack = peaks[phase] - best[0][0]
        out[phase] = peak if slack <= 0 else Peak((((peaks[phase], 0), best[1] + (("block slack", (slack, 0)),)),))
    return out


def _workspace(tape: _Tape, row: Row, size: int, phase: str) -> None:
    """On CUDA, cuDNN's workspace for a convolution: allocated during its op, on top of what is alive then, and freed."""
    if tape.workspaces and row.macs != 0 and row.layer.windows(row.input):
        tape.release(tape.new(tape.size(0, _fraction(CUDNN_WORKSPACE[phase]) * num.mul(row.input) * size), "workspace"))


@dataclass
class _Cast:
    """What autocast does around one row's op in the forward pass (nothing without autocast)."""

    inputs: list  # per input: autocast's copy of it (a _Storage), or None
    kept: list  # low-precision weight copies the row's node keeps
    bytes_of: dict | None  # the bytes of each Storage kind, in the dtype the op computes in
    size: int  # bytes of an output element (0: the model's dtype)
    activation_size: Pair | None  # the activation's output, where it computes in another dtype


@dataclass
class _Row:
    compute: str  # the dtype the op computes in
    rule: str | None  # autocast's policy for it
    casts: tuple[bool, ...]  # per input: autocast copies it first
    inputs: tuple[str, ...]  # the inputs' dtypes
    low: int  # bytes of autocast's dtype
    size: int  # bytes of `compute`


class _Autocast:
    """Dtypes along the timeline under torch.autocast (archcalc/core/autocast.py); without it, every call is a no-op.

    Forward: an op of the "lower" or "float32" lists copies each input of another dtype first (the copy is
    kept if the node keeps that input, else freed when the op returns); a "lower" op copies its weights into
    autocast's cache (alive until the context exits after the loss, or until backward where the node keeps
    them). Backward: the node's gradients come in the dtype it computed in; each copy's ToCopyBackward then
    makes the gradient of the original (input copies first, then weight, then bias: the reverse of the order
    the copies were made), so the parameters' gradients end up float32."""

    def __init__(self, report: Network, tape: _Tape, cuda: bool):
        self.low = str(report.autocast) if report.autocast is not None else None
        self.device = "cuda" if cuda else "cpu"
        self.tape, self.cuda = tape, cuda
        self.dtype: dict[str, str] = {"input": str(report.dtype)}
        self.rows: list[_Row | None] = []
        self.cached: list[_Storage] = []
        self.passing: list[_Storage] = []  # weight copies not cached: freed when their op returns
        self.replayed: list[_Storage] = []  # weight copies made again by a checkpointed region's recomputation
        self.scaler = False

    def forward(self, row: Row, names: tuple[str, ...], recorded: bool, cache: bool = True, replay: bool = False) -> _Cast:
        """`cache`: the weight copies stay in autocast's cache (with gradients on; in inference_mode, measured, each
        is gone when its op returns, with the input copies). `replay`: a checkpointed row run again in backward
        (its dtypes known already; its weight copies cached until the recomputation ends)."""
        if self.low is None:
            if not replay:
                self.dtype[row.name] = self.dtype["input"]
                self.rows.append(None)
            return _Cast([None] * len(names), [], None, 0, None)
        layer, tape = row.layer, self.tape
        shapes = row.shapes if layer.merges else (row.input,)
        dtypes = tuple(self.dtype[n] for n in names)
        compute, rule = autocast.compute_dtype(self.device, layer.autocast_ops(row.input), dtypes, self.low)
        flags = autocast.casts(rule, compute, dtypes)
        low, nbytes = DType(self.low).bytes, DType(compute).bytes
        kept = []
        if rule == autocast.LOWER:
            keep = set(layer.autocast_kept_params(row.requires_grad)) if recorded else set()
            for i, n in enumerate(_cast_weights(row)):
                copy = tape.new(tape.size(n * low, 0), "weight copies", mark=False)
                (self.replayed if replay else self.cached if cache else self.passing).append(copy)
                if i in keep:
                    copy.refs += 1
                    kept.append(copy)
        copies = [tape.new(tape.size(0, num.mul(shape) * nbytes), "activations", mark=False) if flag else None
                  for flag, shape in zip(flags, shapes)]
        out, activation_size = compute, None
        if layer.activation:
            out, _ = autocast.compute_dtype(self.device, (layer.activation,), (compute,), self.low)
            activation_size = tape.size(0, num.mul(row.output) * DType(out).bytes)
        if not replay:
            self.dtype[row.name] = out
            self.rows.append(_Row(compute, rule, flags, dtypes, low, nbytes))
        bytes_of = storage_bytes(nbytes, self.cuda, DType(self.dtype["input"]).bytes)
        return _Cast(copies, kept, bytes_of, nbytes, activation_size)

    # Lightning's 16-mixed: float16 autocast with torch.amp.GradScaler (scale(loss).backward(), scaler.step(opt),
    # scaler.update()). Its float32 scalars, measured on the CPU oracle (tests/oracle/timeline_probe.py): the scale and the
    # growth tracker, alive from the first step (8 bytes in every phase); the scaled loss through backward (4); in
    # the step, 16 bytes of unscale_'s scalars (inverse scale, found-inf flags), 4 of them alive through opt.step().
    def program(self, row: Row, names: tuple[str, ...], device: str, inplace: bool) -> tuple | None:
        """The row's Layer.program; under autocast the one it writes for autocast's dtypes (amp = (autocast's dtype,
        its input's dtype)), None where it has none (the generic rule runs). Sets the row's output dtype."""
        if self.low is None:
            program = row.layer.program(row.input, row.requires_grad, device, inplace)
            if program is not None:
                self.forward(row, names, False)  # its dtype bookkeeping only
            return program
        program = row.layer.program(row.input, row.requires_grad, device, inplace, amp=(self.low, self.dtype[names[0]]))
        if program is not None:
            out = next(e for e in program[0] if e[0] in ("+", "to") and e[1] == "out")
            dtype = (out[5] if len(out) > 5 else "model") if out[0] == "to" else out[3] if len(out) > 3 else "model"
            self.dtype[row.name] = self.dtype["input"] if dtype in ("model", "param") else dtype
            self.rows.append(None)
        return program

    def scaler_state(self, report: Network) -> None:
        self.scaler = self.low == "float16" and str(report.optimizer) != "none"
        if self.scaler:
            for _ in range(2):
                self.tape.new(self.tape.size(4, 0), "optimizer state", mark=False)

    def scale(self) -> _Storage | None:
        return self.tape.new(self.tape.size(4, 0), "temporaries", mark=False) if self.scaler else None

    def unscale(self) -> _Storage | None:
        if not self.scaler:
            return None
        tape = self.tape
        found_inf = tape.new(tape.size(4, 0), "temporaries", mark=False)
        scalars = [tape.new(tape.size(4, 0), "temporaries", mark=False) for _ in range(3)]
        tape.mark()
        for s in scalars:
            tape.release(s)
        return found_inf

    def bytes(self, name: str, default: int) -> int:
        """Bytes of an element of the tensor `name` (and of its gradient)."""
        return DType(self.dtype[name]).bytes if self.low is not None and name in self.dtype else default

    def exit(self) -> None:
        for copy in self.cached:
            self.tape.release(copy)

    def loss_input(self, output, name: str) -> _Storage | None:
        """cross_entropy under autocast (on autocast's float32 list): a float32 copy of low-precision logits."""
        if self.low is None or self.dtype[name] == "float32":
            return None
        return self.tape.new(self.tape.size(0, num.mul(output) * 4), "activations", mark=False)

    def loss_gradient(self, g: _Storage, output, name: str) -> _Storage:
        if self.low is None or self.dtype[name] == "float32":
            return g
        return self.convert(g, self.tape.size(0, num.mul(output) * DType(self.dtype[name]).bytes), "activation gradients")

    def convert(self, g: _Storage, size: Pair, kind: str) -> _Storage:
        """A copy of `g` in another dtype (ToCopyBackward, or the engine matching an input's dtype); `g` is dropped."""
        out = self.tape.new(size, kind)
        self.tape.release(g)
        return out

    def weight_grads(self, row: Row, info: _Row | None) -> list | None:
        """The low-precision gradients of the weight copies a "lower" op made (None: its gradients are float32 already)."""
        if info is None or info.rule != autocast.LOWER:
            return None
        tape = self.tape
        return [(tape.new(tape.size(n * info.low, 0), "gradients", mark=False), n) for n in _cast_weights(row)]

    def weights_to_float32(self, grads: list | None) -> None:
        """Each weight copy's ToCopyBackward, weight then bias: the float32 gradient, then the 16-bit one goes."""
        for g, n in grads or ():
            self.tape.new(self.tape.size(n * 4, 0), "gradients")
            self.tape.release(g)

    def promoted(self, info: _Row, i: int, shape, entry: tuple) -> tuple:
        """An input of another dtype that the op took without a copy (type promotion): the engine casts its gradient."""
        name, g_in = entry[:2]
        if info.casts[i] or info.inputs[i] == info.compute:
            return entry
        size = self.tape.size(0, num.mul(shape) * DType(info.inputs[i]).bytes)
        return (name, self.convert(g_in, size, "activation gradients"), False, size)

    def copied(self, info: _Row | None, names: tuple[str, ...], flags, shapes) -> dict:
        """The inputs whose gradient goes through a copy's ToCopyBackward: name -> its shape."""
        return {} if info is None else {n: s for n, c, f, s in zip(names, info.casts, flags, shapes) if c and f}


def _cast_weights(row: Row) -> tuple:
    """The element counts of the weights autocast copies for a row: its parameter tensors, and first the weight
    it shares with an earlier layer (GPT-2's lm_head casts the embedding's table)."""
    if row.layer.tie is None:
        return param_tensors(row)
    return (num.mul(row.layer.weight_shape(row.input)), *param_tensors(row))


def _tied_gradient(tape: _Tape, row, tied: dict, size: int) -> tuple | None:
    """A row's parameter gradients. A layer that shares an earlier layer's weight (tie) makes that weight's
    gradient first (backward runs in reverse; AccumulateGrad keeps it as .grad); when the owner's backward
    runs, its own gradient of the weight is returned, (its name, its storage), for _tied_sum once the node has run."""
    owner = row.layer.tie
    pending = None
    if owner is not None and owner not in tied:
        tied[owner] = tape.new(tape.size(num.mul(row.layer.weight_shape(row.input)) * size, 0), "gradients", mark=False)
    for number, n in enumerate(param_tensors(row)):
        if number == 0 and row.name in tied:
            pending = (row.name, tape.new(tape.size(n * size, 0), "temporaries"))
        else:
            tape.new(tape.size(n * size, 0), "gradients", mark=False)
    return pending


def _tied_sum(tape: _Tape, tied: dict, pending: tuple | None, inplace: bool) -> None:
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


def _width(bytes_of: dict, storage: str) -> int:
    """Bytes of an element of a program's storage: a Storage's name, or under autocast a dtype's."""
    return bytes_of[storage] if storage in bytes_of else DType(storage).bytes


def _run(tape: _Tape, events: tuple, live: dict, x: _Storage | None, bytes_of: dict, kind: str,
         dead: _Storage | None = None, hand=None, held: list | None = None, cache: list | None = None,
         others: dict | None = None) -> dict:
    """Run a layer's events (Layer.program) on the tape: allocate, drop references; return what is still alive.
    Parameter gradients ("grad.*") are of the kind "gradients"; the others of `kind`. `dead`: the storage that
    Graph.forward's variable holds until the first op returns; `hand(storage)`: a ("grad", name) event, a
    gradient of the input handed to its buffer (the program keeps its own reference until it drops it).
    ("to", name, source, elements, storage, new storage[, per_sample]) is `.to(dtype)`: the source itself (one more
    reference) where both storages are as wide, else a copy; ("if", "low" or "wide", *event): the event only where
    the model's dtype is narrower than float32 ("low": bfloat16, float16) or not ("wide").
    Under autocast an event's storage may name a dtype ("bfloat16", "float32"...), and ("w", name, elements,
    dtype) is autocast's copy of a weight: in its cache (`cache`, until the context exits) and the program's.
    ("keep", "x1") keeps a merging layer's second input (`others`: "x1", "x2"... by position), as ("keep", "x") its first."""
    for event in events:
        if event[0] == "w":
            _, name, elements, dtype = event
            live[name] = tape.new(tape.size(elements * DType(dtype).bytes, 0), "weight copies", refs=2, mark=False)
            cache.append(live[name])
            continue
        if event[0] == "if":
            if (bytes_of["model"] < bytes_of["opmath"]) != (event[1] == "low"):
                continue
            event = event[2:]
        if event[0] == "to":
            _, name, source, elements, old, new, *rest = event
            s = live.get(source, x)
            if _width(bytes_of, old) == _width(bytes_of, new):
                s.refs += 1
                live[name] = s
                continue
            event = ("+", name, elements, new, *rest)
        if event[0] == "grad":
            hand(live[event[1]])
            continue
        if event[0] == "hold":  # the model's body holds it until it returns (released before the last row)
            live[event[1]].refs += 1
            held.append(live[event[1]])
            continue
        if event[0] == "+":
            _, name, elements, *rest = event
            dtype, per_sample = rest[0] if rest else "model", rest[1] if len(rest) > 1 else True
            nbytes = elements * _width(bytes_of, dtype)
            live[name] = tape.new(tape.size(0, nbytes) if per_sample else tape.size(nbytes, 0),
                                  "gradients" if name.startswith("grad.") else kind)
            tape.release(dead)
            dead = None
        elif event[0] == "keep":
            s = x if event[1] == "x" else others[event[1]]
            s.refs += 1
            live[event[1]] = s
        else:
            for name in event[1:]:
                tape.release(live.pop(name))
    return live


def region_inputs(report: Network, region) -> list[str]:
    """The names a region reads from before it (its block use's input)."""
    made = {row.name for row in report.rows[region.first:region.stop]}
    return list(dict.fromkeys(n for row in report.rows[region.first:region.stop] for n in _inputs(report, row) if n not in made))


def _region_bounds(tape: _Tape, report: Network, regions: dict, index: int, storage: dict, dead):
    """At a checkpointed region's edges: Graph.forward's local holding an unread output is gone (its loop
    returned); at its start, the region's inputs are saved by the checkpoint (until its first saving node
    has run in backward), unless nothing in it saves anything."""
    tape.release(dead)
    region = regions.get(index)
    if region is not None and region.first_pack is not None:
        for name in region_inputs(report, region):
            storage[name].refs += 1
    return None


def _frame_ends(tape: _Tape, report: Network, region, storage: dict) -> None:
    """The last node of a region that saved something has run: the checkpoint's saved inputs go."""
    for name in region_inputs(report, region):
        tape.release(storage[name])


def _recompute(tape: _Tape, report: Network, region, storage: dict, reach: set, bytes_of: dict,
               amp: _Autocast) -> dict:
    """A checkpointed region's forward, rerun in backward as Graph's region function runs it (its own local
    names, each dropped after its last reader in the region), up to torch's early stop: the last save
    (region.until, region.runs); then everything not saved again is freed. Returns, per row index, the
    storages its nodes keep (main node's, activation node's)."""
    size = report.dtype.bytes
    rows = report.rows[region.first:region.stop]
    made = {row.name for row in rows}
    later = {n for row in report.rows[region.stop:] for n in _inputs(report, row)} | {report.rows[-1].name}
    readers: dict[str, int] = {}
    for row in rows:
        for name in _inputs(report, row):
            readers[name] = readers.get(name, 0) + 1
    local = {name: storage[name] for name in region_inputs(report, region)}
    for name, s in local.items():
        s.refs += readers[name]
    out_kept: dict[int, tuple[list, list]] = {}
    dead = None
    for index in range(region.first, region.until):
        row = report.rows[index]
        names = _inputs(report, row)
        ins = [local[n] for n in names]
        ops = 2 if index < region.until - 1 else region.runs
        refs = readers.get(row.name, 0) + (row.name in later)
        layer = row.layer
        if layer.is_view():
            s = ins[0]
            s.refs += refs + 1
            local[row.name] = s
            tape.release(dead)
            tape.release(s, 1)
            dead = s if refs == 0 else None
            if dead is None:
                tape.release(s)
            continue
        main, act = checkpoint.packs(row) if row.name in reach else ((), ())
        # under autocast the row runs again in its dtype, making its copies again (amp: the step's _Autocast)
        cast = amp.forward(row, names, _node(row) and row.name in reach, replay=True)
        op_ins = [c or s for c, s in zip(cast.inputs, ins)]
        row_bytes = cast.bytes_of or bytes_of
        main_saved: list = list(cast.kept)
        act_saved: list = []
        out_kept[index] = (main_saved, act_saved)
        every = layer.keeps(row.input, row.output, tuple(True for _ in names) if layer.merges else True)
        own = {_key(k): tape.new(tape.size(*_kept_size(k, row_bytes)), "activations", mark=False)
               for k in (every[:-1] if layer.activation and every else every) if k.tensor == "own"}
        if ops == 0:  # stopped at its last save, before its output exists: its inputs (and a mask made first) saved
            tape.mark()
            for k in main:
                s = own[_key(k)] if k.tensor == "own" else op_ins[k.arg]
                s.refs += 1
                main_saved.append(s)
            for s in own.values():
                tape.release(s)
            for s in cast.inputs:
                tape.release(s)
            break
        out_size = tape.size(0, num.mul(row.output) * (cast.size or size))
        first = tape.new(out_size, "activations")
        tape.release(dead)
        dead = None
        named = {"pre": first, "output": first}
        for k in main:
            s = own[_key(k)] if k.tensor == "own" else op_ins[k.arg] if k.tensor == "input" else named[k.tensor]
            s.refs += 1
            main_saved.append(s)
        for s in own.values():
            tape.release(s)
        for s in cast.inputs:
            tape.release(s)
        if ops == 1:  # stopped after its op (an output saved) or at its activation's save of its input
            first.refs += len(act)
            act_saved += [first] * len(act)
            break
        out = first
        if layer.activation:
            out = tape.new(cast.activation_size or out_size, "activations")
            named["output"] = out
            for k in act:
                s = ins[k.arg] if k.tensor == "input" else named[k.tensor]
                s.refs += 1
                act_saved.append(s)
            tape.release(first)
        out.refs += refs
        for s in ins:
            tape.release(s)
        if out.refs == 1:
            dead = out
        else:
            tape.release(out)
        local[row.name] = out
    else:
        index, ops = region.until, 2
    # the stop unwinds the region's function: its locals go (the reads still pending, the outputs, its last `y`)
    tape.release(dead)
    if ops == 1:
        tape.release(first)
    for name, s in local.items():
        pending = sum(n == name for row in report.rows[index:region.stop] for n in _inputs(report, row))
        pending += name in made and name in later
        if pending:
            tape.release(s, pending)
    for s in amp.replayed:  # the recomputation's autocast context ends: its weight copies go, but those a node keeps
        tape.release(s)
    amp.replayed.clear()
    return out_kept


def _fraction(share: float):
    from fractions import Fraction

    return Fraction(share).limit_denominator(100)


def _key(k) -> tuple:
    return (k.what, k.elements, k.dtype, k.per_sample)


def _kept_size(k, bytes_of) -> Pair:
    nbytes = k.elements * bytes_of[k.dtype]
    return (0, nbytes) if k.per_sample else (nbytes, 0)


def _accumulate(tape: _Tape, grad: dict, name: str, g: _Storage, view: bool, size: Pair | None = None,
                inplace: bool = True) -> None:
    """A gradient for `name` arrives (InputBuffer::accumulate): the first becomes its buffer; a later one is
    added in place into the buffer when its storage has no other holder and is not a view, else the buffer
    is added in place into the new one when that one can be, else the sum is a new tensor."""
    if name == "input":  # the batch needs no gradient
        return
    if name not in grad:
        g.refs += 1
        grad[name] = (g, view)
        return
    old, old_view = grad[name]
    if inplace and old.refs == 1 and not old_view:  # old.add_(g)
        return
    if inplace and g.refs == 1 and not view:  # g.add_(old): the new gradient becomes the buffer
        g.refs += 1
        tape.release(old)
        grad[name] = (g, False)
        return
    total = tape.new(size or old.size, "activation gradients")  # old + g: the tensor's size (a slice's storage is larger)
    tape.release(old)
    grad[name] = (total, False)


def _is_chain(report: Network) -> bool:
    """A straight stack, which archcalc.torch builds as an nn.Sequential (backends/torch.py is_chain)."""
    if len(report.output_rows) > 1:
        return False
    previous = "input"
    for row in report.rows:
        if tuple(_inputs(report, row)) != (previous,) or "." in row.name:
            return False
        previous = row.name
    return True


def _inference(report: Network, batch: Value | None) -> Peak:
    """One forward in eval under inference_mode: outputs freed when their last reader has run (under autocast:
    each row in its dtype, its input copies freed when it returns, the weight copies cached to the end)."""
    size = report.dtype.bytes
    tape = _Tape(batch, str(report.device) == "cuda")
    tape.events = None  # no allocator replay (no recording of inference to hold it against)
    amp = _Autocast(report, tape, str(report.device) == "cuda")
    tape.start("forward")
    rows = report.rows
    for row in rows:
        for n in param_tensors(row):
            tape.new(tape.size(n * size, 0), "parameters", mark=False)
        buffers = row.layer.buffer_bytes(row.input, size)
        if buffers != 0:
            tape.new(tape.size(buffers, 0), "buffers", mark=False)
    x = tape.new(tape.size(0, num.mul(report.input) * size), "batch")
    readers: dict[str, int] = {}
    for row in rows:
        for name in _inputs(report, row):
            readers[name] = readers.get(name, 0) + 1
    for row in report.output_rows:  # the caller holds the outputs
        readers[row.name] = readers.get(row.name, 0) + 1
    storage = {"input": x}
    x.refs += readers.get("input", 0)
    early = _is_chain(report)  # nn.Sequential drops an input before the activation, archcalc's Graph after the row
    dead = None
    for row in rows:
        names = _inputs(report, row)
        ins = [storage[n] for n in names]
        if row.layer.is_view_in_eval():
            s = ins[0]
            s.refs += readers.get(row.name, 0) + 1
            storage[row.name] = s
            amp.dtype[row.name] = amp.dtype[names[0]]
            tape.release(dead)
            tape.release(s)
            dead = s if readers.get(row.name, 0) == 0 and not early else None
            if dead is None:
                tape.release(s)
            continue
        cast = amp.forward(row, names, False, cache=False)
        # a parameter's output is a view of it (expanded over the batch, or as it is)
        out_size = tape.size(0, 0 if row.layer.is_parameter() else num.mul(row.output) * (cast.size or size))
        first = tape.new(out_size, "activations")
        for s in [*cast.inputs, *amp.passing]:
            tape.release(s)
        amp.passing.clear()
        tape.release(dead)
        dead = None
        if early:
            for s in ins:
                tape.release(s)
        out = first
        if row.layer.activation:
            out = tape.new(cast.activation_size or out_size, "activations")
            tape.release(first)
        out.refs += readers.get(row.name, 0)
        if not early:
            for s in ins:
                tape.release(s)
        if out.refs == 1 and not early:
            dead = out
        else:
            tape.release(out)
        storage[row.name] = out
    return tape.peak("forward")
