"""Swin's shifted-window self-attention over an image's tokens [H, W, C] (torchvision's ShiftedWindowAttention, and
Swin V2's ShiftedWindowAttentionV2: cosine attention, the position bias from a small MLP); with module = "maxvit",
MaxViT's RelativePositionalMultiHeadAttention over windows cut already, [windows, N, C] (the same numbers: P = windows·N).

The map is padded to whole windows (pH = ⌈H/wh⌉·wh, pW likewise: P = pH·pW tokens), rolled by −shift_size where the
window is smaller than the padded map, and cut into P/N windows of N = wh·ww tokens; each window is multi-head
self-attention with a learned bias per head and relative position (a table of (2wh − 1)(2ww − 1) rows, gathered by
a fixed index), the shifted windows masked where they join tokens that were not neighbours (−100 added). Every
product runs on the padded tokens: MACs P·C·3C (qkv) + 2·P·N·C (QKᵀ, AV) + P·C·C (proj).

Kept for backward (measured with saved_tensors_hooks, torch 2.13, CPU), per sample: the windows' tokens (qkv's input),
q scaled, a contiguous copy of kᵀ and of v (matmul folds the heads into its batch), the softmax [P/N, heads, N, N], the
heads merged (proj's input): 5·P·C + P·heads·N values. V2 keeps, instead of q scaled and kᵀ: qkv's output, q's and
k's norms and their clamps, copies of the normalised q and kᵀ, the scores before the logit scale; and, once for the
batch, the exp of the logit scale, the bias MLP's hidden values and the bias's sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axes, choice, flag, real, size
from ..core.num import Dim, Shape, Value
from .base import Inexpressible, Kept, Layer, Storage, Tensor, ints, per_axis, register

HIDDEN = 512  # Swin V2's cpb_mlp: Linear(2, 512), ReLU, Linear(512, heads)


@register
@dataclass(frozen=True, kw_only=True)
class WindowAttention(Layer):
    kind = "window_attention"
    colour = "#f6b26b"
    torch_modules = ("ShiftedWindowAttention", "ShiftedWindowAttentionV2", "RelativePositionalMultiHeadAttention")
    torch_attributes = (("n_heads", "num_heads"), ("size", "window_size"))  # MaxViT's names
    num_heads: Dim = size()
    window_size: object = axes()
    shift_size: object = axes(0, minimum=0)
    attention_dropout: Value = real(0, low=0, high=1)
    dropout: Value = real(0, low=0, high=1)  # after the output projection
    bias: bool = flag(True)  # qkv's and proj's
    # Swin V2: cosine attention scaled by a learned logit scale per head, the bias table made by an MLP (cpb_mlp) from
    # log-spaced relative coordinates, 16·sigmoid of it added
    cosine: bool = flag(False)
    # "swin": torchvision's ShiftedWindowAttention over a map [H, W, C]; "maxvit": MaxViT's
    # RelativePositionalMultiHeadAttention over windows already cut, [windows, N, C] (to_qkv, merge, k scaled)
    module: str = choice("swin", "maxvit", default="swin")

    def output(self, x: Shape) -> Shape:
        self.tokens(x)
        return x

    def weights(self, x: Shape) -> Dim:
        c = self.channels(x)
        rows = self.table_rows()
        table = num.normal(rows * self.num_heads)
        if self.cosine:  # logit_scale [heads, 1, 1], cpb_mlp's two Linear weights (the first's bias counts as a bias)
            table = num.normal(self.num_heads + 2 * HIDDEN + HIDDEN * self.num_heads)
        return num.normal(c * 3 * c + c * c + table)

    def biases(self, x: Shape) -> Dim:
        c = self.channels(x)
        return num.normal((4 * c if self.bias else 0) + (HIDDEN if self.cosine else 0))

    def macs(self, x: Shape) -> Dim:
        p, n = self.tokens(x)
        c = self.channels(x)
        return num.normal(p * c * 3 * c + 2 * p * n * c + p * c * c + self.bias_mlp())

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # qkv: its weight's gradient, and its input's when that needs one; QKᵀ and AV: both factors' each; proj: both
        p, n = self.tokens(x)
        c = self.channels(x)
        # V2's cpb_mlp: its first Linear reads a buffer (its weight's gradient only), its second both gradients
        mlp = num.normal(self.table_rows() * (2 * HIDDEN + 2 * HIDDEN * self.num_heads)) if self.cosine else 0
        return num.normal(p * c * 3 * c * (2 if grad else 1) + 4 * p * n * c + 2 * p * c * c + mlp)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        p, n = self.tokens(x)
        c = self.channels(x)
        pc = num.normal(p * c)
        square = num.normal(p * self.num_heads * n)
        kept = [Kept(Tensor.own, pc, what="the windows' tokens (qkv's input)")]
        if self.cosine:
            rows = num.normal(p * self.num_heads)
            kept += [Kept(Tensor.own, num.normal(3 * pc), what="q, k, v (qkv's output)"),
                     Kept(Tensor.own, rows, what="‖q‖"), Kept(Tensor.own, rows, what="‖q‖ clamped"),
                     Kept(Tensor.own, rows, what="‖k‖"), Kept(Tensor.own, rows, what="‖k‖ clamped"),
                     Kept(Tensor.own, pc, what="q normalised (a copy for the product)"),
                     Kept(Tensor.own, pc, what="kᵀ normalised (a copy for the product)"),
                     Kept(Tensor.own, square, what="cosine scores (the logit scale's product)"),
                     Kept(Tensor.own, self.num_heads, per_sample=False, what="exp of the logit scale"),
                     Kept(Tensor.own, num.normal(self.table_rows() * HIDDEN), per_sample=False, what="cpb_mlp's hidden values"),
                     Kept(Tensor.own, num.normal(self.num_heads * n * n), per_sample=False, what="the bias's sigmoid")]
        else:
            kept += [Kept(Tensor.own, pc, what="q scaled"), Kept(Tensor.own, pc, what="kᵀ (a contiguous copy)")]
        kept.append(Kept(Tensor.own, square, what="softmax output"))
        if self.attention_dropout != 0:
            kept += [Kept(Tensor.own, square, Storage.mask, what="attention dropout mask"),
                     Kept(Tensor.own, square, what="dropped scores")]
        kept += [Kept(Tensor.own, pc, what="v (a contiguous copy)"), Kept(Tensor.own, pc, what="heads merged (proj's input)")]
        if self.dropout != 0:
            kept.append(Kept(Tensor.own, pc, Storage.mask, what="dropout mask"))
        return tuple(kept)

    def bias_mlp(self) -> Dim:
        """V2's cpb_mlp MACs: it runs once for the batch, counted here with each sample (torch's count at batch 1)."""
        return num.normal(self.table_rows() * (2 * HIDDEN + HIDDEN * self.num_heads)) if self.cosine else 0

    def channels(self, x: Shape) -> Dim:
        c = x[-1]
        if num.is_concrete(c) and num.is_concrete(self.num_heads) and c % self.num_heads:
            raise SpecError(f"num_heads = {self.num_heads} does not divide the {fmt.group(c)} channels",
                            "each head takes C/num_heads channels", "num_heads")
        return c

    def window(self) -> tuple:
        return per_axis(self.window_size, 2, "window_size")

    def table_rows(self) -> Dim:
        wh, ww = self.window()
        return num.normal((2 * wh - 1) * (2 * ww - 1))

    def tokens(self, x: Shape) -> tuple[Dim, Dim]:
        """P, the padded map's tokens, and N, a window's."""
        if self.module == "maxvit":
            return self._windows(x)
        if len(x) != 3:
            raise SpecError(f"window_attention reads an image's tokens [H, W, C], got {fmt.shape(x)}",
                            "Swin permutes [C, H, W] to [H, W, C] first (permute dims = [1, 2, 0])")
        (wh, ww), shift = self.window(), per_axis(self.shift_size, 2, "shift_size")
        for s, w in zip(shift, (wh, ww)):
            if num.is_concrete(s) and num.is_concrete(w) and s >= w:
                raise SpecError(f"shift_size {s} is not less than the window {w}", "Swin shifts by half a window", "shift_size")
        self.channels(x)
        ph, pw = num.normal(num.ceildiv(x[0], wh) * wh), num.normal(num.ceildiv(x[1], ww) * ww)
        return num.normal(ph * pw), num.normal(wh * ww)

    def _windows(self, x: Shape) -> tuple[Dim, Dim]:
        """MaxViT's windows [G, N, C], N = wh·ww: every token in one window, no padding, no shift."""
        wh, ww = self.window()
        if len(x) != 3:
            raise SpecError(f"module = \"maxvit\" reads windows [windows, N, C], got {fmt.shape(x)}")
        if self.cosine or any(s != 0 for s in per_axis(self.shift_size, 2, "shift_size")):
            raise SpecError("module = \"maxvit\" (MaxViT's windows, cut already) has no shift and no cosine attention",
                            None, "module")
        n = num.normal(wh * ww)
        if num.is_concrete(x[1] - n) and x[1] != n:
            raise SpecError(f"windows of {fmt.group(x[1])} tokens, window_size {fmt.group(wh)}×{fmt.group(ww)} makes {fmt.group(n)}",
                            None, "window_size")
        self.channels(x)
        return num.normal(x[0] * x[1]), n

    def summary(self, x: Shape) -> str:
        wh, ww = self.window()
        shift = per_axis(self.shift_size, 2, "shift_size")
        parts = [f"{fmt.group(self.num_heads)} heads", f"window {fmt.group(wh)}×{fmt.group(ww)}"]
        if any(s != 0 for s in shift):
            parts.append(f"shift {'×'.join(map(fmt.group, shift))}")
        return ", ".join(parts + (["cosine (V2)"] if self.cosine else []) + ([] if self.bias else ["no bias"]))

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        p, n = self.tokens(x)
        c = self.channels(x)
        return [("output", f"the input's shape; {fmt.group(p)} tokens once padded to whole windows of {fmt.group(n)}"),
                ("weights", f"qkv C·3C + proj C·C + the bias table {fmt.group(self.table_rows())}·heads"
                            f"{' (V2: logit scale, cpb_mlp)' if self.cosine else ''} = {fmt.group(self.weights(x))}"),
                ("macs", f"MACs = P·C·3C + 2·P·N·C + P·C·C = {fmt.term(p)}·{fmt.term(c)}·(4·{fmt.term(c)} + 2·{fmt.term(n)}) = "
                         f"{fmt.group(self.macs(x))}")]

    def to_torch(self, x: Shape, nn):
        if self.module == "maxvit":
            wh, _ = self.window()
            return nn.RelativePositionalMultiHeadAttention(int(self.channels(x)), int(self.channels(x) // self.num_heads),
                                                           int(wh) ** 2)
        return nn.ShiftedWindowAttention(int(self.channels(x)), list(ints(self.window())),
                                         list(ints(per_axis(self.shift_size, 2, "shift_size"))), int(self.num_heads),
                                         bias=self.bias, attention_dropout=float(self.attention_dropout),
                                         dropout=float(self.dropout), cosine=self.cosine)

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        if not self.cosine:
            return {}
        why = "it counts cpb_mlp once for the batch; archcalc counts it with each sample (equal at batch 1)"
        return {"flops": (None, why), "training_flops": (None, why)}

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"cosine": True} if torch_name.endswith("V2") else {"module": "maxvit"} if torch_name.startswith("Relative") else {}

    @classmethod
    def torch_read(cls, module) -> dict:
        """qkv's and proj's biases: both, or neither."""
        qkv, proj = (module.to_qkv, module.merge) if hasattr(module, "to_qkv") else (module.qkv, module.proj)
        bias = {qkv.bias is not None, proj.bias is not None}
        if len(bias) != 1:
            raise Inexpressible("with a bias on one of qkv and proj: archcalc's window_attention has both or neither")
        return {} if bias.pop() else {"bias": False}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        _, n = self.tokens(x)
        coords = 2 * self.table_rows() * 4 if self.cosine else 0  # relative_coords_table, float32
        return num.normal(n * n * 8 + coords)  # relative_position_index, int64

    def param_tensors(self, x: Shape) -> tuple[Dim, ...]:
        c = self.channels(x)
        qkv = (num.normal(3 * c * c), 3 * c) if self.bias else (num.normal(3 * c * c),)
        proj = (num.normal(c * c), c) if self.bias else (num.normal(c * c),)
        if self.cosine:
            return (*qkv, *proj, self.num_heads, 2 * HIDDEN, HIDDEN, num.normal(HIDDEN * self.num_heads))
        return (*qkv, *proj, num.normal(self.table_rows() * self.num_heads))
