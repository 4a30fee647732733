"""A byte count for a batch of B: fixed + per_sample·B, exact, and a formula in B until B is given."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import arguments, num
from ..core.num import Dim, Value


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
        batch = arguments.batch(batch, "at")
        if batch is not None:
            return num.normal(self.fixed + self.per_sample * batch)
        if self.per_sample == 0:
            return self.fixed
        if num.is_concrete(self.fixed) and num.is_concrete(self.per_sample):
            return self
        return num.normal(self.fixed + self.per_sample * num.symbol("B"))

    def to_json(self, batch: Value | None) -> int | float | str:
        """The bytes at `batch` (a formula in B without one) as JSON writes them."""
        return num.to_json(self.at(batch))

    def __str__(self) -> str:
        """As sympy's str() writes fixed + per_sample*B, without importing sympy."""
        if not (num.is_concrete(self.fixed) and num.is_concrete(self.per_sample)):
            return str(self.at(None))
        if self.per_sample == 0:
            return str(self.fixed)
        slope = "B" if self.per_sample == 1 else f"{self.per_sample}*B"
        return f"{slope} + {self.fixed}" if self.fixed else slope


ZERO = PerBatch()
