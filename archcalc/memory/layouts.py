"""Which layout fits: over N GPUs of a given memory, the layouts (strategy, tp, dp) whose step fits, and the largest
batch per GPU of each, best first.

Written against one interface, so that any strategy with a per-rank model plugs in: a function from a layout and a
batch per GPU to one rank's peak (`RankPeak`); `largest` finds the largest batch whose peak fits by doubling then
bisection (the peak grows with the batch). The command line answers each layout as `memory --budget --strategy S`
does (archcalc/memory/budget.py: on CUDA the step replayed through the caching allocator), through the same
`Choice` list. The candidates: each data-parallel strategy over every GPU (tp 1), and tensor parallelism with
every size from 2 that divides the world (the groups data parallel); one whose shards do not divide evenly
(GPT-2's 12 heads over 8) or that the network cannot take is left out, said why.

Best first: the most samples a step trains over all GPUs (batch per GPU × dp: tensor-parallel ranks share their
samples), then the fewer tensor-parallel ranks (less to all-reduce per sample).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..core.errors import SpecError
from ..core.num import Value
from ..core.parallel import Layout, Strategy

RankPeak = Callable[[Layout, int], Value]  # (layout, batch per GPU) -> one rank's peak bytes


@dataclass(frozen=True)
class Choice:
    """A layout and the largest batch per GPU its step fits (None: not even 1; `refused`: why the layout cannot be)."""

    layout: Layout
    batch: int | None
    peak: Value | None = None  # one rank's peak at that batch: the bytes its tensors take (allocated)
    refused: str | None = None
    reserved: int | None = None  # CUDA: the most the caching allocator reserves at that batch (its replay, which set it)

    @property
    def samples(self) -> int:
        """Samples per step over all GPUs: the batch per GPU times the data-parallel groups."""
        return 0 if self.batch is None else self.batch * self.layout.dp

    def to_dict(self) -> dict:
        return self.layout.to_dict() | {"batch_per_gpu": self.batch, "samples_per_step": self.samples or None,
                                        "peak_bytes": self.peak, "reserved_bytes": self.reserved,
                                        **({"refused": self.refused} if self.refused else {})}


def candidates(gpus: int, strategies: Iterable[Strategy] = tuple(Strategy)) -> list[Layout]:
    """The layouts of `gpus` GPUs under `strategies`: tp with every size from 2 that divides the world, the others
    with tp 1 (data parallelism alone).

    >>> [(str(c.strategy), c.tp) for c in candidates(4, ("ddp", "tp"))]
    [('ddp', 1), ('tp', 2), ('tp', 4)]
    """
    out = []
    for strategy in map(Strategy, strategies):
        sizes = [k for k in range(2, gpus + 1) if gpus % k == 0] if strategy == Strategy.tp else [1]
        out += [Layout(gpus=gpus, strategy=strategy, tp=k) for k in sizes]
    return out


def largest(fits: Callable[[int], bool], ceiling: int = 2**24) -> int:
    """The largest batch in 1..ceiling with fits(batch), fits growing no easier with the batch (0 if none).

    >>> largest(lambda b: 1000 + 24 * b <= 25_000)
    1000
    """
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= ceiling and fits(high):
        low, high = high, high * 2
    high = min(high, ceiling + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def from_peak(peak: RankPeak, budget: int) -> Callable[[Layout], Choice]:
    """The answer for a layout from its per-rank peak alone: the largest batch whose peak is within `budget`."""
    def answer(layout: Layout) -> Choice:
        batch = largest(lambda b: peak(layout, b) <= budget)
        return Choice(layout, batch or None, peak(layout, batch) if batch else None)
    return answer


def choose(layouts: Iterable[Layout], answer: Callable[[Layout], Choice]) -> list[Choice]:
    """Each layout's answer, best first (see the module); a layout whose shards do not divide refused, last."""
    made = []
    for layout in layouts:
        try:
            made.append(answer(layout))
        except SpecError as error:  # an uneven split (heads over tp), or a strategy not modelled for this network
            made.append(Choice(layout, None, refused=error.problem))
    return sorted(made, key=lambda c: (c.refused is not None, -c.samples, c.layout.tp, str(c.layout.strategy)))
