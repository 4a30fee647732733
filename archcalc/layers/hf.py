"""Hugging Face's own element-wise functions, written as separate tensor ops (each op keeps its own tensors):
gelu_new (GPT-2's) and quick_gelu (CLIP's).

`gelu_new` is transformers' NewGELUActivation (GPT-2's "gelu_new", activations.py):
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))
the tanh approximation of GELU as eight tensor ops, not torch's fused GELU(approximate="tanh"). The values
are the same; autograd keeps four tensors instead of one: x (for pow), 0.5·x and 1 + tanh(·) (for the last
product), tanh(·) (for its own backward). FLOPs follow the convention (matrix products only): none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import autocast, num
from ..core.num import Shape
from .base import Kept, Tensor, register
from .elementwise import ElementWise
from .events import Drop, HandGradient, KeepInput, New, Program


@register
@dataclass(frozen=True, kw_only=True)
class NewGELU(ElementWise):
    kind = "gelu_new"
    torch_modules = ("NewGELUActivation",)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        n = num.mul(x)
        return (Kept(Tensor.input, n, what="input (x**3's)"), Kept(Tensor.own, n, what="0.5·x"),
                Kept(Tensor.own, n, what="tanh(√(2/π)·(x + 0.044715·x³))"), Kept(Tensor.own, n, what="1 + tanh(…)"))

    def summary(self, x: Shape) -> str:
        return "Hugging Face's tanh GELU, as separate ops"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", "same shape: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), element-wise")]

    def to_torch(self, x: Shape, nn):
        return nn.NewGELU()

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    tensor_parallel = "columnwise"

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """The eight ops one by one (measured with a TorchDispatchMode, torch 2.13): forward v = 0.5·x first (Python
        evaluates the left factor first), then x³, its scaling, the sum, the scaling, tanh, 1 + tanh, the product.
        Backward: the product's two gradients, tanh's, the scaling's; the sum hands its gradient to x as it is
        and to the cubic term, whose pow backward makes x², 3·x² and the product; x's three gradients meet in
        its buffer (added in place on CUDA, summed anew under a dispatch mode)."""
        if not grad:
            return None  # no node records it (the generic rule: nothing kept)
        n = num.mul(x)
        if amp is not None:
            return self._autocast_program(n, device, *amp)
        fwd = (KeepInput(), New("v", n), New("p", n), New("a", n), Drop("p"), New("b", n), Drop("a"),
               New("c", n), Drop("b"), New("t", n), Drop("c"), New("u", n), New("out", n))
        bwd = (New("gu", n), New("gv", n), Drop("g", "u", "v"), New("gc", n), Drop("gu", "t"), New("gb", n),
               Drop("gc"), HandGradient("gb"), New("ga", n), Drop("gb"), New("x2", n), New("x2s", n), New("gxp", n),
               Drop("x2s", "x2", "ga", "x"), HandGradient("gxp"), Drop("gxp"), New("gxh", n), Drop("gv"),
               HandGradient("gxh"), Drop("gxh"))
        return Program(fwd, bwd)

    def _autocast_program(self, n, device: str, low: str, x: str) -> Program:
        """The same ops under torch.autocast, each in the dtype autocast's policy gives it (archcalc/core/autocast.py). On
        CUDA `pow` is a float32 op: x**3 runs on a float32 copy of x (which PowBackward keeps) and everything after
        it is float32 by promotion, the output too. Backward: the engine casts a gradient to its input's dtype after
        the node (validate_outputs), the copy's ToCopyBackward casts pow's input gradient back to x's dtype."""
        v = autocast.op(device, low, "mul", x)[0]
        p, (cast,) = autocast.op(device, low, "pow", x)
        b = autocast.op(device, low, "add", x, p)[0]
        t = autocast.op(device, low, "tanh", b)[0]
        out = autocast.op(device, low, "mul", v, t)[0]
        fwd = [New("v", n, v)] + ([New("xp", n, p)] if cast else [KeepInput()])
        fwd += [New("p", n, p), New("a", n, p), Drop("p"), New("b", n, b), Drop("a"), New("c", n, b), Drop("b"),
                New("t", n, t), Drop("c"), New("u", n, t), New("out", n, out)]
        bwd: list = [New("gu", n, autocast.op(device, low, "mul", out, v)[0])]
        gv = autocast.op(device, low, "mul", out, t)[0]
        bwd.append(New("gv", n, gv))
        for name, have, want in (("gv", gv, v), ("gu", bwd[0].storage, t)):  # validate_outputs: self's, then other's
            if have != want:
                bwd += [New(name + "2", n, want), Drop(name)]
        gu = "gu2" if bwd[0].storage != t else "gu"
        gvn = "gv2" if gv != v else "gv"
        bwd += [Drop("g", "u", "v"), New("gc", n, t), Drop(gu, "t"), New("gb", n, b), Drop("gc")]
        if b != x:  # x + a: x's gradient cast to x's dtype
            bwd += [New("gbx", n, x), HandGradient("gbx"), Drop("gbx")]
        else:
            bwd.append(HandGradient("gb"))
        saved = "xp" if cast else "x"
        bwd += [New("ga", n, p), Drop("gb"), New("x2", n, p), New("x2s", n, p), New("gxp", n, p),
                Drop("x2s", "x2", "ga", saved)]
        if p != x:  # ToCopyBackward of pow's copy
            bwd += [New("gxc", n, x), Drop("gxp"), HandGradient("gxc"), Drop("gxc")]
        else:
            bwd += [HandGradient("gxp"), Drop("gxp")]
        bwd += [New("gxh", n, v), Drop(gvn), HandGradient("gxh"), Drop("gxh")]
        return Program(tuple(fwd), tuple(bwd))


@register
@dataclass(frozen=True, kw_only=True)
class QuickGELU(ElementWise):
    """Hugging Face's QuickGELUActivation (CLIP's "quick_gelu", activations.py): x·sigmoid(1.702·x) as three tensor ops.
    The product keeps x and the sigmoid's output (which the sigmoid keeps too: one storage); 1.702·x keeps nothing."""

    kind = "quick_gelu"
    torch_modules = ("QuickGELUActivation",)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        n = num.mul(x)
        return (Kept(Tensor.input, n, what="input (the product's)"), Kept(Tensor.own, n, what="sigmoid(1.702·x)"))

    def summary(self, x: Shape) -> str:
        return "Hugging Face's x·sigmoid(1.702·x)"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", "same shape: x·sigmoid(1.702·x), element-wise")]

    def to_torch(self, x: Shape, nn):
        return nn.QuickGELU()
