"""Transposed convolution over 1, 2 or 3 spatial axes (torch.nn.ConvTranspose1d/2d/3d).

Each input value scatters a kernel into the output, so along an axis (PyTorch's rule)

    out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1

and output_padding must be smaller than the stride or the dilation. FlopCounterMode counts
one multiply-accumulate per input position, input channel, output channel of its group and
kernel element: MACs = n_in·C_in·(C_out/groups)·kernel (outputs that land in the cropped
padding included).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axes, flag, size
from ..core.num import Dim, Shape
from .base import Kept, Layer, activation_field, activation_keeps, axes_text, ints, per_axis, register, spatial, with_activation
from .conv import grouped_in_channels, grouped_torch_counts
from .window import AXIS_NAMES


@dataclass(frozen=True)
class Scatter:
    """One spatial axis of a transposed convolution."""

    n: Dim
    k: Dim
    s: Dim = 1
    p: Dim = 0
    d: Dim = 1
    op: Dim = 0  # output_padding

    def out(self) -> Dim:
        if num.is_concrete(self.op) and num.is_concrete(self.s) and num.is_concrete(self.d) and self.op >= max(self.s, self.d):
            raise SpecError(
                f"output_padding {self.op} must be smaller than the stride {self.s} or the dilation {self.d}",
                "PyTorch refuses it: output_padding only adds the rows a stride > 1 leaves undecided",
                "output_padding",
            )
        out = num.normal((self.n - 1) * self.s - 2 * self.p + self.d * (self.k - 1) + self.op + 1)
        if num.is_positive(out) is False:
            raise SpecError(
                f"the output would have {fmt.group(out)} values along an axis (input {fmt.group(self.n)}, "
                f"padding {fmt.group(self.p)} crops 2·{fmt.group(self.p)} of them)",
                "a transposed convolution's padding removes rows from its output: use less padding",
                "padding",
            )
        return out

    def formula(self) -> str:
        parts = [f"({fmt.term(self.n)} − 1)·{fmt.term(self.s)}"]
        if self.p != 0:
            parts.append(f"− 2·{fmt.term(self.p)}")
        parts.append(f"+ {fmt.term(self.d)}·({fmt.term(self.k)} − 1)" if self.d != 1 else f"+ ({fmt.term(self.k)} − 1)")
        if self.op != 0:
            parts.append(f"+ {fmt.term(self.op)}")
        return f"{' '.join(parts)} + 1 = {fmt.group(self.out())}"


@register
@dataclass(frozen=True, kw_only=True)
class ConvTranspose(Layer):
    kind = "conv_transpose"
    colour = "#f4c27a"
    torch_modules = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
    out_channels: Dim = size()
    kernel_size: Dim | tuple = axes()
    stride: Dim | tuple = axes(1)
    padding: Dim | tuple = axes(0, minimum=0)
    output_padding: Dim | tuple = axes(0, minimum=0)
    dilation: Dim | tuple = axes(1)
    groups: Dim = size(1)
    bias: bool = flag(True)
    activation: str | None = activation_field()

    def axes(self, x: Shape) -> tuple[Scatter, ...]:
        n = spatial(x, self.kind)
        fields = ("kernel_size", "stride", "padding", "dilation", "output_padding")
        values = [per_axis(getattr(self, f), n, f) for f in fields]
        return tuple(Scatter(size, k, s, p, d, op) for size, k, s, p, d, op in zip(x[1:], *values))

    def in_channels(self, x: Shape) -> Dim:
        return grouped_in_channels(x, self.out_channels, self.groups)

    def output(self, x: Shape) -> Shape:
        self.in_channels(x)
        return (self.out_channels, *(a.out() for a in self.axes(x)))

    def kernel(self, x: Shape) -> tuple:
        return tuple(a.k for a in self.axes(x))

    def weights(self, x: Shape) -> Dim:
        return num.normal(self.in_channels(x) * num.div(self.out_channels, self.groups) * num.mul(self.kernel(x)))

    def biases(self, x: Shape) -> Dim:
        return self.out_channels if self.bias else 0

    def macs(self, x: Shape) -> Dim:
        self.output(x)
        return num.normal(num.mul(x) * num.div(self.out_channels, self.groups) * num.mul(self.kernel(x)))

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # the weight's gradient is as much work as the forward, the input's (when it needs one) too
        macs = self.macs(x)
        return macs + (macs if grad else 0)

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        return grouped_torch_counts(self.macs(x), self.groups, grad)  # as for conv

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept("input", num.mul(x), what="input"), *activation_keeps(self.activation, y))

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if quantity != "output":
            return ()
        ax, out = self.axes(x), []
        conv = tuple(num.floordiv(a.n + 2 * a.p - a.d * (a.k - 1) - 1, a.s) + 1 for a in ax)
        if all(num.is_positive(c) is not False for c in conv):
            out.append(((self.out_channels, *conv), "a convolution's output size: a transposed convolution grows its input, "
                        "out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1"))
        if any(a.p != 0 for a in ax):
            unpadded = tuple(num.normal((a.n - 1) * a.s + a.d * (a.k - 1) + a.op + 1) for a in ax)
            out.append(((self.out_channels, *unpadded), "padding forgotten: a transposed convolution's padding removes "
                        "2p rows from its output, out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1"))
        return tuple(out)

    def summary(self, x: Shape) -> str:
        ax = self.axes(x)
        text = "×".join(fmt.group(a.k) for a in ax)
        for letter, values, default in (("/", tuple(a.s for a in ax), 1), (", p", tuple(a.p for a in ax), 0),
                                        (", op", tuple(a.op for a in ax), 0), (", d", tuple(a.d for a in ax), 1)):
            if any(v != default for v in values):
                text += letter + axes_text(values)
        if self.groups != 1:
            text += f", g{fmt.group(self.groups)}"
        if not self.bias:
            text += ", no bias"
        return with_activation("transposed " + text, self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        ax = self.axes(x)
        lines: list[tuple[str, str]] = []
        seen: dict[Scatter, list[str]] = {}
        for name, a in zip(AXIS_NAMES[len(ax)], ax):
            seen.setdefault(a, []).append(name)
        for a, names in seen.items():
            lines.append(("output", f"{' = '.join(f'{n}_out' for n in names)} = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1"
                                    f" = {a.formula()}"))
        cin, groups = self.in_channels(x), self.groups != 1
        per_group = fmt.term(self.out_channels) if not groups else f"({fmt.term(self.out_channels)}/{fmt.term(self.groups)})"
        kernel = fmt.kernel(self.kernel(x))
        lines.append(("weights", f"weights = C_in·C_out{'/groups' * groups}·kernel = {fmt.term(cin)}·{per_group}·{kernel}"
                                 f" = {fmt.group(self.weights(x))}"))
        lines.append(("biases", f"biases = C_out = {fmt.group(self.out_channels)}" if self.bias else "biases = 0 (bias = false)"))
        lines.append(("macs", f"MACs = inputs·C_out{'/groups' * groups}·kernel = {fmt.product(x)}·{per_group}·{kernel}"
                              f" = {fmt.group(self.macs(x))} (each input value scatters a kernel, as torch counts it)"))
        return lines

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"conv_transpose{len(x) - 1}d",)

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,)

    def to_torch(self, x: Shape, nn):
        ax = self.axes(x)
        return getattr(nn, f"ConvTranspose{len(ax)}d")(
            int(x[0]), int(self.out_channels), ints(a.k for a in ax), stride=ints(a.s for a in ax),
            padding=ints(a.p for a in ax), output_padding=ints(a.op for a in ax), groups=int(self.groups),
            bias=self.bias, dilation=ints(a.d for a in ax),
        )
