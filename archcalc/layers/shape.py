"""Layers that only rearrange values: flatten (torch.flatten(x, 1)), reshape and permute (views)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, sizes
from ..core.num import Shape
from . import layout
from .base import Inexpressible, Layer, TorchSize, TorchTensor, ints, register, torch_argument
from .receptive_field import Field


def sample_axis(dim: int, x: Shape, field: str) -> int:
    """An axis of one sample, numbered as concat's dim (0: the first axis, the channels or tokens;
    negative: from the end), as an index into x. PyTorch's numbers are these plus one (its 0 is the batch)."""
    if not -len(x) <= dim < len(x):
        raise SpecError(f"{field} = {dim} is not an axis of one sample {fmt.shape(x)}",
                        f"axes of one sample count from 0 (the first, after the batch axis) to {len(x) - 1}, "
                        "or from -1 (the last) back", field)
    return dim % len(x)


def torch_axis(dim: int) -> int:
    """A sample axis as PyTorch numbers it, with the batch axis 0 in front."""
    return dim + 1 if dim >= 0 else dim


def from_torch_axis(dim: int) -> int:
    return dim - 1 if dim > 0 else dim


VIEWS = ("view", "reshape", "_unsafe_view")  # x.view, x.reshape, torch.reshape; aten's view after a copy


def view_shape(args: tuple, kwargs: dict) -> list:
    """The sizes of x.view(...) / x.reshape(...) / torch.reshape(x, ...): the batch axis read as x.size(0) first."""
    shape = list(args[1:]) or list(kwargs.get("shape", ()))
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = list(shape[0])
    if not shape or not (isinstance(shape[0], TorchSize) and shape[0].batch):
        raise Inexpressible("to sizes other than x.size(0) and numbers: archcalc reshapes a sample to a fixed shape, "
                            "the batch axis kept")
    return shape[1:]


@register
@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Merges the axes start_dim..end_dim into one (torch.nn.Flatten: by default all but the batch axis)."""

    kind = "flatten"
    asks_shape = True
    colour = "#c9c9c9"
    torch_functions = ("flatten", *VIEWS)
    torch_modules = ("Flatten",)
    start_dim: int = axis(0)  # axes of one sample, as concat's dim: torch's start_dim − 1
    end_dim: int = axis(-1)

    def output(self, x: Shape) -> Shape:
        start, end = self.span(x)
        return (*x[:start], num.mul(x[start:end + 1]), *x[end + 1:])

    def span(self, x: Shape) -> tuple[int, int]:
        start, end = sample_axis(self.start_dim, x, "start_dim"), sample_axis(self.end_dim, x, "end_dim")
        if start > end:
            raise SpecError(f"start_dim = {self.start_dim} comes after end_dim = {self.end_dim}",
                            "flatten merges the axes from start_dim to end_dim", "start_dim")
        return start, end

    def summary(self, x: Shape) -> str:
        return "" if self.span(x) == (0, len(x) - 1) else f"axes {self.start_dim}..{self.end_dim}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        start, end = self.span(x)
        merged = x[start:end + 1]
        if (start, end) == (0, len(x) - 1):
            return [("output", f"features = {fmt.product(x)} = {fmt.group(num.mul(x))}")]
        return [("output", f"axes {self.start_dim} to {self.end_dim} of a sample merged: "
                           f"{fmt.product(merged)} = {fmt.group(num.mul(merged))}")]

    def receptive(self, x: Shape, field: Field) -> Field:
        return field.gathered(x[1:])

    def to_torch(self, x: Shape, nn):
        return nn.Flatten(torch_axis(self.start_dim), torch_axis(self.end_dim))

    @classmethod
    def torch_value(cls, field: str, value):
        return from_torch_axis(value)

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        if name in VIEWS:  # x.view(x.size(0), -1)
            if view_shape(args, kwargs) != [-1]:
                raise Inexpressible("to sizes other than (x.size(0), -1): not a flatten")
            return {}
        start, end = torch_argument(args, kwargs, 1, "start_dim", 0), torch_argument(args, kwargs, 2, "end_dim", -1)
        if start == 0:
            raise Inexpressible("from dim 0: archcalc keeps the batch axis (start_dim = 1 or more)")
        return ({"start_dim": start - 1} if start != 1 else {}) | ({"end_dim": from_torch_axis(end)} if end != -1 else {})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True

    def view(self, x: Shape, y: Shape, strides):
        return layout.view(x, strides, y)


@register
@dataclass(frozen=True, kw_only=True)
class Permute(Layer):
    """Reorders a sample's axes (Tensor.permute without the batch axis: dims = [1, 0] is x.permute(0, 2, 1)): a view."""

    kind = "permute"
    torch_functions = ("permute", "transpose", "swapaxes", "swapdims")
    dims: tuple = axis(many=True)

    def output(self, x: Shape) -> Shape:
        return tuple(x[i] for i in self.order(x))

    def order(self, x: Shape) -> tuple[int, ...]:
        """The input axes the output's axes come from, each as an index into x."""
        if len(self.dims) != len(x):
            raise SpecError(f"dims gives {len(self.dims)} axes, a sample {fmt.shape(x)} has {len(x)}",
                            "give every axis of one sample once: dims = [1, 0] swaps the two axes of [T, d]", "dims")
        order = tuple(d % len(x) if -len(x) <= d < len(x) else None for d in self.dims)
        if None in order or sorted(order) != list(range(len(x))):
            raise SpecError(f"dims = {list(self.dims)} is not an order of a sample's axes 0 to {len(x) - 1}",
                            "give every axis once (negative numbers count from the end)", "dims")
        return order

    def summary(self, x: Shape) -> str:
        return "dims " + ", ".join(map(str, self.dims))

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"axes reordered: axis i of the output is axis dims[i] of the input: "
                           f"{fmt.shape(x)} → {fmt.shape(self.output(x))}; a view, no copy (a later reshape or dense copies it)")]

    def to_torch(self, x: Shape, nn):
        return _module(nn)((0, *(i + 1 for i in self.order(x))))

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        if name in ("transpose", "swapaxes", "swapdims"):  # x.transpose(a, b): both axes of a sample
            rank = args[0].rank if isinstance(args[0], TorchTensor) else None
            a, b = args[1], args[2]
            if (a < 0 or b < 0) and rank is None:
                raise Inexpressible(f"({a}, {b}): negative axes of a tensor of unknown rank")
            rank = rank if rank is not None else max(a, b) + 1
            a, b = a % rank, b % rank
            if 0 in (a, b):
                raise Inexpressible(f"({a}, {b}): archcalc permutes a sample's axes, the batch axis 0 stays first")
            dims = list(range(rank))
            dims[a], dims[b] = dims[b], dims[a]
        else:
            dims = list(args[1:]) or list(kwargs.get("dims", ()))
            if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
                dims = list(dims[0])
        if not dims or dims[0] != 0 or not all(isinstance(d, int) for d in dims):
            raise Inexpressible(f"{tuple(dims)}: archcalc permutes a sample's axes, the batch axis 0 first")
        return {"dims": [from_torch_axis(d) for d in dims[1:]]}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True

    def view(self, x: Shape, y: Shape, strides):
        return layout.permuted(x, strides, self.order(x))


_MODULES: dict = {}


def _module(nn):
    """nn.Module that permutes (torch has no nn.Permute); `source` is the call export writes."""
    if nn not in _MODULES:
        class Permute(nn.Module):
            def __init__(self, dims):
                super().__init__()
                self.dims = tuple(dims)
                self.source = f"x.permute({', '.join(map(str, self.dims))})"

            def forward(self, x):
                return x.permute(*self.dims)

        _MODULES[nn] = Permute
    return _MODULES[nn]


@register
@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    kind = "reshape"
    torch_functions = VIEWS
    asks_shape = True
    colour = "#c9c9c9"
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

    def summary(self, x: Shape) -> str:
        return "→ " + fmt.shape(self.output(x))

    def receptive(self, x: Shape, field: Field) -> Field:
        return field.gathered(x[1:])  # the values move to other places: as for flatten, each sees the whole map

    def to_torch(self, x: Shape, nn):
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, ints(self.output(x)))) if len(x) > 1 else nn.Unflatten(1, ints(self.output(x)))

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        rest = view_shape(args, kwargs)
        if not all(isinstance(d, int) for d in rest):
            raise Inexpressible("to sizes other than x.size(0) and numbers: archcalc reshapes a sample to a fixed shape, "
                                "the batch axis kept")
        return {"shape": rest}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True

    def view(self, x: Shape, y: Shape, strides):
        return layout.view(x, strides, y)


@register
@dataclass(frozen=True, kw_only=True)
class Identity(Layer):
    """Its input, unchanged (torch.nn.Identity: the placeholder torchvision and timm leave where a part is turned off)."""

    kind = "identity"
    joins_box_before = True
    torch_modules = ("Identity",)

    def output(self, x: Shape) -> Shape:
        return x

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", "the input itself: nn.Identity returns its argument (no op, no copy, nothing kept)")]

    def receptive(self, x: Shape, field: Field) -> Field:
        return field

    def to_torch(self, x: Shape, nn):
        return nn.Identity()

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True  # the very tensor: its gradient passes back as it is
