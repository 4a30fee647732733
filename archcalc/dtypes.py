"""Floating-point types a network can be stored and trained in."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float64 = "float64"

    @property
    def bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[self.value]


# PyTorch Lightning's precision names (DESIGN.md section 9): "-true" runs everything in one dtype.
PRECISIONS = {"32-true": "float32", "64-true": "float64", "bf16-true": "bfloat16", "16-true": "float16",
              "bf16-mixed": None, "16-mixed": None}


def precision_dtype(precision: str | None, dtype: str | None) -> str | None:
    """The dtype a --precision name stands for (`--dtype D` is the alias of D-true); mixed precision is refused."""
    from .errors import SpecError

    if precision is None:
        return dtype
    if dtype is not None:
        raise SpecError("give --precision or --dtype, not both", "--dtype D is the same as --precision D-true", where="--precision")
    if PRECISIONS[precision] is None:
        raise SpecError(f"{precision} (autocast: float32 parameters, low-precision matmuls) is not modelled yet",
                        "use bf16-true or 16-true for everything in one dtype", where="--precision")
    return PRECISIONS[precision]
