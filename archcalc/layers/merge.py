"""Layers that read several tensors (`from = ["a", "b"]`): add, mul (PyTorch's broadcasting) and concat.

Their `x` is the tuple of their inputs' shapes, and `grad` in `keeps` one flag per input
(whether that input requires grad). None of them does a multiply-accumulate that
FlopCounterMode counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import size
from ..core.num import Dim, Shape
from .base import Inexpressible, Kept, Layer, TorchTensor, activation_field, activation_keeps, register, torch_argument, with_activation
from .receptive_field import Field


def same(a: Dim, b: Dim) -> bool:
    """Whether two sizes are provably equal (formulas compared after simplification)."""
    if num.is_concrete(a) and num.is_concrete(b):
        return a == b
    return num.normal(a - b) == 0


def shapes_text(xs: tuple[Shape, ...]) -> str:
    return " and ".join(fmt.shape(x) for x in xs)


def _same_rank(xs: tuple[Shape, ...], kind: str, least: int = 2) -> None:
    if len(xs) < least:
        raise SpecError(f"{kind} needs at least {'two inputs' if least == 2 else 'one input'}, got {len(xs)}", 'write from = ["a", "b"]', "from")
    if len({len(x) for x in xs}) > 1:
        raise SpecError(
            f"cannot {kind} {shapes_text(xs)}: they have {' and '.join(str(len(x)) for x in xs)} axes",
            "with the batch axis in front, PyTorch broadcasts only shapes of as many axes: use reshape to add axes of size 1",
            "from",
        )


def broadcast(xs: tuple[Shape, ...], kind: str) -> Shape:
    """PyTorch's broadcasting of one-sample shapes (the batch axis leads, so the ranks must agree)."""
    _same_rank(xs, kind)
    out = []
    for axis, sizes in enumerate(zip(*xs)):
        wide = [d for d in sizes if not (num.is_concrete(d) and d == 1)]
        size_ = wide[0] if wide else 1
        for d in wide[1:]:
            if not same(d, size_):
                proof = "" if num.is_concrete(d) and num.is_concrete(size_) else " (they cannot be proved equal)"
                raise SpecError(
                    f"cannot {kind} {shapes_text(xs)}: axis {axis} is {fmt.group(size_)} in one and {fmt.group(d)} in another{proof}",
                    "broadcasting needs each axis equal, or 1 in all but one input",
                    "from",
                )
        out.append(size_)
    return tuple(out)


def _tensor_pair(args: tuple) -> dict:
    """x + y, x * y: both tensors (x + 1, x * 0.5 are no merge)."""
    if len(args) < 2 or not isinstance(args[1], TorchTensor):
        raise Inexpressible("with a constant")
    return {}


@dataclass(frozen=True, kw_only=True)
class Merge(Layer):
    merges: ClassVar[bool] = True
    colour: ClassVar[str] = "#ffffff"
    activation: str | None = activation_field()

    def keeps(self, x: tuple[Shape, ...], y: Shape, grad: tuple[bool, ...]) -> tuple[Kept, ...]:
        return activation_keeps(self.activation, y) if any(grad) else ()

    def summary(self, x) -> str:
        return with_activation("", self.activation)

    def receptive(self, x: tuple[Shape, ...], field: Field) -> Field:
        return field  # element-wise over its inputs: the engine already took the worst path (field.merge)


@register
@dataclass(frozen=True, kw_only=True)
class Add(Merge):
    """The element-wise sum (a residual connection); autograd keeps nothing for it."""

    kind = "add"
    torch_functions = ("add", "add_", "iadd")
    broadcasts = True

    def output(self, x: tuple[Shape, ...]) -> Shape:
        return broadcast(x, self.kind)

    def derive(self, x) -> list[tuple[str, str]]:
        return [("output", f"{shapes_text(x)} → {fmt.shape(self.output(x))}: element-wise sum, "
                           "each axis equal or 1 (PyTorch's broadcasting); no weights, no FLOPs counted")]

    def to_torch(self, x, nn):
        return nn.Add()

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        if torch_argument(args, kwargs, 2, "alpha", 1) != 1:
            raise Inexpressible("with alpha: archcalc adds the tensors as they are")
        return _tensor_pair(args)

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    passes_gradient = "same"  # AddBackward hands each input the output's gradient itself


@register
@dataclass(frozen=True, kw_only=True)
class Mul(Merge):
    """The element-wise product (squeeze-and-excitation gating: [C,1,1] × [C,H,W])."""

    kind = "mul"
    torch_functions = ("mul", "mul_", "imul")
    broadcasts = True

    def output(self, x: tuple[Shape, ...]) -> Shape:
        if len(x) != 2:
            raise SpecError(f"mul takes two inputs, got {len(x)}", "multiply two at a time: a chain of mul layers", "from")
        return broadcast(x, self.kind)

    def keeps(self, x: tuple[Shape, ...], y: Shape, grad: tuple[bool, ...]) -> tuple[Kept, ...]:
        # The gradient of one factor is the output's gradient times the other: autograd keeps a factor
        # when the other one requires grad (measured with saved_tensors_hooks, torch 2.13 CPU).
        kept = tuple(Kept("input", num.mul(x[i]), what=f"factor {i + 1}", arg=i) for i in (0, 1) if grad[1 - i])
        return kept + super().keeps(x, y, grad)

    def derive(self, x) -> list[tuple[str, str]]:
        return [("output", f"{shapes_text(x)} → {fmt.shape(self.output(x))}: element-wise product, "
                           "each axis equal or 1 (PyTorch's broadcasting); no weights, no FLOPs counted")]

    def to_torch(self, x, nn):
        return nn.Mul()

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        return _tensor_pair(args)


@register
@dataclass(frozen=True, kw_only=True)
class Concat(Merge):
    """Inputs side by side along `dim`, an axis of one sample (0: the channels, as torch.cat(dim=1))."""

    kind = "concat"
    torch_functions = ("cat", "concat")
    dim: Dim = size(0, minimum=0)

    def output(self, x: tuple[Shape, ...]) -> Shape:
        axis = self.axis(x)
        for other in range(len(x[0])):
            if other == axis:
                continue
            for shape in x[1:]:
                if not same(shape[other], x[0][other]):
                    raise SpecError(
                        f"cannot concat {shapes_text(x)} along axis {axis}: axis {other} is {fmt.group(x[0][other])} "
                        f"in one and {fmt.group(shape[other])} in another",
                        "every axis but dim must be equal (they cannot be proved equal)"
                        if not (num.is_concrete(shape[other]) and num.is_concrete(x[0][other])) else
                        "every axis but dim must be equal",
                        "from",
                    )
        return tuple(num.add(s[axis] for s in x) if i == axis else d for i, d in enumerate(x[0]))

    def axis(self, x: tuple[Shape, ...]) -> int:
        _same_rank(x, self.kind, least=1)  # torch.cat([x]) is a copy of x (densenet's first layer of each block)
        if self.dim >= len(x[0]):
            raise SpecError(f"dim {self.dim} is not an axis of {fmt.shape(x[0])}",
                            f"dim counts the axes of one sample from 0 (the channels) to {len(x[0]) - 1}", "dim")
        return int(self.dim)

    def summary(self, x) -> str:
        return with_activation(f"dim {self.dim}", self.activation)

    def derive(self, x) -> list[tuple[str, str]]:
        axis = self.axis(x)
        sizes = " + ".join(fmt.group(s[axis]) for s in x)
        return [("output", f"{shapes_text(x)} → {fmt.shape(self.output(x))}: axis {axis} adds up, "
                           f"{sizes} = {fmt.group(self.output(x)[axis])}; the other axes must be equal; no weights")]

    def to_torch(self, x, nn):
        return nn.Concat(self.axis(x))

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        dim = torch_argument(args, kwargs, 1, "dim", 0)
        tensors = torch_argument(args, kwargs, 0, "tensors", [])
        rank = next((t.rank for t in tensors if isinstance(t, TorchTensor) and t.rank is not None), None)
        if dim < 0 and rank is not None:
            dim += rank  # torch.cat(xs, -1): the last axis, as concat counts it from the first
        if dim == 0:
            raise Inexpressible("along the batch axis")
        if dim < 0:
            raise Inexpressible(f"along dim {dim} of tensors of unknown rank: archcalc counts concat's axis from the first")
        return {} if dim == 1 else {"dim": dim - 1}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("cat",)
    passes_gradient = "slice"  # CatBackward hands each input a slice (a view) of the output's gradient
