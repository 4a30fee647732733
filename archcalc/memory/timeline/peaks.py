"""What a timeline gives: each phase's peak, the largest of affine functions of the batch B."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import num
from ...core.num import Value

PHASES = ("forward", "backward", "optimizer")

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
    """A training step's peaks, phase by phase, and the peak of one forward pass in inference."""

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
        hull(cands)
        return [pair for pair, _ in cands]


def hull(cands: list) -> None:
    """Keep the lines that are the highest somewhere in B >= 1 (the upper envelope), where all are numbers."""
    if len(cands) < 3 or not all(num.is_concrete(v) for (pair, _) in cands for v in pair):
        return
    lines = sorted(cands, key=lambda c: (c[0][1], c[0][0]))  # by slope
    envelope: list = []
    for c in lines:
        f, p = c[0]
        while envelope and envelope[-1][0][1] == p:
            envelope.pop()  # same slope: the later one is at least as high
        while len(envelope) >= 2:
            (f1, p1), (f2, p2) = envelope[-2][0], envelope[-1][0]
            # the middle line is never the highest if the outer two cross at or before it rises above them
            if (f1 - f) * (p2 - p1) <= (f1 - f2) * (p - p1):
                envelope.pop()
            else:
                break
        envelope.append(c)
    while len(envelope) >= 2 and envelope[0][0][0] + envelope[0][0][1] <= envelope[1][0][0] + envelope[1][0][1]:
        envelope.pop(0)  # below the next one from B = 1 on
    cands[:] = envelope
