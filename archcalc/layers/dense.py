"""Fully connected layer over a flat input (torch.nn.Linear)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import fmt, num
from ..errors import SpecError
from ..fields import flag, size
from ..num import Dim, Shape
from .base import Kept, Layer, activation_field, activation_keeps, register, with_activation


@register
@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    kind = "dense"
    torch_modules = ("Linear",)
    out_features: Dim = size()
    bias: bool = flag(True)
    activation: str | None = activation_field()

    def in_features(self, x: Shape) -> Dim:
        if len(x) != 1:
            raise SpecError(f"dense needs a flat input, got {fmt.shape(x)}", "add a flatten layer before it")
        return x[0]

    def output(self, x: Shape) -> Shape:
        self.in_features(x)
        return (self.out_features,)

    def weights(self, x: Shape) -> Dim:
        return self.in_features(x) * self.out_features

    def biases(self, x: Shape) -> Dim:
        return self.out_features if self.bias else 0

    def macs(self, x: Shape) -> Dim:
        return self.in_features(x) * self.out_features

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        return num.normal(self.macs(x) * (2 if grad else 1))

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept("input", num.mul(x), what="input"), *activation_keeps(self.activation, y))

    def summary(self, x: Shape) -> str:
        text = f"{fmt.group(self.in_features(x))}→{fmt.group(self.out_features)}"
        return with_activation(text + ("" if self.bias else ", no bias"), self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        factors = f"{fmt.term(self.out_features)}·{fmt.term(self.in_features(x))}"
        return [
            ("weights", f"weights = out_features·in_features = {factors} = {fmt.group(self.weights(x))}"),
            ("biases", f"biases = out_features = {fmt.group(self.out_features)}" if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = out_features·in_features = {factors} = {fmt.group(self.macs(x))}"),
        ]

    def to_torch(self, x: Shape, nn):
        return nn.Linear(int(self.in_features(x)), int(self.out_features), bias=self.bias)
