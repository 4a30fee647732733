"""The step's peaks as byte counts: the timeline (archcalc/memory/timeline/) simulated once per batch, and
each phase's peak read from it, a formula in B (the largest of affine pieces) until B is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import arguments, num
from ..core.num import Dim, Value
from . import timeline
from .perbatch import PerBatch

if TYPE_CHECKING:
    from ..analysis.network import Network


class Timelines:
    """The step's timeline (archcalc/memory/timeline/) at a batch, each batch simulated once."""

    def __init__(self, report: Network):
        self.report = report
        self.cache: dict = {}
        self.formulas: dict = {}  # (phase, B or a formula for it) -> the peak's formula, made once (StepBytes.at)
        self.lines: dict = {}  # (fixed, per_sample, B) -> fixed + per_sample·B, made once (StepBytes._lines)

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
        batch = arguments.batch(batch, "at")
        if batch is not None and num.is_concrete(batch):
            line = self.timelines(batch)
            return line.peak(batch) if self.phase == "step" else self._peak(line).at(batch)
        found = self.timelines.formulas.get((self.phase, batch))
        if found is None:  # a deep network's peak is a Max of a thousand formulas: made once, not per JSON key
            found = num.maximum(*self._lines(batch))
            self.timelines.formulas[(self.phase, batch)] = found
        return found

    def to_json(self, batch: Value | None) -> int | float | str:
        """The bytes at `batch` as JSON writes them: with B a symbol, the text of `at`'s Max without making it."""
        if batch is not None and num.is_concrete(batch):
            return num.to_json(self.at(batch))
        key = ("json", self.phase, batch)
        found = self.timelines.formulas.get(key)
        if found is None:
            found = num.maximum_json(*self._lines(batch))
            self.timelines.formulas[key] = found
        return found

    def _lines(self, batch: Value | None) -> list:
        """fixed_i + per_sample_i·B for each piece of this peak, with B a symbol (or a formula for it), each made once
        for all the peaks (a phase's pieces are the step's too)."""
        b = num.symbol("B") if batch is None else batch
        made = self.timelines.lines
        out = []
        for f, p in self.pairs_of(self.timelines(None)):
            line = made.get((f, p, b))
            if line is None:
                line = made[(f, p, b)] = num.normal(f + p * b)
            out.append(line)
        return out

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
