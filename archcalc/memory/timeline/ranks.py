"""Each rank's training step under a data-parallel layout (archcalc/core/parallel.py), as torch 2.13 runs it.

A Step per rank (RankStep), its policies per rank: which storages it holds before the step (`parameters`), what its
optimizer keeps and steps (`params`), and the collectives' buffers around the rows (the Step's hooks). Measured on
the CPU with gloo, every rank's live storages (tests/oracle/distributed_probe.py):

- ddp (DistributedDataParallel): the whole model on every rank, and its gradient buckets (one flat tensor per
  bucket, trained parameters in reverse order, the first up to 1 MiB, the others to 25 MiB), made once and alive
  through every step: autograd's gradients are copied in, all-reduced in place, copied back. With
  `gradient_as_bucket_view` the .grad of each parameter is its view of the bucket: the gradient autograd made is
  freed once copied in, right after the node that made it.
- zero1 (DDP and ZeroRedundancyOptimizer): the same, but the optimizer's state and step only for this rank's share
  of the parameters (torch's partition: the tensors by size, largest first, each to the rank with the fewest
  elements so far); the updated parameters are broadcast in place. DDP broadcasts the buffers before each forward.
- fsdp, fsdp-no-reshard (FSDP2, fully_shard on each unit, then the model: the root): each parameter sharded along
  its first axis, padded to a multiple of the ranks, every rank's shard the padded size (its optimizer state the
  unpadded one, torch.chunk's). Around a unit's forward: a flat all-gather buffer (the unit's padded size), then
  each parameter's gathered storage; the flat buffer is freed at the next unit's gather (implicit prefetch), the
  last one when the root's forward ends; after the unit's forward its parameters are freed (resharded), unless
  fsdp-no-reshard (the root never is: torch's default for training). In backward, before a unit's last row runs
  its parameters are gathered again (or copied out of a prefetched buffer) and the unit before it in forward order
  is prefetched (its flat buffer made); after its first row its parameters are freed and its gradients
  reduce-scattered: the previous unit's reduce-scatter input freed, a flat input of the unit's padded size made,
  the gradients copied in and freed (the last one a moment later: foreach_reduce's loop variable), the rank's
  flat output made (its sharded gradients, views of it, alive until zero_grad), and on the CPU gloo's copy of the
  input (gloo reduce-scatters by an all-reduce of a clone). Each fully_shard's device mesh holds the ranks (int32,
  on the CPU). The root's (and that of a unit whose input needs no
  gradient) happens at the end of backward, the last reduce-scatter input freed then.

A model that computes its own loss (Hugging Face's, the causal LM loss) does so inside the root's forward: the
root's post-forward after the loss, its pre-backward before the loss's backward; otherwise around the model's rows.

What torch does on another thread is not in the timeline: gloo's worker thread sometimes drops its reference to
a buffer after the rank's next allocation (a gathered unit's flat buffer or a reduce-scatter's copy, one unit's
padded bytes at most), which the oracle then sees later than here.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from ...core import num
from ...core.errors import SpecError
from ...core.parallel import Layout, Strategy
from . import tensor
from .optimizer import optimizer_for
from .peaks import PHASES, Peak, Timeline
from .step import Step, simulate as one_process

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from ...core.num import Value
    from .optimizer import Foreach
    from .tape import Allocation

SHARDED = (Strategy.fsdp, Strategy.fsdp_no_reshard)
REPLICATED = (Strategy.ddp, Strategy.zero1)
COLLECTIVES = ("all_gather", "reduce_scatter", "all_reduce", "broadcast")


@dataclass(frozen=True)
class Param:
    """One parameter tensor: its row, its place among the row's tensors, its shape as torch holds it."""

    row: str
    number: int
    shape: tuple
    trained: bool

    @cached_property
    def numel(self) -> int:
        return num.mul(self.shape)

    @cached_property
    def rest(self) -> int:
        """Elements per row of its first axis."""
        return num.mul(self.shape[1:])

    def chunk(self, n: int) -> int:
        """Rows of the first axis in each rank's shard (torch.chunk's: the first ranks full, the last ones short)."""
        return -(-self.shape[0] // n)

    def shard(self, n: int) -> int:
        """Elements of a rank's shard as FSDP2 stores it: padded to the first rank's, on every rank."""
        return self.chunk(n) * self.rest

    def padded(self, n: int) -> int:
        """Elements gathered from `n` ranks: the padded shards, end to end."""
        return self.shard(n) * n

    def local(self, n: int, rank: int) -> int:
        """Elements the rank really holds (its optimizer state's): torch.chunk's piece, empty past the end."""
        return max(0, min(self.chunk(n), self.shape[0] - rank * self.chunk(n))) * self.rest


@dataclass(frozen=True)
class Unit:
    """An FSDP2 unit: the rows one fully_shard wraps, [first, stop) in the report's rows (the root: all the others)."""

    name: str
    first: int
    stop: int
    params: tuple[Param, ...]
    root: bool = False

    def flat(self, n: int, trained: bool = False) -> int:
        """Elements of its all-gather (or, `trained`, reduce-scatter) buffer over `n` ranks."""
        return sum(p.padded(n) for p in self.params if p.trained or not trained)


@dataclass
class Plan:
    """What a layout makes of a network, rank by rank: the parameter tensors, DDP's buckets, ZeRO's partition, FSDP's
    units (see the module)."""

    net: Network
    layout: Layout
    size: int = field(init=False)

    def __post_init__(self):
        self.size = self.net.dtype.bytes
        if self.layout.tp != 1 and self.layout.strategy != Strategy.tp:
            raise SpecError(f"tensor parallelism under --strategy {self.layout.strategy} is not modelled",
                            "--strategy tp --tp K: tensor parallel within groups of K GPUs, the groups data parallel",
                            where="--tp", path=self.net.path)
        if self.layout.strategy in SHARDED and self.net.autocast is not None:
            raise SpecError("FSDP's mixed precision (MixedPrecisionPolicy) is not modelled", "--precision 32-true or "
                            "bf16-true with fsdp; ddp and zero1 take mixed precision", where="--strategy")
        if getattr(self.net, "finetune", None) is not None:
            raise SpecError("fine-tuning under a parallel layout is not modelled yet", "train the whole model, or drop "
                            "--strategy", where="--strategy")
        if self.layout.bucket_view and self.net.autocast is not None:
            raise SpecError("gradient_as_bucket_view under autocast is not modelled", where="--strategy")

    @cached_property
    def params(self) -> tuple[Param, ...]:
        """Every parameter tensor, in the model's order (as module.parameters() lists them)."""
        from .parameters import reaching

        reach = reaching(self.net)
        out = []
        for row in self.net.rows:
            shapes = row.layer.param_shapes(row.input)
            for number, shape in enumerate(shapes):
                if not all(num.is_concrete(d) for d in shape):
                    raise SpecError(f"{row.name}: a parameter's shape is a formula, {shape}", "give the sizes it depends "
                                    "on with --set", where="--strategy")
                out.append(Param(row.name, number, tuple(int(d) for d in shape), row.name in reach))
        return tuple(out)

    @property
    def trained(self) -> list[Param]:
        return [p for p in self.params if p.trained]

    @cached_property
    def buckets(self) -> tuple[int, ...]:
        """DDP's gradient buckets, in elements: the trained tensors in reverse order, a bucket closed once it holds
        its cap's bytes (the first bucket's cap, then bucket_bytes), as dist._compute_bucket_assignment_by_size."""
        caps, out, open_ = [self.layout.first_bucket_bytes, self.layout.bucket_bytes], [], 0
        for p in reversed(self.trained):
            open_ += p.numel
            if open_ * self.size >= caps[min(len(out), 1)]:
                out.append(open_)
                open_ = 0
        return tuple(out + ([open_] if open_ else []))

    @cached_property
    def partition(self) -> tuple[tuple[Param, ...], ...]:
        """ZeroRedundancyOptimizer's partition: the trained tensors by size, largest first (ties in the model's order),
        each to the rank with the fewest elements so far (the lowest such rank)."""
        n = self.layout.dp
        ranks: list[list[Param]] = [[] for _ in range(n)]
        sizes = [0] * n
        for p in sorted(self.trained, key=lambda p: -p.numel):
            rank = sizes.index(min(sizes))
            ranks[rank].append(p)
            sizes[rank] += p.numel
        return tuple(tuple(r) for r in ranks)

    @cached_property
    def units(self) -> tuple[Unit, ...]:
        """FSDP2's units in forward order, then the root (the rows in no unit)."""
        rows, spans = self.net.rows, self._spans()
        inside: set[int] = set()
        units = []
        for name, first, stop in spans:
            names = {row.name for row in rows[first:stop]}
            units.append(Unit(name, first, stop, tuple(p for p in self.params if p.row in names)))
            inside.update(range(first, stop))
        outside = {row.name for i, row in enumerate(rows) if i not in inside}
        units.append(Unit("", 0, len(rows), tuple(p for p in self.params if p.row in outside), root=True))
        self._check_ties(units)
        return tuple(units)

    def _spans(self) -> list[tuple[str, int, int]]:
        """(name, first, stop) of each unit: each outermost use of a block (one per repetition), or what the layout's
        patterns name (layer paths or their prefixes, glob patterns)."""
        rows = self.net.rows
        if self.layout.units is None:
            uses = [u for u in self.net.uses if u.repeat is None and u.first < u.stop]
            spans = [(u.path, u.first, u.stop) for u in uses
                     if not any(o is not u and o.first <= u.first and u.stop <= o.stop and (o.first, o.stop) != (u.first, u.stop)
                                for o in uses)]
            return sorted(set(spans), key=lambda s: s[1])
        prefixes: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            parts = row.name.split(".")
            for k in range(1, len(parts) + 1):
                prefixes.setdefault(".".join(parts[:k]), []).append(i)
        spans = []
        for pattern in self.layout.units:
            found = [name for name in prefixes if fnmatch.fnmatchcase(name, pattern)]
            if not found:
                raise SpecError(f"no layer path matches {pattern!r}", "a unit is a layer's path or a prefix of paths "
                                "(h.0, h.*), as fully_shard names modules", where="--units")
            for name in found:
                index = prefixes[name]
                if index != list(range(index[0], index[-1] + 1)):
                    raise SpecError(f"the layers under {name!r} do not run one after another", "a unit is a module "
                                    "whose layers run together", where="--units")
                spans.append((name, index[0], index[-1] + 1))
        spans = sorted(set(spans), key=lambda s: (s[1], -s[2]))
        for (a, _, stop), (b, first, _) in itertools.pairwise(spans):
            if first < stop:
                raise SpecError(f"the units {a!r} and {b!r} overlap", "units may not nest: give the inner or the outer "
                                "ones", where="--units")
        return spans

    def _check_ties(self, units: list[Unit]) -> None:
        """A tied weight (GPT-2's lm_head reads wte's) belongs to one unit: the layer that ties it must be in it."""
        where = {}
        for unit in units:
            for row in self.net.rows[unit.first:unit.stop] if not unit.root else self.net.rows:
                where.setdefault(row.name, unit.name)
        for row in self.net.rows:
            owner = row.layer.tie
            if owner is not None and where.get(owner) != where.get(row.name):
                raise SpecError(f"{row.name} ties {owner}'s weight but they are in different units",
                                "put both in the same unit, or leave both to the root", where="--units")

    def unit_of(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def local_sizes(self, rank: int) -> tuple:
        """What sets a rank's memory apart: its optimizer's tensors (and under FSDP its shards)."""
        n, strategy = self.layout.dp, self.layout.strategy
        if strategy in SHARDED:
            return tuple(p.local(n, rank) for p in self.trained)
        if strategy == Strategy.zero1:
            return tuple(p.numel for p in self.partition[rank])
        return ()

    def communication(self, batch: Value | None = None) -> dict[str, Value]:
        """Bytes each rank sends into collectives per step, by collective: the tensor each all-reduces or broadcasts,
        the output each all-gathers into, the input each reduce-scatters (the buffers torch hands c10d). Under tensor
        parallelism the activations' all-reduces grow with the batch: at `batch` (a formula in B without one)."""
        out = dict.fromkeys(COLLECTIVES, 0)
        n, size, strategy = self.layout.dp, self.size, self.layout.strategy
        if strategy == Strategy.tp:  # activations forward, their gradients backward, then the data-parallel gradients
            fixed, per_sample = tensor.all_reduce_bytes(self.net, self.layout)
            out["all_reduce"] = num.normal(fixed + per_sample * (num.symbol("B") if batch is None else batch))
        elif strategy in REPLICATED:
            out["all_reduce"] = sum(p.numel for p in self.trained) * size
            # DDP broadcasts the buffers (batchnorm's running statistics) from rank 0 before each forward
            out["broadcast"] = num.add(row.layer.buffer_bytes(row.input, size) for row in self.net.rows)
            if strategy == Strategy.zero1:
                out["broadcast"] += sum(p.numel for p in self.trained) * size  # the updated parameters, from their owners
        elif n > 1:
            gathered = [u for u in self.units if u.params]
            again = [u for u in gathered if self.layout.reshard_after_forward and not u.root]
            out["all_gather"] = (sum(u.flat(n) for u in gathered) + sum(u.flat(n) for u in again)) * size
            out["reduce_scatter"] = sum(u.flat(n, trained=True) for u in gathered) * size
        return out


class RankStep(Step):
    """One rank's training step (see the module): the Step, with its parameters, optimizer and collectives per rank."""

    def __init__(self, net: Network, batch: Value | None, plan: Plan, rank: int, inplace_sums: bool = True,
                 optimizer: Foreach | None = None, loss_inside: bool = False):
        self.plan, self.rank, self.layout = plan, rank, plan.layout
        self.n = self.layout.dp
        super().__init__(net, batch, inplace_sums, optimizer=optimizer, loss_inside=loss_inside)
        self.made: dict[str, list] = {}  # a row -> the .grad storages its node made (its trained tensors' order)
        self.sharded = self.layout.strategy in SHARDED
        self.inside = self.loss.loss.kind == "causal_lm"  # a model that computes its own loss: inside the root's forward
        if self.sharded:
            self.units = [u for u in plan.units if u.params]
            self.root = next((u for u in self.units if u.root), None)
            self.starting = {u.first: u for u in self.units if not u.root}
            self.ending = {u.stop - 1: u for u in self.units if not u.root}
            self.gathered: dict[str, list | None] = {}  # a unit -> its gathered parameters' storages
            self.prefetched: dict[str, Allocation] = {}  # a unit -> the flat buffer of an all-gather not yet copied out
            self.deferred: Allocation | None = None  # forward: the last all-gather's flat buffer (implicit prefetch)
            self.order: list[Unit] = []  # the units by the end of their forward (the prefetch order in backward)
            self.reduced: set[str] = set()  # the units whose post-backward has run
            self.scatter_input: Allocation | None = None  # the last reduce-scatter's input, until the next one

    # Before the step ------------------------------------------------------------------------------------------
    def parameters(self) -> list:
        tape, size, plan = self.tape, self.size, self.plan
        if self.layout.strategy in SHARDED:
            for p in plan.params:
                tape.new(tape.size(p.shard(self.n) * size, 0), "parameters", mark=False)
            if not self.cuda:  # each fully_shard's device mesh: the ranks, int32, a CPU tensor (on CUDA too), kept by
                for _ in self.units:  # its parameter group: none where the module has no parameters of its own
                    tape.new(tape.size(4 * self.n, 0), "communication buffers", mark=False)
            return [tape.size(p.local(self.n, self.rank) * size, 0) for p in plan.trained]
        trained = super().parameters()
        for elements in plan.buckets:
            tape.new(tape.size(elements * size, 0), "communication buffers", mark=False)
        if self.layout.strategy == Strategy.zero1:
            return [tape.size(p.numel * size, 0) for p in plan.partition[self.rank]]
        return trained

    # Forward ----------------------------------------------------------------------------------------------------
    def forward_row(self, row: Row):
        if not self.sharded:
            return super().forward_row(row)
        i = row.index - 1
        if i == 0 and self.root is not None:
            self._pre_forward(self.root)
        if i in self.starting:
            self._pre_forward(self.starting[i])
        saved = super().forward_row(row)
        if i in self.ending:
            self._post_forward(self.ending[i])
        if row is self.rows[-1] and not self.inside:
            self._root_post_forward()
        return saved

    def forward_ends(self) -> None:
        if self.sharded and self.inside:
            self._root_post_forward()

    def _root_post_forward(self) -> None:
        """The root's post-forward, with parameters of its own or none: the last unit's all-gather buffer freed."""
        if self.root is not None:
            self.order.append(self.root)
        self.tape.release(self.deferred)
        self.deferred = None

    def _gather(self, unit: Unit) -> list:
        """A unit's parameters gathered into their own storages (copied out of its all-gather buffer)."""
        tape, size = self.tape, self.size
        made = [tape.new(tape.size(p.padded(self.n) * size, 0), "gathered parameters", mark=False) for p in unit.params]
        tape.mark()
        self.gathered[unit.name] = made
        return made

    def _flat(self, unit: Unit) -> Allocation | None:
        """A unit's all-gather buffer (none on one rank: FSDP2 copies the shard)."""
        if self.n == 1:
            return None
        return self.tape.new(self.tape.size(unit.flat(self.n) * self.size, 0), "communication buffers")

    def _pre_forward(self, unit: Unit) -> None:
        if self.gathered.get(unit.name):
            return
        flat = self._flat(unit)
        self._gather(unit)
        self.tape.release(self.deferred)  # the previous unit's buffer, kept until this copy-out
        self.deferred = flat

    def _post_forward(self, unit: Unit) -> None:
        self.order.append(unit)
        if self.layout.reshard_after_forward:
            self._reshard(unit)

    def _reshard(self, unit: Unit) -> None:
        for s in self.gathered.get(unit.name) or ():
            self.tape.release(s)
        self.gathered[unit.name] = None

    # Backward ---------------------------------------------------------------------------------------------------
    def backward_starts(self) -> None:
        if self.sharded and self.inside and self.root is not None:
            self._pre_backward(self.root)

    def backward_row(self, row: Row) -> None:
        i = row.index - 1
        if self.sharded:
            if i in self.ending:
                self._pre_backward(self.ending[i])
            if row is self.rows[-1] and not self.inside and self.root is not None:
                self._pre_backward(self.root)
        super().backward_row(row)
        if self.layout.bucket_view and not self.sharded:
            self._into_buckets(row)
        if self.sharded and i in self.starting and row.requires_grad:
            self._post_backward(self.starting[i])

    def backward_ends(self) -> None:
        if not self.sharded:
            return
        for unit in ([self.root] if self.root is not None else []) + [u for u in self.units if not u.root]:
            if unit.name not in self.reduced:
                self._post_backward(unit)
        self.tape.release(self.scatter_input)
        self.scatter_input = None

    def gradients_made(self, row: Row, made: list) -> None:
        self.made[row.name] = made

    def _into_buckets(self, row: Row) -> None:
        """gradient_as_bucket_view: the gradients a node made are copied into their bucket and freed (a tied weight's
        sum too: .grad is its bucket's view)."""
        for s in self.made.pop(row.name, ()):
            self.tape.release(s)
        for s in self.tied.values():
            if s is not None and s.refs > 0:
                self.tape.release(s)

    def _pre_backward(self, unit: Unit) -> None:
        if not self.gathered.get(unit.name):
            flat = self.prefetched.pop(unit.name, None)
            if flat is None:
                flat = self._flat(unit)
            self._gather(unit)
            self.tape.release(flat)  # in backward freed at once (gloo's thread sometimes a moment later)
        for k in range(len(self.order) - 1, -1, -1):  # the unit before it in forward order is prefetched
            if self.order[k] is unit:
                del self.order[k]
                if k > 0:
                    target = self.order[k - 1]
                    if not self.gathered.get(target.name) and target.name not in self.prefetched and self.n > 1:
                        self.prefetched[target.name] = self._flat(target)
                break

    def _post_backward(self, unit: Unit) -> None:
        tape, size = self.tape, self.size
        self.reduced.add(unit.name)
        self._reshard(unit)
        tape.release(self.scatter_input)  # the previous reduce-scatter's input (one kept in flight)
        self.scatter_input = None
        grads = self._grads(unit)
        if not grads:
            return
        elements = unit.flat(self.n, trained=True)
        self.scatter_input = tape.new(tape.size(elements * size, 0), "communication buffers")
        for s in grads[:-1]:  # copied in, then freed with the list; the last one held by foreach_reduce's loop variable
            tape.release(s)
        tape.new(tape.size(elements // self.n * size, 0), "gradients")  # the rank's shard: its sharded .grad are views
        if self.n > 1 and not self.cuda:  # gloo reduce-scatters a clone of the input (an all-reduce, then a copy out)
            tape.transient(tape.size(elements * size, 0), "communication buffers")
        tape.release(grads[-1])

    def _grads(self, unit: Unit) -> list:
        """The unit's .grad storages, in its parameters' order (a tied weight's is the owner's first)."""
        names = list(dict.fromkeys(p.row for p in unit.params if p.trained))
        out = []
        for name in names:
            tied = self.tied.get(name)
            out += ([tied] if tied is not None else []) + self.made.pop(name, [])
        return [s for s in out if s is not None and s.refs > 0]


@dataclass(frozen=True)
class RankedTimeline(Timeline):
    """The step's timeline under a layout: each phase's peak the largest over the ranks; `ranks` each rank's own."""

    ranks: tuple[Timeline, ...] = ()


def plan_of(net: Network) -> Plan:
    """The layout's plan of a network (made once per network)."""
    cache = net.__dict__.setdefault("_ranks_plan", {})
    if "plan" not in cache:
        cache["plan"] = Plan(net, net.parallel)
    return cache["plan"]


def simulate_ranks(net: Network, batch: Value | None, inplace_sums: bool = True, optimizer: Foreach | None = None,
                   loss_inside: bool = False) -> RankedTimeline:
    """Each rank's step (ranks that hold the same tensors simulated once); the phases the largest over the ranks."""
    plan = plan_of(net)
    if plan.layout.strategy == Strategy.tp:  # every rank of a tensor-parallel group holds the same sizes
        one = tensor.simulate(net, batch, inplace_sums, optimizer, loss_inside)
        return RankedTimeline(one.phases, one.inference, (one,) * plan.layout.gpus)
    classes: dict[tuple, Timeline] = {}
    ranks = []
    for rank in range(plan.layout.dp):
        key = plan.local_sizes(rank)
        if key not in classes:
            classes[key] = RankStep(net, batch, plan, rank, inplace_sums, optimizer, loss_inside).run()
        ranks.append(classes[key])
    if len(classes) > 1 and batch is not None and num.is_concrete(batch):
        # the caching allocator's replay (memory --budget) reads the last simulated step's events: the largest rank's
        largest = max(range(len(ranks)), key=lambda r: (ranks[r].peak(batch), -r))
        if plan.local_sizes(largest) != list(classes)[-1]:
            RankStep(net, batch, plan, largest, inplace_sums, optimizer, loss_inside).run()
    phases = {phase: Peak(tuple(c for t in classes.values() for c in t.phases[phase].candidates)) for phase in PHASES}
    return RankedTimeline(phases, ranks[0].inference, tuple(ranks))


def simulate(report: Network, batch: Value | None = None, inplace_sums: bool = True, *, foreach: bool = True,
             loss_inside: bool = False) -> Timeline:
    """The timeline of one training step of `report`'s network (step.simulate's, its options the same), each rank's
    under a parallel layout (report.parallel): the largest over the ranks, phase by phase (a RankedTimeline)."""
    if report.parallel is None:
        return one_process(report, batch, inplace_sums, foreach=foreach, loss_inside=loss_inside)
    optimizer = optimizer_for(report.optimizer, str(report.device) == "cuda", foreach)
    return simulate_ranks(report, batch, inplace_sums, optimizer, loss_inside)
