"""Memory budgets: the largest batch (or size) whose training step fits, and the bytes a batch needs.

The step's peak is the largest of affine functions of B (closed.py's StepBytes.pieces), so the largest
batch under a budget is a least of floors, a formula while other sizes are free; `require_sizes`
refuses those up front, for a command line that must answer with a number.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ..core import num
from ..core.dtypes import Device
from ..core.errors import SpecError
from ..core.num import Value
from . import timeline
from .closed import Memory, measure

if TYPE_CHECKING:
    from ..analysis.network import Network

# Under a memory cap the caching allocator needs room beyond the bytes allocated at the peak (blocks
# cached for one size cannot serve another): on CUDA `--budget` counts each per-sample byte 4/3 times.
# Fitted on ../shared/measurements/h200-largest-batch.json: AlexNet with Adam at 4 GiB trains 466 and
# with SGD at 8 GiB 1,156; any factor in [1.296, 1.364] answers at most those and within 5% of them.
CUDA_HEADROOM = Fraction(4, 3)


def headroom(device: Device | str) -> Fraction:
    """How many times a budget counts each per-sample byte on `device` (CUDA_HEADROOM on CUDA, else once)."""
    return CUDA_HEADROOM if str(device) == "cuda" else Fraction(1)


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
    factor = headroom(report.device)
    context = timeline.CUDA_CONTEXT if cuda and card else 0
    usable = budget - context
    memory = measure(report)
    pieces = memory.training.pieces
    if all(num.is_concrete(p.per_sample) and p.per_sample == 0 for p in pieces):
        raise SpecError("the training memory does not grow with the batch: every batch fits or none does", where="--budget")
    bounds = [num.floordiv(usable - p.fixed, num.normal(factor * p.per_sample)) for p in pieces
              if not (num.is_concrete(p.per_sample) and p.per_sample == 0)]
    fixed_only = [p.fixed for p in pieces if num.is_concrete(p.per_sample) and p.per_sample == 0]
    batch = num.minimum(*bounds, evaluate=False)  # sympy would compare every pair of bounds, for minutes
    if num.is_concrete(batch):
        # at a concrete batch the simulation rounds every block up (CUDA): step down until it fits
        while batch >= 1 and needed(memory, batch, factor) > usable:
            batch -= 1
    if num.is_concrete(batch) and (batch < 1 or any(num.is_concrete(f) and f > usable for f in fixed_only)):
        return Fit(budget, None, dataclasses.replace(report, batch=1), factor, context)
    return Fit(budget, batch, dataclasses.replace(report, batch=batch), factor, context)


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
