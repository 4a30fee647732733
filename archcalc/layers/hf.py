"""Hugging Face's own element-wise functions, written as separate tensor ops (each op keeps its own tensors).

`gelu_new` is transformers' NewGELUActivation (GPT-2's "gelu_new", activations.py):
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))
the tanh approximation of GELU as eight tensor ops, not torch's fused GELU(approximate="tanh"). The values
are the same; autograd keeps four tensors instead of one: x (for pow), 0.5·x and 1 + tanh(·) (for the last
product), tanh(·) (for its own backward). FLOPs follow the convention (matrix products only): none.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import num
from ..num import Shape
from .base import Kept, Layer, Tensor, register
from .field import Field


@register
@dataclass(frozen=True, kw_only=True)
class NewGELU(Layer):
    kind = "gelu_new"
    torch_modules = ("NewGELUActivation",)

    def keeps_layout(self) -> bool:
        return True  # element-wise ops keep the input's strides

    def output(self, x: Shape) -> Shape:
        return x

    def receptive(self, x: Shape, field: Field) -> Field:
        return field  # element-wise

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        n = num.mul(x)
        return (Kept(Tensor.input, n, what="input (x**3's)"), Kept(Tensor.own, n, what="0.5·x"),
                Kept(Tensor.own, n, what="tanh(√(2/π)·(x + 0.044715·x³))"), Kept(Tensor.own, n, what="1 + tanh(…)"))

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True) -> tuple[tuple, tuple]:
        """The eight ops one by one (measured with a TorchDispatchMode, torch 2.13): forward v = 0.5·x first (Python
        evaluates the left factor first), then x³, its scaling, the sum, the scaling, tanh, 1 + tanh, the product.
        Backward: the product's two gradients, tanh's, the scaling's; the sum hands its gradient to x as it is
        and to the cubic term, whose pow backward makes x², 3·x² and the product; x's three gradients meet in
        its buffer (added in place on CUDA, summed anew under a dispatch mode)."""
        n = num.mul(x)
        fwd = (("keep", "x"), ("+", "v", n), ("+", "p", n), ("+", "a", n), ("-", "p"), ("+", "b", n), ("-", "a"),
               ("+", "c", n), ("-", "b"), ("+", "t", n), ("-", "c"), ("+", "u", n), ("+", "out", n))
        bwd = (("+", "gu", n), ("+", "gv", n), ("-", "g", "u", "v"), ("+", "gc", n), ("-", "gu", "t"), ("+", "gb", n),
               ("-", "gc"), ("grad", "gb"), ("+", "ga", n), ("-", "gb"), ("+", "x2", n), ("+", "x2s", n), ("+", "gxp", n),
               ("-", "x2s", "x2", "ga", "x"), ("grad", "gxp"), ("-", "gxp"), ("+", "gxh", n), ("-", "gv"),
               ("grad", "gxh"), ("-", "gxh"))
        return fwd, bwd

    def summary(self, x: Shape) -> str:
        return "Hugging Face's tanh GELU, as separate ops"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", "same shape: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), element-wise")]

    def to_torch(self, x: Shape, nn):
        from ..backends.modules import NewGELU as Module

        return Module()
