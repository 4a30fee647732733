"""Reductions over axes of one sample: `mean` (x.mean(dims): global average pooling as ConvNeXt, EfficientNet's
timm heads and segmentation's pooling branches write it, `x.mean((2, 3))`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, flag
from ..core.num import Shape
from .base import Inexpressible, Layer, register, torch_argument
from .receptive_field import Field
from .shape import from_torch_axis, sample_axis, torch_axis


@register
@dataclass(frozen=True, kw_only=True)
class Mean(Layer):
    """The mean over `dims`, axes of one sample (torch's less one: x.mean((2, 3)) on [B, C, H, W] is dims = [1, 2]);
    `keepdim` leaves them as axes of size 1. FlopCounterMode counts none; autograd keeps nothing (its backward
    needs only the input's shape), as global average pooling."""

    kind = "mean"
    asks_shape = True
    colour = "#e8796b"
    torch_functions = ("mean",)
    dims: tuple = axis(many=True)
    keepdim: bool = flag(False)

    def output(self, x: Shape) -> Shape:
        axes = self.axes(x)
        if self.keepdim:
            return tuple(1 if i in axes else d for i, d in enumerate(x))
        if len(axes) == len(x):
            raise SpecError(f"dims = {list(self.dims)} reduces every axis of a sample {fmt.shape(x)}: nothing would be left "
                            "but the batch axis", "keep one axis, or keepdim = true", "dims")
        return tuple(d for i, d in enumerate(x) if i not in axes)

    def axes(self, x: Shape) -> tuple[int, ...]:
        """The reduced axes, as indices into x."""
        axes = tuple(sample_axis(d, x, "dims") for d in self.dims)
        if len(set(axes)) != len(axes):
            raise SpecError(f"dims = {list(self.dims)} names an axis twice", "give each axis once", "dims")
        return tuple(sorted(axes))

    def summary(self, x: Shape) -> str:
        return "over axes " + ", ".join(map(str, self.axes(x))) + (", keepdim" if self.keepdim else "")

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        axes = self.axes(x)
        counted = num.mul(x[i] for i in axes)
        return [("output", f"the mean of {fmt.product([x[i] for i in axes])} = {fmt.group(counted)} values for each of "
                           f"{fmt.shape(self.output(x))} outputs" + (" (the axes kept, of size 1)" if self.keepdim else
                                                                     " (the axes removed)")),
                ("macs", "MACs = 0: a sum and a division, not counted (no matrix product); nothing kept for backward")]

    def receptive(self, x: Shape, field: Field) -> Field | None:
        axes = self.axes(x)
        if 0 in axes and len(axes) == 1:
            return field  # over the channels only: each position still sees what it saw
        if set(range(1, len(x))) <= set(axes):
            return field.gathered(x[1:])  # every spatial axis: global pooling
        return None

    def to_torch(self, x: Shape, nn):
        return nn.Mean(tuple(torch_axis(d) for d in self.axes(x)), self.keepdim)

    @classmethod
    def torch_value(cls, field: str, value):
        if field == "dims":
            return [from_torch_axis(d) for d in ([value] if isinstance(value, int) else value)]
        return value

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """x.mean((2, 3)), x.mean(dim=-1, keepdim=True), torch.mean(x, [2, 3]), aten.mean.dim(x, [2, 3], True)."""
        dims = torch_argument(args, kwargs, 1, "dim")
        if dims is None or dims == []:
            raise Inexpressible("over every axis: archcalc keeps the batch axis (give the dims of a sample)")
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            raise Inexpressible(f"over dims {dims}: archcalc reads axes given as numbers")
        if 0 in dims:
            raise Inexpressible("over the batch axis: archcalc reduces a sample's axes")
        if torch_argument(args, kwargs, 3, "dtype") is not None:
            raise Inexpressible("with a dtype: archcalc's layers compute in the model's one dtype")
        return {"dims": [from_torch_axis(d) for d in dims]} | ({"keepdim": True} if torch_argument(args, kwargs, 2, "keepdim") else {})
