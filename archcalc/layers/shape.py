"""Layers that only rearrange values: flatten (torch.flatten(x, 1)) and reshape (view)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import fmt, num
from ..errors import SpecError
from ..fields import sizes
from ..num import Shape
from .base import Layer, ints, register


@register
@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    kind = "flatten"
    torch_modules = ("Flatten",)

    def output(self, x: Shape) -> Shape:
        return (num.mul(x),)

    def is_view(self) -> bool:
        return True

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"features = {fmt.product(x)} = {fmt.group(num.mul(x))}")]

    def to_torch(self, x: Shape, nn):
        return nn.Flatten()


@register
@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    kind = "reshape"
    shape: tuple = sizes(wildcard=True)  # one sample's new shape; one -1 is inferred

    def output(self, x: Shape) -> Shape:
        total, known = num.mul(x), num.mul(d for d in self.shape if d != -1)
        if -1 in self.shape:
            inferred = num.div(total, known)
            if num.is_integer(inferred) is False:
                raise SpecError(f"cannot infer -1: {fmt.group(total)} values do not divide by {fmt.group(known)}", None, "shape")
            return tuple(inferred if d == -1 else d for d in self.shape)
        if num.is_concrete(total - known) and total != known:
            raise SpecError(
                f"shape {fmt.shape(self.shape)} holds {fmt.group(known)} values, the input {fmt.shape(x)} holds {fmt.group(total)}",
                "the product of the sizes must stay the same (one size may be -1)",
                "shape",
            )
        return self.shape

    def is_view(self) -> bool:
        return True

    def summary(self, x: Shape) -> str:
        return "→ " + fmt.shape(self.output(x))

    def to_torch(self, x: Shape, nn):
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, ints(self.output(x)))) if len(x) > 1 else nn.Unflatten(1, ints(self.output(x)))
