"""Max and average pooling over 1, 2 or 3 spatial axes (torch.nn.MaxPool*d, AvgPool*d)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axes, choice, flag
from ..core.num import Dim, Shape
from .base import Inexpressible, Kept, Layer, Storage, Tensor, axes_text, ints, per_axis, register, setting, spatial, torch_argument
from .window import Window, axis_lines


def pooling_keeps(op: str, x: Shape, y: Shape) -> tuple[Kept, ...]:
    """What max or average pooling keeps for its backward: its input, and for max the int64 indices of the maxima."""
    kept = (Kept(Tensor.input, num.mul(x), what="input"),)
    return (*kept, Kept(Tensor.own, num.mul(y), Storage.int64, what="max-pooling indices")) if op == "max" else kept


def _plain(value):
    """A size as torch gives it ([3, 3], (2, 2), 3) as a spec value: one int where all axes agree."""
    if isinstance(value, (list, tuple)):
        items = list(value)
        return items[0] if items and len(set(items)) == 1 else items
    return value


@register
@dataclass(frozen=True, kw_only=True)
class Pool(Layer):
    kind = "pool"
    channels_hint = "pooling keeps its input's channels"
    asks_shape = True
    colour = "#e8796b"
    torch_modules = tuple(f"{op}Pool{n}d" for op in ("Max", "Avg") for n in (1, 2, 3))
    torch_functions = (*(f"{op}_pool{n}d" for op in ("max", "avg") for n in (1, 2, 3)),
                       *(f"max_pool{n}d_with_indices" for n in (1, 2, 3)))  # aten's, with return_indices: its [0]
    op: str = choice("max", "avg", default="max")
    kernel_size: Dim | tuple = axes()
    stride: Dim | tuple | None = axes(None)  # None: the kernel size, as in PyTorch
    padding: Dim | tuple = axes(0, minimum=0)
    dilation: Dim | tuple = axes(1)  # max pooling only, as in PyTorch
    ceil_mode: bool = flag(False)

    def output(self, x: Shape) -> Shape:
        return (x[0], *(w.out() for w in self.windows(x)))

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return pooling_keeps(self.op, x, y) if grad else ()

    def make_windows(self, x: Shape) -> tuple[Window, ...]:
        n = spatial(x, self.kind)
        if self.op == "avg" and self.dilation != 1:
            raise SpecError("average pooling has no dilation (PyTorch's AvgPool has none)",
                            'remove dilation, or use op = "max"', "dilation")
        kernel = per_axis(self.kernel_size, n, "kernel_size")
        stride = kernel if self.stride is None else per_axis(self.stride, n, "stride")
        padding = per_axis(self.padding, n, "padding")
        for k, p in zip(kernel, padding):
            if num.is_concrete(k) and num.is_concrete(p) and p > k // 2:
                raise SpecError(
                    f"padding {fmt.group(p)} is more than half the kernel {fmt.group(k)}",
                    f"PyTorch allows at most {k // 2} here",
                    "padding",
                )
        if self.op == "avg" and n == 3:
            for size, k in zip(x[1:], kernel):
                if num.is_concrete(size) and num.is_concrete(k) and size < k:
                    raise SpecError(
                        f"input {fmt.shape(x[1:])} is smaller than the kernel {fmt.group(k)} on an axis",
                        "PyTorch's AvgPool3d needs every input axis at least as large as the kernel, padding aside",
                        "kernel_size",
                    )
        return tuple(
            Window(size, k, s, p, d, ceil_mode=self.ceil_mode)
            for size, k, s, p, d in zip(x[1:], kernel, stride, padding, per_axis(self.dilation, n, "dilation"))
        )

    def summary(self, x: Shape) -> str:
        ws = self.windows(x)
        text = f"{self.op} " + "×".join(fmt.group(w.k) for w in ws)
        text += "/" + axes_text(tuple(w.s for w in ws)) + setting(", p", tuple(w.p for w in ws), 0)
        text += setting(", d", tuple(w.d for w in ws), 1)
        return text + (", ceil" if self.ceil_mode else "")

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [*axis_lines(self.windows(x)), ("weights", "no weights: pooling only picks or averages")]

    def to_torch(self, x: Shape, nn):
        ws = self.windows(x)
        k, s, p = ints(w.k for w in ws), ints(w.s for w in ws), ints(w.p for w in ws)
        if self.op == "max":
            return getattr(nn, f"MaxPool{len(ws)}d")(k, s, p, dilation=ints(w.d for w in ws), ceil_mode=self.ceil_mode)
        return getattr(nn, f"AvgPool{len(ws)}d")(k, s, p, ceil_mode=self.ceil_mode)

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"op": torch_name[:3].lower()}

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode) and F.avg_pool2d(x, kernel_size, stride,
        padding, ceil_mode, count_include_pad, divisor_override): aten's take the same arguments in the same order."""
        op = name[:3]
        fields = {"op": op, "kernel_size": _plain(torch_argument(args, kwargs, 1, "kernel_size"))}
        for i, field, default in ((2, "stride", None), (3, "padding", 0)):
            value = _plain(torch_argument(args, kwargs, i, field))
            if value not in (None, default, []):
                fields[field] = value
        dilation = _plain(torch_argument(args, kwargs, 4, "dilation", 1)) if op == "max" else 1
        if dilation != 1:
            fields["dilation"] = dilation
        if torch_argument(args, kwargs, 5 if op == "max" else 4, "ceil_mode", False):
            fields["ceil_mode"] = True
        if op == "avg" and (torch_argument(args, kwargs, 5, "count_include_pad", True) is not True
                            or torch_argument(args, kwargs, 6, "divisor_override") is not None):
            raise Inexpressible("with count_include_pad or divisor_override: archcalc's average pooling has neither")
        return fields

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"{self.op}_pool{len(x) - 1}d",)
