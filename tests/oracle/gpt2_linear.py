"""GPT-2 as Hugging Face's transformers builds it (models/gpt2/modeling_gpt2.py, sdpa attention, NewGELUActivation,
ForCausalLMLoss: tests/memory/test_timeline_gpt2.py has the same model op for op), written with nn.Linear instead
of transformers' Conv1D, so that torch's tensor-parallel plans (ColwiseParallel, RowwiseParallel: nn.Linear and
nn.Embedding only) apply to it. nn.Linear on [B, T, d] is one addmm on a view, as Conv1D is: the same storages.

The fused q, k, v projection is split in three equal parts (`chunk`), and the heads are read from its width, so
that the same module runs whole or tensor-parallel (each rank its column shard of c_attn: its own heads, as
Megatron lays out its fused QKV weight). Only tests import this module.
"""

from __future__ import annotations

import math

import torch

nn = torch.nn
F = torch.nn.functional


class NewGELUActivation(nn.Module):
    def forward(self, input):
        return 0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (input + 0.044715 * torch.pow(input, 3.0))))


class Attention(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.head_dim = d // heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.attn_dropout = nn.Dropout(p)
        self.resid_dropout = nn.Dropout(p)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).chunk(3, dim=2)  # HF: split(split_size): the same views
        shape = (*query.shape[:-1], -1, self.head_dim)
        query, key, value = (z.view(shape).transpose(1, 2) for z in (query, key, value))
        dropout = self.attn_dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=self.head_dim**-0.5,
                                             is_causal=query.shape[2] > 1)
        out = out.transpose(1, 2).contiguous()
        out = out.reshape(*out.shape[:-2], -1).contiguous()
        return self.resid_dropout(self.c_proj(out))


class MLP(nn.Module):
    def __init__(self, d, p):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(p)

    def forward(self, hidden_states):
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class Block(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads, p)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d, p)

    def forward(self, hidden_states):
        residual = hidden_states
        hidden_states = self.ln_1(hidden_states)
        hidden_states = self.attn(hidden_states) + residual
        residual = hidden_states
        hidden_states = self.ln_2(hidden_states)
        return residual + self.mlp(hidden_states)


class Transformer(nn.Module):
    """GPT2Model, but for one local: the position embeddings are held until its forward returns, as in transformers;
    the token embeddings go once added (transformers holds `inputs_embeds` to the end too; archcalc's timeline frees a
    tensor once its readers have run, as archcalc's own Graph module does: one [B, T, d] apart in the blocks)."""

    def __init__(self, vocab, n_ctx, d, heads, layers, p):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_ctx, d)
        self.drop = nn.Dropout(p)
        self.h = nn.ModuleList([Block(d, heads, p) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, input_ids):
        position_ids = torch.arange(0, input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        position_embeds = self.wpe(position_ids)
        inputs_embeds = self.wte(input_ids)  # GPT2Model holds it until it returns, as archcalc's timeline does
        hidden_states = self.drop(inputs_embeds + position_embeds)
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.ln_f(hidden_states)


class GPT2(nn.Module):
    """GPT2LMHeadModel: the transformer, then lm_head, tied to wte."""

    def __init__(self, vocab, n_ctx, d, heads, layers, p):
        super().__init__()
        self.transformer = Transformer(vocab, n_ctx, d, heads, layers, p)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


def plan(layers: int) -> dict[str, str]:
    """Megatron's tensor-parallel plan of the model: the fused q, k, v and the MLP's first projection
    column-parallel, the output projections row-parallel."""
    out = {}
    for i in range(layers):
        block = f"transformer.h.{i}"
        out |= {f"{block}.attn.c_attn": "colwise", f"{block}.attn.c_proj": "rowwise",
                f"{block}.mlp.c_fc": "colwise", f"{block}.mlp.c_proj": "rowwise"}
    return out
