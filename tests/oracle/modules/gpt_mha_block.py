"""A GPT-2 block written the common way with torch's own modules: pre-norm nn.MultiheadAttention
(batch_first, self-attention, a causal mask made from the sequence length), then an MLP of
nn.Linear and nn.GELU, each with a residual add."""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, dropout: float = 0.0, need_weights: bool = False) -> None:
        super().__init__()
        self.need_weights = need_weights  # True: torch computes the weights with matmuls (its math path)
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        mask = torch.triu(torch.full((T, T), float("-inf"), device=x.device), diagonal=1)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=self.need_weights)[0]
        x = x + self.mlp(self.ln_2(x))
        return x
