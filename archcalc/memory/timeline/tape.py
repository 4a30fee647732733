"""The tape: the storages alive, their running total by kind, and each phase's candidate peaks."""

from __future__ import annotations

import functools
from fractions import Fraction

from ...core import num, tally
from ...core.num import Dim, Value
from ...core.tally import Tally
from ..allocator import BLOCK
from .peaks import Pair, Peak, hull

# What is alive, by kind: the breakdown printed at each phase's peak.
KINDS = ("parameters", "buffers", "batch", "optimizer state", "gradients", "activations",
         "activation gradients", "temporaries", "workspace", "weight copies", "block slack", "kv cache",
         "gathered parameters", "communication buffers")  # the last two: a data-parallel rank's (ranks.py)
NUMBER = (int, Fraction)  # what num.is_concrete accepts
CUDA_BLOCK = BLOCK  # the caching allocator rounds every block up to 512 bytes (and more: archcalc/memory/allocator.py)


class Allocation:
    """One storage on the tape: its bytes (fixed, per sample), its kind, and how many hold it (freed at 0)."""

    __slots__ = ("kind", "refs", "size")

    def __init__(self, size: Pair, kind: str):
        self.size, self.kind, self.refs = size, kind, 0


class Tape:
    """Live storages, their running total, and each phase's candidate peaks.

    `events` (CUDA at a concrete batch, for the allocator's replay: archcalc/memory/allocator.py): ("+", allocation),
    ("-", allocation), ("mark", None), ("phase", name), in order."""

    def __init__(self, batch: Value | None, cuda: bool):
        self.batch = batch
        self.cuda = cuda and batch is not None and num.is_concrete(batch)
        self.workspaces = cuda  # cuDNN's, concrete batch or not
        self.total = (Tally(), Tally())  # sums in dicts: sympy's `+` of formulas is slow (archcalc/core/tally.py)
        self.kinds = {kind: (Tally(), Tally()) for kind in KINDS}
        self.phase = ""
        self.candidates: dict[str, list] = {}
        self.events: list | None = [] if self.cuda else None

    def size(self, fixed: Dim, per_sample: Dim) -> Pair:
        """A tensor's size: `fixed` bytes and `per_sample` bytes per sample (at a concrete batch, one number)."""
        if self.batch is not None:  # concrete batch: one number
            fixed, per_sample = fixed + per_sample * self.batch, 0
            if self.cuda and num.is_concrete(fixed):
                fixed = -(-fixed // CUDA_BLOCK) * CUDA_BLOCK
            elif self.cuda:  # a formula in another size (H, T): no blocks to round, no allocator to replay
                self.events = None
        return (fixed, per_sample)

    def new(self, size: Pair, kind: str, refs: int = 1, mark: bool = True) -> Allocation:
        s = Allocation(size, kind)
        s.refs = refs
        self._add(size, self.kinds[kind], 1)
        if self.events is not None:
            self.events.append(("+", s))
        if mark:
            self.mark()
        return s

    def release(self, s: Allocation | None, n: int = 1) -> None:
        if s is None:
            return
        s.refs -= n
        if s.refs == 0:
            self._add(s.size, self.kinds[s.kind], -1)
            if self.events is not None:
                self.events.append(("-", s))

    def transient(self, size: Pair, kind: str) -> None:
        """A tensor made and freed at once: it counts at its moment only."""
        self.release(self.new(size, kind))

    def _add(self, size: Pair, kind: tuple[Tally, Tally], sign: int) -> None:
        """`size` into the running totals, of all and of its kind (an int 0, every size's per_sample at a concrete
        batch, adds nothing: skipped before the call, a step counts a thousand sizes)."""
        fixed, per_sample = size
        if fixed.__class__ is not int or fixed:
            self.total[0].add(fixed, sign)
            kind[0].add(fixed, sign)
        if per_sample.__class__ is not int or per_sample:
            self.total[1].add(per_sample, sign)
            kind[1].add(per_sample, sign)

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
        if isinstance(f, NUMBER) and isinstance(p, NUMBER):  # num.is_concrete, inlined: a step marks thousands of times
            # B >= 1: a line at least as high at B = 1 and at least as steep is at least as high everywhere
            line = f + p
            for (cf, cp), _ in cands:
                if isinstance(cf, NUMBER) and isinstance(cp, NUMBER) and cf + cp >= line and cp >= p:
                    return
            cands[:] = [c for c in cands if not (isinstance(c[0][0], NUMBER) and isinstance(c[0][1], NUMBER)
                                                 and c[0][0] + c[0][1] <= line and c[0][1] <= p)]
        elif any(c[0] == (f, p) for c in cands):
            return
        cands.append(((f, p), tuple((kind, (v[0].key(), v[1].key())) for kind, v in self.kinds.items())))

    def peak(self, phase: str) -> Peak:
        hull(self.candidates[phase])
        value = functools.cache(tally.value)  # each distinct sum made a formula once
        if self.batch is None:  # with B a symbol, the breakdown by kind is read at no batch: made on first use
            return Peak(tuple(((value(f), value(p)), LazyKinds(kinds, value)) for (f, p), kinds in self.candidates[phase]))
        return Peak(tuple(((value(f), value(p)), tuple((k, (value(a), value(b))) for k, (a, b) in kinds))
                          for (f, p), kinds in self.candidates[phase]))


class LazyKinds:
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
