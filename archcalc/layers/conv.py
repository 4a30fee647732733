"""Convolution over 1, 2 or 3 spatial axes (torch.nn.Conv1d/2d/3d)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axes, choice, flag, size
from ..core.num import Dim, Shape
from .base import Kept, Layer, Tensor, activation_field, activation_keeps, axes_text, ints, per_axis, register, spatial, with_activation
from .receptive_field import Field
from .window import Window, axis_lines


def grouped_torch_counts(macs: Dim, groups: Dim, grad: bool) -> dict[str, tuple[Dim | None, str]]:
    """What FlopCounterMode counts where it differs from the real work, for a conv or a transposed conv:
    its conv_backward_flop ignores groups for the weight's gradient, so counts it `groups` times."""
    if groups == 1:
        return {}
    counted = num.normal(2 * (macs + macs * groups + (macs if grad else 0)))
    return {"training_flops": (counted, "it counts a grouped conv's weight gradient `groups` times")}


def grouped_in_channels(x: Shape, out_channels: Dim, groups: Dim) -> Dim:
    """The input's channels, x[0], once both they and out_channels divide by groups (conv and conv_transpose)."""
    for channels, role in ((x[0], "in_channels"), (out_channels, "out_channels")):
        if num.is_concrete(channels) and num.is_concrete(groups) and channels % groups:
            raise SpecError(
                f"groups = {groups} does not divide {role} = {fmt.group(channels)}",
                "in_channels (the input's channels) and out_channels must both divide by groups",
                "groups",
            )
    return x[0]


@register
@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    kind = "conv"
    asks_shape = True
    colour = "#f4c27a"
    mistakes = frozenset({"input_channels", "input_channels_forgotten", "kernel_not_squared"})
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

    def in_channels(self, x: Shape) -> Dim:
        return grouped_in_channels(x, self.out_channels, self.groups)

    def output(self, x: Shape) -> Shape:
        self.in_channels(x)
        return (self.out_channels, *(w.out() for w in self.windows(x)))

    def kernel(self, x: Shape) -> tuple:
        return tuple(w.k for w in self.windows(x))

    def weights(self, x: Shape) -> Dim:
        return self.out_channels * num.div(self.in_channels(x), self.groups) * num.mul(self.kernel(x))

    def biases(self, x: Shape) -> Dim:
        return self.out_channels if self.bias else 0

    def macs(self, x: Shape) -> Dim:
        per_output = num.div(self.in_channels(x), self.groups) * num.mul(self.kernel(x))
        return num.mul(self.output(x)) * per_output

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # the weight's gradient is as much work as the forward, the input's (when it needs one) too
        macs = self.macs(x)
        return macs + (macs if grad else 0)

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        return grouped_torch_counts(self.macs(x), self.groups, grad)


    def receptive(self, x: Shape, field: Field) -> Field:
        ws = self.windows(x)
        return field.window([w.k for w in ws], [w.d for w in ws], [w.s for w in ws])

    def dense_equivalent_weights(self, x: Shape) -> Dim:
        return num.normal(num.mul(x) * num.mul(self.output(x)))

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if self.padding_mode == "zeros":
            return (self.kept_input(x), *activation_keeps(self.activation, y))
        # any other mode pads a copy first (F.pad) and the convolution keeps that copy; reflect and
        # replicate padding keep their input for their own backward too (circular slices: it keeps nothing)
        padded = num.normal(x[0] * num.mul(w.n + sum(self._pads(w)) for w in self.windows(x)))
        pad_input = (Kept("input", num.mul(x), what=f"input ({self.padding_mode} padding's)"),) if grad and self.padding_mode != "circular" else ()
        return (*pad_input, Kept("own", padded, what=f"the {self.padding_mode}-padded copy of the input"),
                *activation_keeps(self.activation, y))

    def padded_gradient(self, x: Shape) -> Dim:
        if self.padding_mode != "zeros":
            return num.normal(x[0] * num.mul(w.n + sum(self._pads(w)) for w in self.windows(x)))
        kept = self.kept_input(x)
        return kept.elements if kept.tensor == Tensor.own else 0

    def kept_input(self, x: Shape) -> Kept:
        # padding "same" with an odd total d·(k − 1) on an axis: torch pads the input by one more on
        # the right of that axis (a new, zero-padded copy) and keeps that copy instead of the input
        if self.padding == "same":
            extra = [w.d * (w.k - 1) % 2 for w in self.windows(x)]
            if all(map(num.is_concrete, extra)) and any(extra):
                padded = x[0] * num.mul(n + e for n, e in zip(x[1:], extra))
                return Kept(Tensor.own, padded, what="input zero-padded on the right ('same' padding with an even span)")
        return Kept(Tensor.input, num.mul(x), what="input")

    def summary(self, x: Shape) -> str:
        ws = self.windows(x)
        text = "×".join(fmt.group(w.k) for w in ws)
        if any(w.s != 1 for w in ws):
            text += "/" + axes_text(tuple(w.s for w in ws))
        if self.padding == "same":
            text += ", same"
        elif any(w.p != 0 for w in ws):
            text += ", p" + axes_text(tuple(w.p for w in ws))
        if any(w.d != 1 for w in ws):
            text += ", d" + axes_text(tuple(w.d for w in ws))
        if self.groups != 1:
            text += f", g{fmt.group(self.groups)}"
        if not self.bias:
            text += ", no bias"
        if self.padding_mode != "zeros":
            text += f", {self.padding_mode}"
        return with_activation(text, self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        ws = self.windows(x)
        lines = axis_lines(ws)
        cin = self.in_channels(x)
        per_group = fmt.term(cin) if self.groups == 1 else f"({fmt.term(cin)}/{fmt.term(self.groups)})"
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

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"conv{len(x) - 1}d",)

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,)  # ConvolutionBackward keeps the weight, whether or not the input needs a gradient

    def to_torch(self, x: Shape, nn):
        ws = self.windows(x)
        padding = self.padding if self.padding in ("same", "valid") else ints(w.p for w in ws)
        return getattr(nn, f"Conv{len(ws)}d")(
            int(x[0]), int(self.out_channels), ints(w.k for w in ws), stride=ints(w.s for w in ws), padding=padding,
            dilation=ints(w.d for w in ws), groups=int(self.groups), bias=self.bias, padding_mode=self.padding_mode,
        )

