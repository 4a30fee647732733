"""Closed choices of a training step: the floating-point types a network is stored and trained in, its optimizer, its device."""

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



class Optimizer(StrEnum):
    """Training optimizers by the state they keep: copies of the parameters."""

    none = "none"
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"

    @property
    def states(self) -> int:
        return {"none": 0, "sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[self.value]


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


# PyTorch Lightning's precision names (docs/design.md section 9): "-true" runs everything in one dtype;
# "-mixed" keeps float32 parameters and runs the step under torch.autocast in AUTOCAST's dtype.
PRECISIONS = {"32-true": "float32", "64-true": "float64", "bf16-true": "bfloat16", "16-true": "float16",
              "bf16-mixed": "float32", "16-mixed": "float32"}
AUTOCAST = {"bf16-mixed": "bfloat16", "16-mixed": "float16"}  # 16-mixed: float16 with a GradScaler


def precision_dtype(precision: str | None, dtype: str | None) -> str | None:
    """The dtype of the parameters a --precision name stands for (`--dtype D` is the alias of D-true)."""
    from .errors import SpecError

    if precision is None:
        return dtype
    if dtype is not None:
        raise SpecError("give --precision or --dtype, not both", "--dtype D is the same as --precision D-true", where="--precision")
    return PRECISIONS[precision]


def precision_name(dtype: str, autocast: str | None) -> str:
    """Lightning's name for parameters in `dtype` and a step under autocast in `autocast` (or none)."""
    if autocast is not None:
        return next(name for name, low in AUTOCAST.items() if low == autocast)
    return next(name for name, d in PRECISIONS.items() if d == dtype and name not in AUTOCAST)


def precision_autocast(precision: str | None) -> str | None:
    """The dtype autocast computes in under a --precision name (None: no autocast)."""
    return AUTOCAST.get(precision or "")
