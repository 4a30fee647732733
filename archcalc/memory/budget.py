"""Memory budgets: the largest batch (or size) whose training step fits, and the bytes a batch needs.

On the CPU the step's peak is the budget's only limit: the largest of affine functions of B (closed.py's
StepBytes.pieces), so the largest batch under a budget is a least of floors, a formula while other sizes are
free; `require_sizes` refuses those up front, for a command line that must answer with a number.

On CUDA a budget is a cap on the bytes PyTorch's caching allocator reserves (what
torch.cuda.set_per_process_memory_fraction bounds; the CUDA context is outside it; with a card's memory,
--card, the context is taken out first). A step fits when its allocations, replayed through the allocator
under the cap (archcalc/memory/allocator.py, `trains`: a request no cached block serves gets a new segment if
the cap allows it, else the wholly free cached segments are released and it tries once more, else out of
memory), run two warm-up steps and one more without running out: the method of the recordings in
tests/fixtures/measurements/h200-largest-batch.json. The largest batch is found by bisection on B.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import num
from ..core.dtypes import Device
from ..core.errors import SpecError
from ..core.num import Value
from . import allocator, timeline
from .allocator import Trial
from .closed import Memory, measure

if TYPE_CHECKING:
    from ..analysis.network import Network

# A batch found by bisection counts only if the batches down to 2% under it train too: under a cap the replay is
# not monotone in B past its first failure (blocks cached for one size fit the next batch's or not), and a
# batch that trains between two that do not is luck, not room (AlexNet, SGD, 8 GiB: 1,131 trains, 1,132 to
# 1,260 do not, 1,261 to 1,264 do again).
STEADY = 0.02


@dataclass(frozen=True)
class Fit:
    """The largest batch whose training step fits a memory budget."""

    budget: int
    batch: Value | None  # None: not even a batch of 1 fits
    report: Network  # at that batch (at 1 when none fits)
    context: int = 0  # bytes of the card taken by the CUDA context (--card), already out of the budget
    trial: Trial | None = None  # CUDA: the caching allocator's replay under the cap at `batch` (at 1 when none fits)
    refused: Trial | None = None  # CUDA: the replay at the next batch, which runs out of memory
    needs: int | None = None  # CUDA, when none fits: the smallest cap a batch of 1 trains under (to 2 MiB)
    assumed: tuple[tuple[str, str], ...] = ()  # settings a command assumed, not given: (("device", "cuda"), ...)

    @property
    def usable(self) -> int:
        """The bytes the step may take: the budget, less the CUDA context with --card."""
        return self.budget - self.context

    @property
    def over(self) -> Value:
        """By how many bytes a batch of 1 misses the budget (0 when it fits)."""
        if self.batch is not None:
            return 0
        if self.needs is not None:
            return self.needs - self.usable
        return num.normal(needed(measure(self.report), 1) - self.usable)


def needed(memory: Memory, batch: Value) -> Value:
    """The bytes the step's peak takes at `batch` (what max_memory_allocated reads)."""
    return memory.training.at(batch)


def step_events(report: Network, batch: int) -> list | None:
    """The step's allocations and frees at `batch`, as the timeline hands them to the caching allocator's replay
    (archcalc/memory/timeline/ at a concrete batch on CUDA; None elsewhere)."""
    with allocator.tapped() as seen:
        timeline.simulate(report, batch)
    return seen[-1] if seen else None


def replayed(report: Network, batch: int, cap: int) -> Trial:
    """Two warm-up steps and one more of `report`'s network at `batch`, replayed through the caching allocator
    under `cap` reserved bytes (archcalc/memory/allocator.py, `trains`)."""
    events = step_events(report, batch)
    if events is None:
        raise ValueError(f"no allocator events for {report.model!r} at batch {batch}: a CUDA network with no size left free")
    return allocator.trains(events, cap)


def replays(report: Network) -> bool:
    """Whether a budget for `report` is a cap replayed through the caching allocator: CUDA, no size left free."""
    return report.device == Device.cuda and not free_sizes(report)


def largest_batch(report: Network, budget: int, card: bool = False) -> Fit:
    """The largest whole B whose training step fits `budget`. On CUDA (no size free) the largest B whose step,
    replayed through the caching allocator under the cap, trains (see the module's docstring), never above the
    B whose peak alone fills the cap; with `card`, the budget is the card's memory and the CUDA context is
    taken out of it first. Elsewhere max_i(fixed_i + per_sample_i·B) <= budget, so B = min_i
    ⌊(budget - fixed_i) / per_sample_i⌋, a formula if sizes are symbolic (on CUDA too: blocks need numbers)."""
    cuda = report.device == Device.cuda
    context = timeline.CUDA_CONTEXT if cuda and card else 0
    usable = budget - context
    memory = measure(report)
    pieces = memory.training.pieces
    if all(num.is_concrete(p.per_sample) and p.per_sample == 0 for p in pieces):
        raise SpecError("the training memory does not grow with the batch: every batch fits or none does", where="--budget")
    bounds = [num.floordiv(usable - p.fixed, p.per_sample) for p in pieces
              if not (num.is_concrete(p.per_sample) and p.per_sample == 0)]
    fixed_only = [p.fixed for p in pieces if num.is_concrete(p.per_sample) and p.per_sample == 0]
    batch = num.minimum(*bounds, evaluate=False)  # sympy would compare every pair of bounds, for minutes
    if num.is_concrete(batch):
        # at a concrete batch the simulation rounds every block up (CUDA): step down until it fits
        while batch >= 1 and needed(memory, batch) > usable:
            batch -= 1
    none = num.is_concrete(batch) and (batch < 1 or any(num.is_concrete(f) and f > usable for f in fixed_only))
    if cuda and replays(report):
        return _replayed_fit(report, budget, context, 0 if none else int(batch))
    if none:
        return Fit(budget, None, dataclasses.replace(report, batch=1), context)
    return Fit(budget, batch, dataclasses.replace(report, batch=batch), context)


def _replayed_fit(report: Network, budget: int, context: int, ceiling: int) -> Fit:
    """largest_batch on CUDA: bisection on B of the replay under the cap, at most `ceiling` (the peak's own bound).
    The cap is a byte under the budget: set_per_process_memory_fraction(budget / total) allows
    (size_t)(fraction * total) bytes, the budget or a byte less as the division rounds (AlexNet with SGD under
    8 GiB reserves the whole cap at 1,132: it answers 1,131)."""
    usable = budget - context - 1
    trials: dict[int, Trial] = {}

    def trains(batch: int) -> bool:
        if batch not in trials:
            trials[batch] = replayed(report, batch, usable)
        return trials[batch].ok

    batch = largest(trains, ceiling)
    if batch == 0:
        at = dataclasses.replace(report, batch=1)
        return Fit(budget, None, at, context, trials.get(1) or replayed(report, 1, usable), needs=_needs(report, 1))
    refused = trials.get(batch + 1) or replayed(report, batch + 1, usable)
    return Fit(budget, batch, dataclasses.replace(report, batch=batch), context, trials[batch], refused)


def largest(trains: Callable[[int], bool], ceiling: int) -> int:
    """The largest B in 1..ceiling with trains(B) and at the batches down to STEADY under it (`_steady`; 0 if none):
    bisection between a batch that trains and one that does not, the first bracket made from the ceiling down.

    >>> largest(lambda b: b <= 400 or 500 <= b <= 505, 1000)   # 500 to 505 train, 401 to 499 do not: luck
    400
    """
    if ceiling < 1:
        return 0
    high = ceiling + 1  # the peak alone is over the cap there
    low = ceiling
    while low >= 1 and not trains(low):
        high, low = low, low // 2  # halve until a batch trains
    while True:
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if trains(middle) else (low, middle)
        if low < 1:
            return 0
        below = next((b for b in _steady(low) if not trains(b)), None)
        if below is None:
            return low
        high, low = below, below // 2  # a batch under the answer does not train: look below it
        while low >= 1 and not trains(low):
            high, low = low, low // 2


def _steady(batch: int, most: int = 24) -> list[int]:
    """The batches under `batch` down to STEADY under it that must train too, from the top: every one where they
    are few, else the 8 just under it and 16 spread over the rest (LeNet-5 at 8 GiB: 140,525; not 2,810 replays)."""
    bottom = max(1, math.floor(batch * (1 - STEADY)))
    if batch - bottom <= most:
        return list(range(batch - 1, bottom - 1, -1))
    spread = {batch - round((batch - bottom) * k / 16) for k in range(1, 17)}
    return sorted(set(range(batch - 8, batch)) | spread, reverse=True)


def _needs(report: Network, batch: int) -> int:
    """The smallest cap (to 2 MiB) under which `batch` trains in the replay: bisection between the peak of its blocks
    and what the allocator reserves with no cap."""
    events = step_events(report, batch)
    free = allocator.trains(events, 2**62)
    low, high = free.allocated, free.reserved  # under the blocks' peak nothing trains; with all it reserves, it does
    while high - low > 2 * 2**20:
        middle = (low + high) // 2
        low, high = (low, middle) if allocator.trains(events, middle).ok else (middle, high)
    return high


def free_sizes(report: Network) -> list[str]:
    """The names other than the batch that the network's shapes and parameters leave free, in order of first use."""
    found: dict[str, None] = {}
    for dims in (report.input, *((*row.output, row.weights, row.biases) for row in report.rows)):
        for dim in dims:
            if not num.is_concrete(dim):
                found.update(dict.fromkeys(sorted(num.free_names(dim) - {"B"})))
    return list(found)


_EXAMPLE = re.compile(r"--set\s+([A-Za-z_]\w{0,63})=(\d{1,12})\b")


def require_sizes(report: Network, text: str = "") -> None:
    """Refuse a network whose sizes other than the batch are free: the largest batch would be a formula in them.
    The message names them and the `--set` that fixes them, with the values the spec's own text gives in an
    example command (`text`: the spec as read), else a placeholder.

    >>> from archcalc import analyze, loads
    >>> text = '[model]\\ninput = ["T"]  # archcalc show --set T=1024\\n[[layers]]\\ntype = "dense"\\nout_features = 2'
    >>> require_sizes(analyze(loads(text)), text)
    Traceback (most recent call last):
    ...
    archcalc.core.errors.SpecError: --budget: T is left free: the largest batch depends on it
      hint: give it with --set T=1024
    """
    free = free_sizes(report)
    if not free:
        return
    examples: dict[str, str] = {}
    for name, value in _EXAMPLE.findall(text):
        examples.setdefault(name, value)
    names = free[0] if len(free) == 1 else f"{', '.join(free[:-1])} and {free[-1]}"
    them = "it" if len(free) == 1 else "them"
    sets = " ".join(f"--set {name}={examples.get(name, 'VALUE')}" for name in free)
    raise SpecError(f"{names} {'is' if len(free) == 1 else 'are'} left free: the largest batch depends on {them}",
                    f"give {them} with {sets}", where="--budget", path=report.path)


@dataclass(frozen=True)
class Solved:
    """The largest value of a size (--solve H: the image side; T: the sequence length) that fits at a batch."""

    name: str
    value: int | None  # None: not even 1 fits
    budget: int
    report: Network | None  # at that value


def largest_size(analyze_at, name: str, budget: int, batch: int, limit: int = 2**20) -> Solved:
    """The largest whole value v of `name` whose step at `batch` fits `budget` (on CUDA: trains under it as a cap,
    replayed through the caching allocator), by doubling then bisection (the peak grows with every size);
    `analyze_at(v)` is the report at v, or raises SpecError where v is too small for the network (such values do
    not fit)."""

    def fits(value: int):
        try:
            report = analyze_at(value)
        except SpecError:
            return None
        if replays(report):
            return report if needed(measure(report), batch) <= budget and replayed(report, batch, budget - 1).ok else None
        return report if needed(measure(report), batch) <= budget else None
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
