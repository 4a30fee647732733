"""Convolution over 1, 2 or 3 spatial axes (torch.nn.Conv1d/2d/3d), and the Convolution base it shares with
the transposed convolution (transpose.py): channels in groups, a kernel along each spatial axis, a bias per
output channel."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axes, choice, flag, size
from ..core.num import Dim, Shape
from .base import Kept, Layer, Tensor, activation_field, activation_keeps, ints, per_axis, register, setting, spatial, with_activation
from .window import Scatter, Window, axis_lines


@dataclass(frozen=True, kw_only=True)
class Convolution(Layer):
    """What a convolution and a transposed convolution share. A kind on this base declares the fields
    out_channels, kernel_size, stride, padding, dilation, groups, bias and activation, and its kernel's
    `geometry` along each spatial axis (Windows that slide, Scatters that scatter)."""

    colour = "#f4c27a"

    def output(self, x: Shape) -> Shape:
        self.in_channels(x)
        return (self.out_channels, *(a.out() for a in self.geometry(x)))

    def biases(self, x: Shape) -> Dim:
        return self.out_channels if self.bias else 0

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # the weight's gradient is as much work as the forward (none when frozen), the input's (when it needs one) too
        macs = self.macs(x)
        return (0 if self.frozen else macs) + (macs if grad else 0)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (self.kept_input(x), *activation_keeps(self.activation, y))

    def kept_input(self, x: Shape) -> Kept:
        """What the convolution's op keeps of its input (the activation's tensor aside): the input itself."""
        return Kept(Tensor.input, num.mul(x), what="input")

    def geometry(self, x: Shape) -> tuple[Window, ...] | tuple[Scatter, ...]:
        """The kernel along each spatial axis of `x`."""
        raise NotImplementedError

    def in_channels(self, x: Shape) -> Dim:
        """The input's channels, x[0], once both they and out_channels divide by groups."""
        for channels, role in ((x[0], "in_channels"), (self.out_channels, "out_channels")):
            if num.is_concrete(channels) and num.is_concrete(self.groups) and channels % self.groups:
                raise SpecError(
                    f"groups = {self.groups} does not divide {role} = {fmt.group(channels)}",
                    "in_channels (the input's channels) and out_channels must both divide by groups",
                    "groups",
                )
        return x[0]

    def kernel(self, x: Shape) -> tuple:
        return tuple(a.k for a in self.geometry(x))

    def settings(self, x: Shape, padding: str) -> str:
        """The kernel and the settings that differ from their defaults, for the summary: '11×11/4' then `padding`
        (the kind's words for it), dilation, groups, 'no bias'."""
        ax = self.geometry(x)
        text = "×".join(fmt.group(a.k) for a in ax) + setting("/", tuple(a.s for a in ax), 1) + padding
        text += setting(", d", tuple(a.d for a in ax), 1)
        if self.groups != 1:
            text += f", g{fmt.group(self.groups)}"
        return text + ("" if self.bias else ", no bias")

    def per_group(self, channels: Dim) -> str:
        """'C' or '(C/groups)', in a derivation's product."""
        return fmt.term(channels) if self.groups == 1 else f"({fmt.term(channels)}/{fmt.term(self.groups)})"

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        # FlopCounterMode's conv_backward_flop ignores groups for the weight's gradient, so counts it `groups` times
        if self.groups == 1 or self.frozen:
            return {}
        macs = self.macs(x)
        counted = num.normal(2 * (macs + macs * self.groups + (macs if grad else 0)))
        return {"training_flops": (counted, "it counts a grouped conv's weight gradient `groups` times")}


@register
@dataclass(frozen=True, kw_only=True)
class Conv(Convolution):
    kind = "conv"
    mistakes = frozenset({"input_channels", "input_channels_forgotten", "kernel_not_squared"})
    asks_shape = True
    torch_modules = ("Conv1d", "Conv2d", "Conv3d")
    out_channels: Dim = size()
    kernel_size: Dim | tuple = axes()
    stride: Dim | tuple = axes(1)
    padding: Dim | tuple | str = axes(0, minimum=0, words=("same", "valid"))
    dilation: Dim | tuple = axes(1)
    groups: Dim = size(1)
    bias: bool = flag(True)
    activation: str | None = activation_field()
    padding_mode: str = choice("zeros", "reflect", "replicate", "circular", default="zeros")

    def weights(self, x: Shape) -> Dim:
        return self.out_channels * num.div(self.in_channels(x), self.groups) * num.mul(self.kernel(x))

    def macs(self, x: Shape) -> Dim:
        per_output = num.div(self.in_channels(x), self.groups) * num.mul(self.kernel(x))
        return num.mul(self.output(x)) * per_output

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if self.padding_mode == "zeros":
            return super().keeps(x, y, grad)
        # any other mode pads a copy first (F.pad) and the convolution keeps that copy; reflect and
        # replicate padding keep their input for their own backward too (circular slices: it keeps nothing)
        padded = num.normal(x[0] * num.mul(w.n + sum(self._pads(w)) for w in self.windows(x)))
        pad_input = (Kept("input", num.mul(x), what=f"input ({self.padding_mode} padding's)"),) if grad and self.padding_mode != "circular" else ()
        return (*pad_input, Kept("own", padded, what=f"the {self.padding_mode}-padded copy of the input"),
                *activation_keeps(self.activation, y))

    def kept_input(self, x: Shape) -> Kept:
        # padding "same" with an odd total d·(k − 1) on an axis: torch pads the input by one more on
        # the right of that axis (a new, zero-padded copy) and keeps that copy instead of the input
        if self.padding == "same":
            extra = [w.d * (w.k - 1) % 2 for w in self.windows(x)]
            if all(map(num.is_concrete, extra)) and any(extra):
                padded = x[0] * num.mul(n + e for n, e in zip(x[1:], extra))
                return Kept(Tensor.own, padded, what="input zero-padded on the right ('same' padding with an even span)")
        return super().kept_input(x)

    def geometry(self, x: Shape) -> tuple[Window, ...]:
        return self.windows(x)

    def make_windows(self, x: Shape) -> tuple[Window, ...]:
        n = spatial(x, self.kind)
        same = self.padding == "same"
        if same and any(s != 1 for s in per_axis(self.stride, n, "stride")):
            raise SpecError("padding 'same' needs stride 1 (PyTorch refuses it for strided convolutions)",
                            "give the padding as a number", "padding")
        padding = 0 if self.padding in ("same", "valid") else self.padding
        ws = tuple(
            Window(size, k, s, p, d, same=same)
            for size, k, s, p, d in zip(
                x[1:],
                per_axis(self.kernel_size, n, "kernel_size"),
                per_axis(self.stride, n, "stride"),
                per_axis(padding, n, "padding"),
                per_axis(self.dilation, n, "dilation"),
            )
        )
        self._check_padding_mode(ws)
        return ws

    def _pads(self, w: Window) -> tuple[Dim, Dim]:
        """The padding on the left and on the right of an axis (padding 'same': the odd one on the right)."""
        if w.same:
            total = w.d * (w.k - 1)
            return num.floordiv(total, 2), total - num.floordiv(total, 2)
        return w.p, w.p

    def _check_padding_mode(self, ws: tuple[Window, ...]) -> None:
        limits = {"reflect": ("less than", 0), "circular": ("at most", 1)}
        if self.padding_mode not in limits:
            return
        words, slack = limits[self.padding_mode]
        for w in ws:
            side = self._pads(w)[1]
            if num.is_nonnegative(w.n + slack - 1 - side) is False:
                raise SpecError(
                    f"padding_mode {self.padding_mode!r} pads {fmt.group(side)} on a side of an axis of size {fmt.group(w.n)}",
                    f"PyTorch's {self.padding_mode} padding must be {words} the input size on each axis", "padding",
                )

    def summary(self, x: Shape) -> str:
        padding = ", same" if self.padding == "same" else setting(", p", tuple(w.p for w in self.windows(x)), 0)
        mode = f", {self.padding_mode}" if self.padding_mode != "zeros" else ""
        return with_activation(self.settings(x, padding) + mode, self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = axis_lines(self.windows(x))
        per_group = self.per_group(self.in_channels(x))
        factors = f"{fmt.term(self.out_channels)}·{per_group}·{fmt.kernel(self.kernel(x))}"
        lines.append(("weights", f"weights = C_out·C_in{'/groups' * (self.groups != 1)}·kernel = {factors} = {fmt.group(self.weights(x))}"))
        if self.bias:
            lines.append(("biases", f"biases = C_out = {fmt.group(self.out_channels)} (one per filter)"))
        else:
            lines.append(("biases", "biases = 0 (bias = false)"))
        out = self.output(x)
        lines.append(("dense_equivalent_weights", self.dense_text(x, out)))
        lines.append((
            "macs",
            f"MACs = outputs·C_in{'/groups' * (self.groups != 1)}·kernel = {fmt.product(out)}·{per_group}·"
            f"{fmt.kernel(self.kernel(x))} = {fmt.group(self.macs(x))}",
        ))
        return lines

    def dense_text(self, x: Shape, out: Shape) -> str:
        """The course's point (section 4.1): a dense layer between the same input and output, and what the conv saves."""
        dense, weights = self.dense_equivalent_weights(x), self.weights(x)
        text = (f"dense equivalent = (W·H·C_in)·(W_out·H_out·C_out) = ({fmt.product(x[1:])}·{fmt.term(x[0])})·"
                f"({fmt.product(out[1:])}·{fmt.term(out[0])}) = {fmt.group(dense)} weights")
        if num.is_concrete(dense) and num.is_concrete(weights) and weights:
            ratio = num.div(dense, weights)
            times = fmt.group(ratio) if num.is_integer(ratio) else f"{float(ratio):,.0f}"
            text += f", {times}× the conv's {fmt.group(weights)}"
        return text

    def dense_equivalent_weights(self, x: Shape) -> Dim:
        return num.normal(num.mul(x) * num.mul(self.output(x)))

    def to_torch(self, x: Shape, nn):
        ws = self.windows(x)
        padding = self.padding if self.padding in ("same", "valid") else ints(w.p for w in ws)
        return getattr(nn, f"Conv{len(ws)}d")(
            int(x[0]), int(self.out_channels), ints(w.k for w in ws), stride=ints(w.s for w in ws), padding=padding,
            dilation=ints(w.d for w in ws), groups=int(self.groups), bias=self.bias, padding_mode=self.padding_mode,
        )

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_kept = (0,)  # ConvolutionBackward keeps the weight, whether or not the input needs a gradient

    def padded_gradient(self, x: Shape) -> Dim:
        if self.padding_mode != "zeros":
            return num.normal(x[0] * num.mul(w.n + sum(self._pads(w)) for w in self.windows(x)))
        kept = self.kept_input(x)
        return kept.elements if kept.tensor == Tensor.own else 0

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"conv{len(x) - 1}d",)

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        weight = (self.out_channels, num.div(self.in_channels(x), self.groups), *self.kernel(x))
        return (weight, *(((self.out_channels,),) if self.bias else ()))
