"""The torch modules archcalc adds to torch.nn: the merge layers, the module that runs a graph, and the
modules of sequence models (a learned tensor, self-attention, select).

Each keeps its constructor's arguments under their names, as torch.nn's modules do: `archcalc export` writes the
constructor call back from them (backends/library.py), with the class's source.

Imports torch: only the backend imports this file; a layer kind meets these modules through `Namespace`, the `nn`
its `to_torch` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .lora import LoraLinear  # noqa: F401  (a name of Namespace)


class Add(nn.Module):
    """The element-wise sum of its inputs, broadcasting as torch does (a residual connection)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    """The element-wise product of its inputs, broadcasting (squeeze-and-excitation gating)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    """Its inputs side by side along `dim`, an axis of one sample (0: the channels, torch's dim 1)."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim + 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


@dataclass(frozen=True)
class Step:
    """One row of the report as the graph runs it: its modules' paths, what it reads, what it frees after."""

    modules: tuple[str, ...]  # the layer's path, then its activation's
    inputs: tuple[int, ...]  # slots of the tensors it reads (0: the model's input)
    free: tuple[int, ...]  # slots no later step reads: dropped once this one has run


@dataclass(frozen=True)
class Region:
    """Steps [start, stop) run as one activation-checkpointed function (a block use with `checkpoint = true`):
    it reads `inputs` (slots made before it), returns `outputs` (its slots read after it), then `free` is dropped."""

    start: int
    stop: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    free: tuple[int, ...]


class Graph(nn.Module):
    """A network whose submodules sit at the spec's dotted paths (so its state_dict keys are the
    spec's layer names) and whose forward runs the report's rows in execution order, each reading
    the tensors its `from` names, every tensor dropped as soon as nothing later reads it.

    In training with gradients on, each region runs through torch.utils.checkpoint.checkpoint
    (use_reentrant=False, early stop): its forward is rerun in backward instead of keeping its tensors."""

    def __init__(self, steps: tuple[Step, ...], regions: tuple[Region, ...] = (), outputs: tuple[tuple[str, int], ...] = (),
                 result: int | None = None) -> None:
        super().__init__()
        self.steps = steps
        self.regions = regions
        self.outputs = outputs  # several: (name, slot) each, returned as a dict (torchvision's segmentation models' "out", "aux")
        self.result = len(steps) if result is None else result  # one output: its slot ([model] outputs may name any row)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {0: x}
        checkpointed = self.training and torch.is_grad_enabled()
        slot = 1
        for region in self.regions if checkpointed else ():
            self._run(values, slot, region.start)
            outputs = checkpoint(self._region, region, *(values[i] for i in region.inputs), use_reentrant=False)
            values.update(zip(region.outputs, outputs))
            del outputs
            for i in region.free:
                del values[i]
            slot = region.stop
        self._run(values, slot, len(self.steps) + 1)
        if self.outputs:
            return {name: values[i] for name, i in self.outputs}
        return values[self.result]

    def _region(self, region: Region, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = dict(zip(region.inputs, xs))
        del xs
        self._run(values, region.start, region.stop)
        return tuple(values[i] for i in region.outputs)

    def _run(self, values: dict[int, torch.Tensor], start: int, stop: int) -> None:
        """Steps [start, stop) (slots from 1), their outputs into `values`."""
        for slot in range(start, stop):
            step = self.steps[slot - 1]
            first, *rest = step.modules
            y = self.get_submodule(first)(*(values[i] for i in step.inputs))
            for name in rest:
                y = self.get_submodule(name)(y)
            values[slot] = y
            for i in step.free:
                values.pop(i, None)  # a region's input is dropped by the caller, once the region has run


class Learned(nn.Module):
    """A learned tensor of `shape`, the same for every sample of the input's batch (its first `length` rows).

    torch holds it as [1, *shape], or as `held` (ConvNeXt's layer_scale [C, 1, 1]), viewed as [1, *shape]; `bare`:
    its state_dict key is the module's own path (a bare nn.Parameter's, torchvision's class_token), not `.weight`;
    `expand`: expanded over the batch (for a concat), else returned as it is (an add or a mul broadcasts it);
    `indices`: its first rows looked up as an nn.Embedding does, by that many int64 indices made per call (positions
    0, 1, 2..., past `length` the last row: a token type of 0 repeated), which the lookup keeps for its backward."""

    def __init__(self, shape: tuple[int, ...], length: int | None = None, held: tuple[int, ...] | None = None,
                 bare: bool = False, expand: bool = True, indices: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*(held or (1, *shape))))
        nn.init.normal_(self.weight, std=0.02)
        self.shape, self.length, self.held, self.expand = tuple(shape), length, held, expand
        self.indices = indices
        self.bare = bare  # build registers the loading side on the root module (bare_keys)
        if bare:
            self.register_state_dict_post_hook(_bare_key)

    def forward(self, x):
        w = self.weight if self.held is None else self.weight.view(1, *self.shape)
        if self.indices is not None:
            rows = torch.arange(self.indices, device=w.device).clamp(max=(self.length or self.shape[0]) - 1)
            table = w[0]
            mesh = getattr(table, "device_mesh", None)  # a replicated DTensor (tensor parallelism): its indices too
            rows = rows if mesh is None else type(table).from_local(rows, mesh, table.placements, run_check=False)
            w = F.embedding(rows, table)[: self.length].unsqueeze(0)
        else:
            w = w if self.length is None else w[:, : self.length]
        return w.expand(x.shape[0], *w.shape[1:]) if self.expand else w  # as it is: the add or mul reading it broadcasts


def _bare_key(module, state_dict, prefix, local_metadata):
    """A bare parameter's key: the module's path (`layer_scale`), as torch names an nn.Parameter attribute."""
    if prefix + "weight" in state_dict:
        state_dict[prefix[:-1]] = state_dict.pop(prefix + "weight")


def bare_keys(root: nn.Module) -> nn.Module:
    """Let `root` load a state_dict that names its bare parameters by their paths (`b.layer_scale`): a hook on the
    root, as a child's own hook never sees a key outside its prefix (load_state_dict hands it only `b.layer_scale.*`)."""
    paths = [path for path, module in root.named_modules() if getattr(module, "bare", False) and path]
    if paths:
        def load(module, state_dict, prefix, *_):
            for path in paths:
                if prefix + path in state_dict and f"{prefix}{path}.weight" not in state_dict:
                    state_dict[f"{prefix}{path}.weight"] = state_dict.pop(prefix + path)
        root.register_load_state_dict_pre_hook(load)
    return root


class SelfAttention(nn.Module):
    """Multi-head self-attention over [B, T, d]: in_proj (q, k, v fused), the heads, out_proj.

    `math`: attention written as matmuls (FlopCounterMode counts them on every device);
    otherwise torch's scaled_dot_product_attention (fused: flash on CPU without dropout;
    FlopCounterMode counts it as 0 on the CPU in torch 2.13). `cache`: k and v appended to an empty
    cache first, as transformers' DynamicLayer.update does with use_cache (a copy of each).
    """

    def __init__(self, d: int, heads: int, kv_heads: int, causal: bool = False, dropout: float = 0.0,
                 bias: bool = True, math: bool = False, cache: bool = False):
        super().__init__()
        self.d, self.heads, self.kv_heads, self.head_dim = d, heads, kv_heads, d // heads
        self.causal, self.dropout, self.bias, self.math, self.cache = causal, dropout, bias, math, cache
        self.in_proj = nn.Linear(d, d + 2 * kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)
        self.register_load_state_dict_pre_hook(_multihead_names)

    def forward(self, x, bias=None):
        b, t, _ = x.shape
        # the heads this module computes: all of them, or under tensor parallelism this rank's (heads set to
        # heads/tp, in_proj's output this rank's columns: archcalc/backends/distributed.py)
        d, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = self.in_proj(x).split([d, kv, kv], dim=-1)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.cache:
            k, v = (torch.cat([torch.tensor([], dtype=z.dtype, device=z.device), z], dim=-2) for z in (k, v))
        if self.math:
            o = self._matmuls(q, k, v, bias)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=self.causal, enable_gqa=self.kv_heads != self.heads)
        o = o.transpose(1, 2).reshape(b, t, d)  # the heads' output is freed here when this copies (as in GPT-2's)
        return self.out_proj(o)

    def _matmuls(self, q, k, v, bias=None):
        if self.kv_heads != self.heads:  # each k/v head serves heads/kv_heads query heads (a copy, as SDPA's math makes)
            k, v = (self._repeat(z) for z in (k, v))
        s = q @ k.transpose(-2, -1) * (1 / math.sqrt(self.head_dim))
        if bias is not None:  # T5's relative position bias, added to the scores
            s = s + bias
        if self.causal:  # an additive mask: adding keeps nothing for backward (masked_fill would keep a mask)
            t = s.shape[-1]
            s = s + torch.full((t, t), float("-inf"), dtype=s.dtype, device=s.device).triu(1)
        a = s.softmax(dim=-1)
        if self.dropout and self.training:
            a = F.dropout(a, self.dropout)
        return a @ v

    def _repeat(self, z):
        b, h, t, e = z.shape
        return z[:, :, None].expand(b, h, self.heads // h, t, e).reshape(b, self.heads, t, e)


class NewGELU(nn.Module):
    """Hugging Face's NewGELUActivation (transformers/activations.py): the tanh GELU as separate tensor ops."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class QuickGELU(nn.Module):
    """Hugging Face's QuickGELUActivation (transformers/activations.py, CLIP's "quick_gelu"): x·sigmoid(1.702·x)."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Conv1D(nn.Module):
    """Hugging Face's Conv1D (transformers/pytorch_utils.py, GPT-2's): a linear layer whose weight is [in, out], by addmm."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.nf, self.nx = out_features, in_features
        self.in_features, self.out_features = in_features, out_features  # as nn.Linear names them (LoRA reads them)
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size = (*x.shape[:-1], self.nf)
        flat = x.view(-1, x.size(-1))
        out = torch.addmm(self.bias, flat, self.weight) if self.bias is not None else flat @ self.weight
        return out.view(size)


class ShiftedWindowAttention(nn.Module):
    """Swin's shifted-window attention as torchvision writes it (models/swin_transformer.py: ShiftedWindowAttention,
    ShiftedWindowAttentionV2 with `cosine`), under its names (qkv, proj, relative_position_bias_table, or logit_scale and
    cpb_mlp; the buffers relative_position_index, relative_coords_table), so that its state_dict loads strictly."""

    def __init__(self, dim: int, window_size: list, shift_size: list, num_heads: int, bias: bool = True,
                 attention_dropout: float = 0.0, dropout: float = 0.0, cosine: bool = False):
        super().__init__()
        self.dim, self.window_size, self.shift_size, self.num_heads = dim, list(window_size), list(shift_size), num_heads
        self.bias, self.attention_dropout, self.dropout, self.cosine = bias, attention_dropout, dropout, cosine
        self.qkv = nn.Linear(dim, dim * 3, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        wh, ww = self.window_size
        if cosine:
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
            self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
            h = torch.arange(-(wh - 1), wh, dtype=torch.float32)
            w = torch.arange(-(ww - 1), ww, dtype=torch.float32)
            table = torch.stack(torch.meshgrid([h, w], indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
            table[:, :, :, 0] /= max(wh - 1, 1)
            table[:, :, :, 1] /= max(ww - 1, 1)
            table *= 8
            self.register_buffer("relative_coords_table", torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0)
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.flatten(torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")), 1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += wh - 1
        relative[:, :, 1] += ww - 1
        relative[:, :, 0] *= 2 * ww - 1
        self.register_buffer("relative_position_index", relative.sum(-1).flatten())

    def _bias(self):
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads) if self.cosine else self.relative_position_bias_table
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.cosine else bias

    def forward(self, input):
        bias = self._bias()
        (wh, ww), heads = self.window_size, self.num_heads
        B, H, W, C = input.shape
        x = F.pad(input, (0, 0, 0, (ww - W % ww) % ww, 0, (wh - H % wh) % wh))
        _, ph, pw, _ = x.shape
        shift = [0 if wh >= ph else self.shift_size[0], 0 if ww >= pw else self.shift_size[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = (ph // wh) * (pw // ww)
        x = x.view(B, ph // wh, wh, pw // ww, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B * windows, wh * ww, C)
        qkv_bias = self.qkv.bias
        if self.cosine and qkv_bias is not None:
            qkv_bias = qkv_bias.clone()
            qkv_bias[C : 2 * C].zero_()
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.cosine:
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        else:
            attn = (q * (C // heads) ** -0.5).matmul(k.transpose(-2, -1))
        attn = attn + bias
        if sum(shift) > 0:
            mask = x.new_zeros((ph, pw))
            count = 0
            for h in ((0, -wh), (-wh, -shift[0]), (-shift[0], None)):
                for w in ((0, -ww), (-ww, -shift[1]), (-shift[1], None)):
                    mask[h[0] : h[1], w[0] : w[1]] = count
                    count += 1
            mask = mask.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(windows, wh * ww)
            mask = mask.unsqueeze(1) - mask.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, (-100.0)).masked_fill(mask == 0, 0.0)
            attn = attn.view(x.size(0) // windows, windows, heads, x.size(1), x.size(1)) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, x.size(1), x.size(1))
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
        x = F.dropout(F.linear(x, self.proj.weight, self.proj.bias), p=self.dropout, training=self.training)
        x = x.view(B, ph // wh, pw // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(B, ph, pw, C)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


class RelativePositionalMultiHeadAttention(nn.Module):
    """MaxViT's attention in windows [B, G, P, D] (torchvision's models/maxvit.py): to_qkv, k scaled, einsum, the relative
    position bias of a table [(2s − 1)², heads] gathered by relative_position_index [P, P], merge; under its names."""

    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int):
        super().__init__()
        self.feat_dim, self.n_heads, self.head_dim = feat_dim, feat_dim // head_dim, head_dim
        self.size, self.max_seq_len = int(math.sqrt(max_seq_len)), max_seq_len
        self.to_qkv = nn.Linear(feat_dim, self.n_heads * head_dim * 3)
        self.scale_factor = feat_dim**-0.5
        self.merge = nn.Linear(head_dim * self.n_heads, feat_dim)
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * self.size - 1) ** 2, self.n_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.flatten(torch.stack(torch.meshgrid([torch.arange(self.size)] * 2, indexing="ij")), 1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += self.size - 1
        relative[:, :, 1] += self.size - 1
        relative[:, :, 0] *= 2 * self.size - 1
        self.register_buffer("relative_position_index", relative.sum(-1))

    def forward(self, x):
        B, G, P, D = x.shape
        H, DH = self.n_heads, self.head_dim
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q, k, v = (z.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4) for z in (q, k, v))
        k = k * self.scale_factor
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(self.max_seq_len, self.max_seq_len, -1)
        attn = F.softmax(torch.einsum("B G H I D, B G H J D -> B G H I J", q, k) + bias.permute(2, 0, 1).contiguous().unsqueeze(0), dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", attn, v).permute(0, 1, 3, 2, 4).reshape(B, G, P, D)
        return self.merge(out)


def relative_buckets(t: int, bidirectional: bool, num_buckets: int, max_distance: int, device=None):
    """T5's bucket of each relative position j − i, [T, T] (transformers' T5Attention._relative_position_bucket)."""
    position = torch.arange(t, device=device)[None, :] - torch.arange(t, device=device)[:, None]
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (position > 0).to(torch.long) * num_buckets
        position = torch.abs(position)
    else:
        position = -torch.min(position, torch.zeros_like(position))
    exact = num_buckets // 2
    large = exact + (torch.log(position.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(position < exact, position, large)


class RelativeBias(nn.Module):
    """T5's relative position bias (T5Attention.compute_bias): [1, heads, T, T] from a table [num_buckets, heads]."""

    def __init__(self, num_buckets: int, heads: int, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.num_buckets, self.heads, self.max_distance, self.bidirectional = num_buckets, heads, max_distance, bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, heads))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        buckets = relative_buckets(x.shape[1], self.bidirectional, self.num_buckets, self.max_distance, x.device)
        return F.embedding(buckets, self.weight).permute([2, 0, 1]).unsqueeze(0)


class RotaryTables(nn.Module):
    """transformers' LlamaRotaryEmbedding as LlamaModel calls it, positions 0..T-1 for the whole batch: (cos, sin), each
    [1, T, head_dim] in the input's dtype, computed in float32 (inv_freq and its copy original_inv_freq: buffers)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    def forward(self, x):
        position_ids = (torch.arange(x.shape[1], device=x.device) + 0)[None]  # LlamaModel's: arange + the cache's length
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * 1.0
        sin = emb.sin() * 1.0
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def _rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaSelfAttention(nn.Module):
    """transformers' LlamaAttention (Mistral's, Qwen2's) as it runs by default (attn_implementation="sdpa", no mask):
    q_proj, k_proj, v_proj, q and k rotated by the rotary tables (rotate_half), scaled_dot_product_attention with
    enable_gqa, the heads merged (.contiguous()), o_proj."""

    def __init__(self, d: int, heads: int, kv_heads: int, causal: bool = True, bias: bool = False, out_bias: bool | None = None):
        super().__init__()
        self.d, self.heads, self.kv_heads, self.head_dim, self.causal = d, heads, kv_heads, d // heads, causal
        self.bias, self.out_bias = bias, out_bias
        self.q_proj = nn.Linear(d, heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * self.head_dim, d, bias=bias if out_bias is None else out_bias)

    def forward(self, hidden_states, tables=None):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        if tables is not None:
            cos, sin = tables
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
            query_states, key_states = ((query_states * cos) + (_rotate_half(query_states) * sin),
                                        (key_states * cos) + (_rotate_half(key_states) * sin))
        attn_output = F.scaled_dot_product_attention(query_states, key_states, value_states, scale=self.head_dim ** -0.5,
                                                     is_causal=self.causal and input_shape[1] > 1,
                                                     enable_gqa=self.kv_heads != self.heads)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output)


class MultiheadSelfAttention(nn.MultiheadAttention):
    """torch.nn.MultiheadAttention over [B, T, d] (batch_first) as torchvision's ViT calls it: self-attention,
    need_weights=False (so that training runs scaled_dot_product_attention); its parameters keep their names."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(d, heads, dropout=dropout, bias=bias, batch_first=True)
        self.d, self.heads, self.bias = d, heads, bias  # dropout: nn.MultiheadAttention keeps it

    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]


def _multihead_names(module, state_dict, prefix, *_):
    """nn.MultiheadAttention's in_proj_weight and in_proj_bias load as in_proj.weight and in_proj.bias (the same
    fused [q; k; v] matrix), so an imported MultiheadAttention's state_dict loads strictly; its own keys stay."""
    for name in ("weight", "bias"):
        if f"{prefix}in_proj_{name}" in state_dict and f"{prefix}in_proj.{name}" not in state_dict:
            state_dict[f"{prefix}in_proj.{name}"] = state_dict.pop(f"{prefix}in_proj_{name}")


class Select(nn.Module):
    """x.select(dim, index): one entry of an axis, the axis removed (a view)."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index
        self.source = f"x.select({dim}, {index})"

    def forward(self, x):
        return x.select(self.dim, self.index)


class LlamaRMSNorm(nn.Module):
    """transformers' LlamaRMSNorm, as it writes it: in float32, cast back to the input's dtype, then times γ."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.hidden_size, self.eps, self.variance_epsilon = hidden_size, eps, eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class Slice(nn.Module):
    """x[..., start:stop:step] along `dim` (torch's dim, the batch axis 0): a view."""

    def __init__(self, dim: int, start: int, stop: int, step: int = 1):
        super().__init__()
        self.dim, self.start, self.stop, self.step = dim, start, stop, step
        self.source = f"x[{':, ' * dim}{start}:{stop}{'' if step == 1 else f':{step}'}]"  # what export writes

    def forward(self, x):
        index = [slice(None)] * self.dim + [slice(self.start, self.stop, self.step)]
        return x[tuple(index)]


class Mean(nn.Module):
    """x.mean(dims, keepdim): global average pooling as x.mean((2, 3)) writes it."""

    def __init__(self, dims: tuple[int, ...], keepdim: bool = False):
        super().__init__()
        self.dims, self.keepdim = tuple(dims), keepdim
        self.source = f"x.mean({self.dims}{', keepdim=True' if keepdim else ''})"

    def forward(self, x):
        return x.mean(self.dims, keepdim=self.keepdim)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth (timm's DropPath in "row" mode), as torchvision writes it: in training each
    sample's ("row") or the batch's ("batch") values times one noise value, 0 with probability p, else 1/(1 - p)."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode
        size = "(x.shape[0],) + (1,) * (x.ndim - 1)" if mode == "row" else "(1,) * x.ndim"
        q = 1.0 - p
        self.source = f"(x * x.new_empty({size}).bernoulli_({q!r}).div_({q!r}) if self.training else x)"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class Namespace:
    """What a layer's `to_torch(x, nn)` is given: torch.nn, with archcalc's own modules beside its classes
    (`nn.Add()`, `nn.SelfAttention(...)`), so that the layer kinds never import the backend."""

    OWN = ("Add", "Mul", "Concat", "Learned", "SelfAttention", "MultiheadSelfAttention", "NewGELU", "Select", "Slice",
           "Mean", "StochasticDepth", "LlamaRMSNorm", "RotaryTables", "LlamaSelfAttention", "LoraLinear", "QuickGELU", "Conv1D",
           "ShiftedWindowAttention", "RelativeBias", "RelativePositionalMultiHeadAttention")

    def __getattr__(self, name: str):
        return globals()[name] if name in self.OWN else getattr(nn, name)


NN = Namespace()
