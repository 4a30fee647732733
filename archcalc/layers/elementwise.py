"""Layers that keep the shape: dropout and element-wise activation functions."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .. import fmt
from ..fields import choice, real
from ..num import Shape, Value
from .base import ACTIVATIONS, Layer, register, torch_activation


@register
@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    """Zeroes each value with probability p at training time and scales the rest by 1/(1 − p)."""

    kind = "dropout"
    p: Value = real(Fraction(1, 2), low=0, high=1)

    def output(self, x: Shape) -> Shape:
        return x

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
    function: str = choice(*ACTIVATIONS)

    def output(self, x: Shape) -> Shape:
        return x

    def summary(self, x: Shape) -> str:
        return self.function

    def to_torch(self, x: Shape, nn):
        return torch_activation(self.function, nn)
