"""Layers that keep the shape: dropout and element-wise activation functions."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .. import fmt, num
from ..fields import choice, real
from ..num import Shape, Value
from .base import ACTIVATIONS, Kept, Layer, register, torch_activation


@register
@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    """Zeroes each value with probability p at training time and scales the rest by 1/(1 − p)."""

    kind = "dropout"
    torch_modules = ("Dropout",)
    p: Value = real(Fraction(1, 2), low=0, high=1)

    def output(self, x: Shape) -> Shape:
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        # On CPU torch keeps the scaled mask in the input's dtype; on CUDA, native_dropout keeps a bool mask.
        return (Kept("own", num.mul(x), "mask", what="dropout mask"),) if grad and self.p != 0 else ()

    def is_view(self) -> bool:
        return self.p == 0  # nn.Dropout(p=0) returns its input itself

    def is_view_in_eval(self) -> bool:
        return True  # in eval, nn.Dropout returns its input

    def summary(self, x: Shape) -> str:
        return f"p={fmt.group(self.p)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"same shape: dropped values become 0 and the others are scaled by 1/(1 − {fmt.group(self.p)}) in training")]

    def to_torch(self, x: Shape, nn):
        return nn.Dropout(p=float(self.p))


@register
@dataclass(frozen=True, kw_only=True)
class Activation(Layer):
    kind = "activation"
    torch_modules = tuple(f.torch for f in ACTIVATIONS.values())
    function: str = choice(*ACTIVATIONS)

    def output(self, x: Shape) -> Shape:
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        return (Kept(ACTIVATIONS[self.function].saves, num.mul(x), what=f"{self.function} {ACTIVATIONS[self.function].saves}"),)

    def summary(self, x: Shape) -> str:
        return self.function

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"function": next(name for name, f in ACTIVATIONS.items() if f.torch == torch_name)}

    def to_torch(self, x: Shape, nn):
        return torch_activation(self.function, nn)
