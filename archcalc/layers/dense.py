"""Fully connected layer over a flat input, or per token over a sequence [T, d] (torch.nn.Linear)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import flag, ref, size
from ..core.num import Dim, Shape
from . import layout
from .base import Kept, Layer, Tensor, activation_field, activation_keeps, register, with_activation
from .receptive_field import Field


@register
@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    kind = "dense"
    mistakes = frozenset({"bias_per_input"})
    asks_shape = False  # its output is out_features, as the spec writes it
    colour = "#8fb3de"
    torch_modules = ("Linear",)
    out_features: Dim = size()
    # the input's last axis, given: then any input, the layer applied per position over its other axes as nn.Linear
    # (ConvNeXt's on [H, W, C]); without it, an input of 3 axes or more is refused (a CNN that forgot flatten)
    in_features: Dim | None = size(None)
    bias: bool = flag(True)
    activation: str | None = activation_field()
    tie: str | None = ref(None)  # an earlier layer whose weight this one shares (GPT-2's output layer: tie = "wte")

    def output(self, x: Shape) -> Shape:
        self.features(x)
        return (*x[:-1], self.out_features)

    def weights(self, x: Shape) -> Dim:
        return 0 if self.tie else self.features(x) * self.out_features

    def biases(self, x: Shape) -> Dim:
        return self.out_features if self.bias else 0

    def weight_shape(self, x: Shape) -> Shape:
        return (self.out_features, self.features(x))

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        return (*(() if self.tie else (self.weight_shape(x),)), *(((self.out_features,),) if self.bias else ()))

    def macs(self, x: Shape) -> Dim:
        return num.normal(self.tokens(x) * self.features(x) * self.out_features)

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        return self.macs(x) * (2 if grad else 1)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept(Tensor.input, num.mul(x), what="input"), *activation_keeps(self.activation, y))

    def features(self, x: Shape) -> Dim:
        """The input's features: its last axis (checked against in_features where the spec gives it)."""
        if self.in_features is not None:
            if num.is_concrete(x[-1] - self.in_features) and x[-1] != self.in_features:
                raise SpecError(f"in_features = {fmt.group(self.in_features)}, but the input {fmt.shape(x)} has "
                                f"{fmt.group(x[-1])} on its last axis", "nn.Linear reads the last axis", "in_features")
            return x[-1]
        if len(x) > 2:
            raise SpecError(f"dense needs a flat input, got {fmt.shape(x)} (or a sequence [T, features], applied per token)",
                            "add a flatten layer before it (or, to apply it per position over the last axis as nn.Linear "
                            "does, say so: in_features = " + fmt.group(x[-1]) + ")")
        return x[-1]

    def tokens(self, x: Shape) -> Dim:
        """How many times the layer is applied: once on a flat input, once per token on [T, d] (as nn.Linear)."""
        self.features(x)
        return num.mul(x[:-1])

    def summary(self, x: Shape) -> str:
        where = ", per token" if len(x) == 2 else ", per position" if len(x) > 2 else ""
        text = f"{fmt.group(self.features(x))}→{fmt.group(self.out_features)}{where}"
        text += f", tied to {self.tie}" if self.tie else ""
        return with_activation(text + ("" if self.bias else ", no bias"), self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        factors = f"{fmt.term(self.out_features)}·{fmt.term(self.features(x))}"
        weights = f"weights = out_features·in_features = {factors} = {fmt.group(self.features(x) * self.out_features)}"
        lines = [
            ("weights", f"weights = 0: shares {self.tie}'s weight ({weights}, counted there)" if self.tie else weights),
            ("biases", f"biases = out_features = {fmt.group(self.out_features)}" if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = out_features·in_features = {factors} = {fmt.group(self.macs(x))}"),
        ]
        if len(x) > 2:
            lines[-1] = ("macs", f"MACs = positions·out_features·in_features = {fmt.product(x[:-1])}·{factors} = "
                                 f"{fmt.group(self.macs(x))}")
            lines.insert(0, ("output", f"per position: the same weights applied over the last axis at each of the "
                                       f"{fmt.product(x[:-1])} positions, as nn.Linear does"))
        if len(x) == 2:
            lines[-1] = ("macs", f"MACs = T·out_features·in_features = {fmt.term(x[0])}·{factors} = {fmt.group(self.macs(x))}")
            lines.insert(0, ("output", f"per token: the same weights applied to each of the T = {fmt.group(x[0])} rows, "
                                       f"as nn.Linear does on [B, T, d]; weights do not grow with T"))
        return lines

    def receptive(self, x: Shape, field: Field) -> Field:
        return field  # element-wise: over a flat input every output already sees the whole input

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if len(x) != 2:
            return ()
        t = fmt.group(x[0])
        if quantity == "params":
            return ((num.normal(x[0] * (self.weights(x) + self.biases(x))), f"counted per token: one weight matrix serves "
                     f"all T = {t} tokens, params = {fmt.group(self.weights(x) + self.biases(x))}"),)
        if quantity in ("macs", "flops"):
            once = num.normal(self.weights(x) * (2 if quantity == "flops" else 1))
            return ((once, f"one token only: the layer runs on each of the T = {t} tokens, {quantity} ×{t}"),)
        return ()

    def to_torch(self, x: Shape, nn):
        return nn.Linear(int(self.features(x)), int(self.out_features), bias=self.bias)

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("linear",)
    contiguous_input = True  # nn.Linear reshapes [B, T, d] to [B·T, d]: a permuted input is copied, and the copy kept

    def scores_axis(self, y: Shape) -> int:
        return len(y) - 1  # per token on [T, d]: a language model's [T, V] scores

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,) if grad else ()  # AddmmBackward keeps the weight for the input's gradient only

    def copies_input(self, x: Shape, strides) -> bool:
        return not layout.folds(x, strides)  # a slice of the features, or a selected token, is read as it is

    def unfused_bias(self) -> bool:
        return self.bias  # F.linear on a non-contiguous [B, T, d]: matmul, then the bias added out of place
