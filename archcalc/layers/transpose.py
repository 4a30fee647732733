"""Transposed convolution over 1, 2 or 3 spatial axes (torch.nn.ConvTranspose1d/2d/3d).

Each input value scatters a kernel into the output, so along an axis (PyTorch's rule, window.Scatter)

    out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1

and output_padding must be smaller than the stride or the dilation. FlopCounterMode counts
one multiply-accumulate per input position, input channel, output channel of its group and
kernel element: MACs = n_in·C_in·(C_out/groups)·kernel (outputs that land in the cropped
padding included). The rest it shares with the convolution (conv.Convolution).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.fields import axes, flag, size
from ..core.num import Dim, Shape
from .base import activation_field, ints, per_axis, register, setting, spatial, with_activation
from .conv import Convolution
from .window import Scatter, axis_lines


@register
@dataclass(frozen=True, kw_only=True)
class ConvTranspose(Convolution):
    kind = "conv_transpose"
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

    def weights(self, x: Shape) -> Dim:
        return num.normal(self.in_channels(x) * num.div(self.out_channels, self.groups) * num.mul(self.kernel(x)))

    def macs(self, x: Shape) -> Dim:
        self.output(x)
        return num.normal(num.mul(x) * num.div(self.out_channels, self.groups) * num.mul(self.kernel(x)))

    def geometry(self, x: Shape) -> tuple[Scatter, ...]:
        n = spatial(x, self.kind)
        fields = ("kernel_size", "stride", "padding", "dilation", "output_padding")
        values = [per_axis(getattr(self, f), n, f) for f in fields]
        return tuple(Scatter(size, k, s, p, d, op) for size, k, s, p, d, op in zip(x[1:], *values))

    def summary(self, x: Shape) -> str:
        ax = self.geometry(x)
        padding = setting(", p", tuple(a.p for a in ax), 0) + setting(", op", tuple(a.op for a in ax), 0)
        return with_activation("transposed " + self.settings(x, padding), self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = axis_lines(self.geometry(x))
        cin, groups = self.in_channels(x), self.groups != 1
        per_group = self.per_group(self.out_channels)
        kernel = fmt.kernel(self.kernel(x))
        lines.append(("weights", f"weights = C_in·C_out{'/groups' * groups}·kernel = {fmt.term(cin)}·{per_group}·{kernel}"
                                 f" = {fmt.group(self.weights(x))}"))
        lines.append(("biases", f"biases = C_out = {fmt.group(self.out_channels)}" if self.bias else "biases = 0 (bias = false)"))
        lines.append(("macs", f"MACs = inputs·C_out{'/groups' * groups}·kernel = {fmt.product(x)}·{per_group}·{kernel}"
                              f" = {fmt.group(self.macs(x))} (each input value scatters a kernel, as torch counts it)"))
        return lines

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if quantity != "output":
            return ()
        ax, out = self.geometry(x), []
        conv = tuple(a.window().fits for a in ax)
        if all(num.is_positive(c) is not False for c in conv):
            out.append(((self.out_channels, *conv), "a convolution's output size: a transposed convolution grows its input, "
                        "out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1"))
        if any(a.p != 0 for a in ax):
            unpadded = tuple(Scatter(a.n, a.k, a.s, 0, a.d, a.op).out() for a in ax)
            out.append(((self.out_channels, *unpadded), "padding forgotten: a transposed convolution's padding removes "
                        "2p rows from its output, out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1"))
        return tuple(out)

    def to_torch(self, x: Shape, nn):
        ax = self.geometry(x)
        return getattr(nn, f"ConvTranspose{len(ax)}d")(
            int(x[0]), int(self.out_channels), ints(a.k for a in ax), stride=ints(a.s for a in ax),
            padding=ints(a.p for a in ax), output_padding=ints(a.op for a in ax), groups=int(self.groups),
            bias=self.bias, dilation=ints(a.d for a in ax),
        )

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_kept = (0,)

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"conv_transpose{len(x) - 1}d",)

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        weight = (self.in_channels(x), num.div(self.out_channels, self.groups), *self.kernel(x))  # torch's: in first
        return (weight, *(((self.out_channels,),) if self.bias else ()))
