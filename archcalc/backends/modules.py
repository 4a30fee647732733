"""Torch modules for the layer kinds torch.nn has no module for: a learned tensor, and self-attention.

Imported only by the layers' `to_torch` (and so only once torch is wanted).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Learned(nn.Module):
    """A learned tensor of `shape`, the same for every sample of the input's batch (its first `length` rows)."""

    def __init__(self, shape: tuple[int, ...], length: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, *shape))
        nn.init.normal_(self.weight, std=0.02)
        self.length = length

    def forward(self, x):
        w = self.weight if self.length is None else self.weight[:, : self.length]
        return w.expand(x.shape[0], *w.shape[1:])


class SelfAttention(nn.Module):
    """Multi-head self-attention over [B, T, d]: in_proj (q, k, v fused), the heads, out_proj.

    `math`: attention written as matmuls (FlopCounterMode counts them on every device);
    otherwise torch's scaled_dot_product_attention (fused: flash on CPU without dropout;
    FlopCounterMode counts it as 0 on the CPU in torch 2.13).
    """

    def __init__(self, d: int, heads: int, kv_heads: int, causal: bool = False, dropout: float = 0.0,
                 bias: bool = True, math: bool = False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, d // heads
        self.causal, self.dropout, self.math = causal, dropout, math
        self.in_proj = nn.Linear(d, d + 2 * kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        kv = self.kv_heads * self.head_dim
        q, k, v = self.in_proj(x).split([d, kv, kv], dim=-1)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.math:
            o = self._matmuls(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=self.causal, enable_gqa=self.kv_heads != self.heads)
        return self.out_proj(o.transpose(1, 2).reshape(b, t, d))

    def _matmuls(self, q, k, v):
        if self.kv_heads != self.heads:  # each k/v head serves heads/kv_heads query heads (a copy, as SDPA's math makes)
            k, v = (self._repeat(z) for z in (k, v))
        s = q @ k.transpose(-2, -1) * (1 / math.sqrt(self.head_dim))
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


class Select(nn.Module):
    """x.select(dim, index): one entry of an axis, the axis removed (a view)."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x):
        return x.select(self.dim, self.index)
