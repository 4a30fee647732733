"""Fully connected layer over a flat input, or per token over a sequence [T, d] (torch.nn.Linear)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import flag, ref, size
from ..core.num import Dim, Shape
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
    bias: bool = flag(True)
    activation: str | None = activation_field()
    tie: str | None = ref(None)  # an earlier layer whose weight this one shares (GPT-2's output layer: tie = "wte")

    def output(self, x: Shape) -> Shape:
        self.in_features(x)
        return (*x[:-1], self.out_features)

    def weights(self, x: Shape) -> Dim:
        return 0 if self.tie else self.in_features(x) * self.out_features

    def biases(self, x: Shape) -> Dim:
        return self.out_features if self.bias else 0

    def weight_shape(self, x: Shape) -> Shape:
        return (self.out_features, self.in_features(x))

    def macs(self, x: Shape) -> Dim:
        return num.normal(self.tokens(x) * self.in_features(x) * self.out_features)

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        return self.macs(x) * (2 if grad else 1)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept(Tensor.input, num.mul(x), what="input"), *activation_keeps(self.activation, y))

    def in_features(self, x: Shape) -> Dim:
        if len(x) > 2:
            raise SpecError(f"dense needs a flat input, got {fmt.shape(x)} (or a sequence [T, features], applied per token)",
                            "add a flatten layer before it")
        return x[-1]

    def tokens(self, x: Shape) -> Dim:
        """How many times the layer is applied: once on a flat input, once per token on [T, d] (as nn.Linear)."""
        self.in_features(x)
        return num.mul(x[:-1])

    def summary(self, x: Shape) -> str:
        text = f"{fmt.group(self.in_features(x))}→{fmt.group(self.out_features)}" + (", per token" if len(x) == 2 else "")
        text += f", tied to {self.tie}" if self.tie else ""
        return with_activation(text + ("" if self.bias else ", no bias"), self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        factors = f"{fmt.term(self.out_features)}·{fmt.term(self.in_features(x))}"
        weights = f"weights = out_features·in_features = {factors} = {fmt.group(self.in_features(x) * self.out_features)}"
        lines = [
            ("weights", f"weights = 0: shares {self.tie}'s weight ({weights}, counted there)" if self.tie else weights),
            ("biases", f"biases = out_features = {fmt.group(self.out_features)}" if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = out_features·in_features = {factors} = {fmt.group(self.macs(x))}"),
        ]
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
        return nn.Linear(int(self.in_features(x)), int(self.out_features), bias=self.bias)

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("linear",)
    contiguous_input = True  # nn.Linear reshapes [B, T, d] to [B·T, d]: a permuted input is copied, and the copy kept

    def scores_axis(self, y: Shape) -> int:
        return len(y) - 1  # per token on [T, d]: a language model's [T, V] scores

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,) if grad else ()  # AddmmBackward keeps the weight for the input's gradient only

    def unfused_bias(self) -> bool:
        return self.bias  # F.linear on a non-contiguous [B, T, d]: matmul, then the bias added out of place
