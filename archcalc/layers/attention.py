"""Multi-head self-attention over tokens [T, d], with grouped query heads (kv_heads) and a causal flag.

Four projections, as GPT-2 and torch.nn.MultiheadAttention have them: q, k and v in one
fused matrix `in_proj` (d → d + 2·kv_dim, GPT-2's c_attn, MHA's in_proj_weight) and
`out_proj` (d → d, GPT-2's c_proj). FLOPs count every product, 2 per multiply-accumulate,
QKᵀ and AV in full (a causal mask is not halved, as FlopCounterMode counts SDPA on CUDA).

What autograd keeps depends on the kernel (measured with saved_tensors_hooks, torch 2.13, CPU):
- "flash" (torch's scaled_dot_product_attention, fused): the in_proj output (q, k and v are views
  of it), the logsumexp of each query's scores (float32 whatever the dtype) and the attention
  output (which out_proj keeps too);
- "math" (attention written as matmuls, and SDPA's math kernel in the model's dtype): contiguous
  copies of q, kᵀ and v, the softmax's output [heads, T, T], with dropout its mask and the dropped
  scores, and the heads merged back into [T, d] for out_proj.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .. import fmt, num
from ..errors import SpecError
from ..fields import choice, flag, real, size
from ..num import Dim, Shape, Value
from .base import Kept, Layer, register

KERNELS = ("flash", "math")


@register
@dataclass(frozen=True, kw_only=True)
class Attention(Layer):
    kind = "attention"
    num_heads: Dim = size()
    kv_heads: Dim | None = size(None)  # heads of k and v (grouped-query attention); default num_heads
    causal: bool = flag(False)
    dropout: Value = real(0, low=0, high=1)
    bias: bool = flag(True)
    kernel: str = choice(*KERNELS, default="flash")

    def tokens(self, x: Shape) -> tuple[Dim, Dim]:
        """T and d of the input [T, d]."""
        if len(x) != 2:
            raise SpecError(f"attention needs tokens [T, d], got {fmt.shape(x)}",
                            "an image's patches become tokens with a conv, then flatten and permute (see specs/vit_b_16.toml)")
        t, d = x
        kv = self.num_heads if self.kv_heads is None else self.kv_heads
        for whole, part, field, of in ((d, self.num_heads, "num_heads", "d"), (self.num_heads, kv, "kv_heads", "num_heads")):
            if num.is_concrete(whole) and num.is_concrete(part) and whole % part:
                raise SpecError(
                    f"{field} = {fmt.group(part)} does not divide {of} = {fmt.group(whole)}",
                    "each head takes d/num_heads features, and each k/v head serves num_heads/kv_heads query heads",
                    field,
                )
        return t, d

    def kv_dim(self, x: Shape) -> Dim:
        """The width of k (and of v): kv_heads·head_dim."""
        _, d = self.tokens(x)
        return d if self.kv_heads is None else num.normal(num.div(d, self.num_heads) * self.kv_heads)

    def output(self, x: Shape) -> Shape:
        self.tokens(x)
        return x

    def weights(self, x: Shape) -> Dim:
        _, d = self.tokens(x)
        return num.normal(d * (2 * d + 2 * self.kv_dim(x)))

    def biases(self, x: Shape) -> Dim:
        _, d = self.tokens(x)
        return num.normal(2 * d + 2 * self.kv_dim(x)) if self.bias else 0

    def projections(self, x: Shape) -> tuple[Dim, Dim]:
        """MACs of in_proj and of out_proj, per sample."""
        t, d = self.tokens(x)
        return num.normal(t * d * (d + 2 * self.kv_dim(x))), num.normal(t * d * d)

    def scores(self, x: Shape) -> Dim:
        """MACs of QKᵀ (and as many of AV): heads·T·T·head_dim = T²·d, whatever kv_heads."""
        t, d = self.tokens(x)
        return num.normal(t * t * d)

    def macs(self, x: Shape) -> Dim:
        return num.normal(sum(self.projections(x)) + 2 * self.scores(x))

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # in_proj: its weight's gradient, and its input's when that needs one; out_proj: both;
        # QKᵀ and AV: the gradients of both factors of each (q and k, the scores and v)
        inner, outer = self.projections(x)
        return num.normal(inner * (2 if grad else 1) + 2 * outer + 4 * self.scores(x))

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        if self.kernel == "math":
            return {}
        inner, outer = self.projections(x)
        why = "it counts scaled_dot_product_attention as 0 on the CPU, QKᵀ and AV missed"
        out = {"flops": (num.normal(2 * (inner + outer)), why),
               "training_flops": (num.normal(2 * (inner + outer + inner * (2 if grad else 1) + 2 * outer)), why)}
        if self.dropout != 0:
            out["saved_bytes"] = (None, "no fused attention kernel takes dropout on the CPU: torch ran the math one")
        return out

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        t, d = self.tokens(x)
        heads = self.num_heads
        kept = [Kept("input", num.mul(x), what="input (in_proj's)")]
        if self.kernel == "flash":
            return (
                *kept,
                Kept("own", num.normal(t * (d + 2 * self.kv_dim(x))), what="q, k, v (in_proj's output)"),
                Kept("own", num.normal(heads * t), "float32", what="logsumexp per head and query (float32)"),
                Kept("own", num.mul(x), what="attention output (out_proj's input)"),
            )
        square = num.normal(heads * t * t)
        kept += [Kept("own", num.mul(x), what="q (a contiguous copy)"), Kept("own", num.mul(x), what="kᵀ (a contiguous copy)"),
                 Kept("own", square, what="softmax output")]
        if self.dropout != 0:
            kept += [Kept("own", square, "mask", what="dropout mask"), Kept("own", square, what="dropped scores")]
        return (*kept, Kept("own", num.mul(x), what="v (a contiguous copy)"),
                Kept("own", num.mul(x), what="heads merged (out_proj's input)"))

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        _, d = self.tokens(x)
        bias = self.biases(x)
        if quantity in ("params", "weights"):
            extra = bias if quantity == "params" else 0
            out = [(num.normal(self.num_heads * self.weights(x) + extra * self.num_heads),
                    f"every head counted with the whole projections: the heads split d = {fmt.group(d)} into "
                    f"{fmt.group(self.num_heads)} parts of {fmt.group(num.div(d, self.num_heads))}, they add no parameters"),
                   (num.normal(self.weights(x) - d * d + (extra - d if extra else 0)),
                    "out_proj forgotten: after the heads, a d×d projection (GPT-2's c_proj, MHA's out_proj) mixes them")]
            if self.kv_heads not in (None, self.num_heads):
                out.append((num.normal(4 * d * d + (4 * d if extra else 0)),
                            f"k and v counted d wide: with kv_heads = {fmt.group(self.kv_heads)} they are "
                            f"{fmt.group(self.kv_dim(x))} wide (grouped-query attention)"))
            return tuple(out)
        if quantity in ("macs", "flops"):
            factor = 2 if quantity == "flops" else 1
            inner, outer = self.projections(x)
            out = [(num.normal(factor * (inner + outer)), "only the projections: QKᵀ and AV are products too, T²·d MACs each")]
            if self.causal:
                out.append((num.normal(factor * (inner + outer + self.scores(x))),
                            "causal halved: the convention counts QKᵀ and AV in full, masked or not (as torch counts SDPA)"))
            return tuple(out)
        return ()

    def summary(self, x: Shape) -> str:
        parts = [f"{fmt.group(self.num_heads)} heads"]
        if self.kv_heads is not None and self.kv_heads != self.num_heads:
            parts.append(f"{fmt.group(self.kv_heads)} kv")
        parts += [word for word, on in (("causal", self.causal), ("no bias", not self.bias), ("math", self.kernel == "math")) if on]
        if self.dropout != 0:
            parts.append(f"p={fmt.group(self.dropout)}")
        return ", ".join(parts)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        t, d = self.tokens(x)
        head = num.div(d, self.num_heads)
        kv = self.kv_dim(x)
        head_text = f"head_dim = d/num_heads = {fmt.term(d)}/{fmt.term(self.num_heads)} = {fmt.group(head)}"
        kv_text = "" if self.kv_heads is None else f"; k and v: kv_heads·head_dim = {fmt.term(self.kv_heads)}·{fmt.term(head)} = {fmt.group(kv)} wide"
        inner, outer = self.projections(x)
        lines = [
            ("output", f"{head_text}{kv_text}; the heads are concatenated back: {fmt.shape(x)}"),
            ("weights", f"weights = d·(d + 2·{'kv_dim' if self.kv_heads is not None else 'd'}) + d·d (q, k, v, out; the heads split d, they add none)"
                        f" = {fmt.term(d)}·{fmt.term(num.normal(d + 2 * kv))} + {fmt.term(d)}·{fmt.term(d)} = {fmt.group(self.weights(x))}"),
            ("biases", f"biases = d + 2·{'kv_dim' if self.kv_heads is not None else 'd'} + d = {fmt.group(self.biases(x))}"
             if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = projections {fmt.group(inner)} + {fmt.group(outer)}, QKᵀ and AV T²·d each = {fmt.term(t)}²·{fmt.term(d)}"
                     f"{' (causal: counted in full)' if self.causal else ''} → {fmt.group(self.macs(x))}"),
        ]
        return lines

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return ("linear", "scaled_dot_product_attention")

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,)  # the projections' weights (their linear nodes keep them; the input needs a gradient in a transformer)

    def to_torch(self, x: Shape, nn):
        from ..backends.modules import SelfAttention

        _, d = self.tokens(x)
        kv = self.num_heads if self.kv_heads is None else self.kv_heads
        return SelfAttention(int(d), int(self.num_heads), int(kv), causal=self.causal, dropout=float(Fraction(self.dropout)),
                             bias=self.bias, math=self.kernel == "math")
