"""Attention in the memory timeline against the CPU oracle (tests/oracle/timeline_probe.py), to the byte, per phase.

Networks of tokens [T, d] are drawn as a spec and as torch modules written here (a reference attention with
in_proj, the heads as views, torch's scaled_dot_product_attention or explicit matmuls, out_proj; layernorm,
dense per token, gelu), and run through a real training step; archcalc's timeline must agree with the live
storages' high-water mark in every phase. Batches, heads, tokens and head sizes are 2 or more: with a single one,
some of torch's reshapes of the heads are views instead of copies (not modelled: the timeline counts the copy).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
from tests.memory.test_memory_oracle import Net  # noqa: E402
from tests.memory.test_timeline_oracle import oracle, phases  # noqa: E402


class Attention(nn.Module):
    """Self-attention over [B, T, d] as a model written by hand does it (the reference for the `attention` kind)."""

    def __init__(self, d, heads, kv_heads, causal, dropout, bias, math_kernel):
        super().__init__()
        self.heads, self.kv_heads, self.e = heads, kv_heads, d // heads
        self.causal, self.p, self.math = causal, dropout, math_kernel
        self.in_proj = nn.Linear(d, d + 2 * kv_heads * self.e, bias=bias)
        self.out_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.in_proj(x).split([d, self.kv_heads * self.e, self.kv_heads * self.e], dim=-1)
        q = q.view(b, t, self.heads, self.e).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.e).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.e).transpose(1, 2)
        if not self.math:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=self.causal,
                                               enable_gqa=self.kv_heads != self.heads)
        else:
            o = self.matmuls(q, k, v)
        o = o.transpose(1, 2).reshape(b, t, d)  # the heads' output freed once copied, as Hugging Face's GPT-2 does
        return self.out_proj(o)

    def matmuls(self, q, k, v):
        b, _, t, _ = q.shape
        if self.kv_heads != self.heads:
            k, v = (z[:, :, None].expand(b, self.kv_heads, self.heads // self.kv_heads, t, self.e)
                    .reshape(b, self.heads, t, self.e) for z in (k, v))
        s = q @ k.transpose(-2, -1) * (1 / math.sqrt(self.e))
        if self.causal:
            s = s + torch.full((t, t), float("-inf"), dtype=s.dtype).triu(1)
        a = s.softmax(dim=-1)
        if self.p and self.training:
            a = F.dropout(a, self.p)
        return a @ v  # the scores are freed as this returns, before the heads are merged


class Multihead(nn.Module):
    """torch.nn.MultiheadAttention as torchvision's ViT calls it (batch_first, need_weights=False)."""

    def __init__(self, d, heads, dropout, bias):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@st.composite
def token_networks(draw):
    heads = draw(st.integers(2, 3))
    d = heads * draw(st.integers(2, 3))
    t = draw(st.integers(2, 6))
    net = Net((t, d))
    net.input = [t, d]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["attention", "attention", "layernorm", "dense", "activation"]))
        d = net.shape[1]
        if kind == "attention":
            heads = draw(st.sampled_from([h for h in (2, 3) if d % h == 0 and d > h] or [0]))
            if not heads:
                continue
            kv = draw(st.sampled_from([k for k in (1, 2, 3) if heads % k == 0]))
            causal, bias = draw(st.booleans()), draw(st.booleans())
            p = draw(st.sampled_from([0.0, 0.0, 0.5]))
            if not causal and kv == heads and draw(st.integers(0, 2)) == 0:  # torch.nn.MultiheadAttention itself
                table = dict(type="attention", num_heads=heads, bias=bias, module="multihead")
                if p:
                    table["dropout"] = p
                net.add(table, Multihead(d, heads, p, bias))
                # its output is a transposed view of [T, B, d]: a layernorm next (as in ViT, after the residual add)
                # copies it inside its kernel; a linear would keep a contiguous copy, which the timeline does not model
                net.add(dict(type="layernorm"), nn.LayerNorm(d))
                continue
            kernel = draw(st.sampled_from(["flash", "math"]))
            table = dict(type="attention", num_heads=heads, causal=causal, bias=bias, kernel=kernel)
            if kv != heads:
                table["kv_heads"] = kv
            if p:
                table["dropout"] = p
            net.add(table, Attention(d, heads, kv, causal, p, bias, kernel == "math"))
        elif kind == "layernorm":
            net.add(dict(type="layernorm"), nn.LayerNorm(d))
        elif kind == "dense":
            out = draw(st.integers(1, 3)) * draw(st.sampled_from([2, 3]))
            if draw(st.booleans()):
                net.add(dict(type="dense", out_features=out, activation="gelu"), nn.Linear(d, out), nn.GELU())
            else:
                net.add(dict(type="dense", out_features=out), nn.Linear(d, out))
        else:
            net.add(dict(type="activation", function="gelu"), nn.GELU())
    net.add(dict(type="dense", out_features=draw(st.integers(2, 4))), nn.Linear(net.shape[1], net.shape[1] + 1))
    net.tables[-1]["out_features"] = net.shape[1]
    return net


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=token_networks(), batch=st.integers(2, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(["sgd", "adam"]))
def test_drawn_token_networks_step_by_step(net, batch, dtype, optimizer):
    if any(t.get("type") == "attention" and t.get("kernel") != "math" and t.get("dropout") for t in net.tables):
        dtype = "float32"  # in bfloat16 SDPA's math fallback on the CPU computes in float32: not modelled
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, dtype=dtype, optimizer=optimizer)
    # [T, k] scores: cross-entropy per token (archcalc.timeline.loss_of)
    assert phases(report, batch) == oracle(nn.Sequential(*net.modules), net.input, batch, dtype, optimizer, "tokens"), net.spec()


BLOCK = """
[model]
input = [5, 8]
[blocks.block]
[[blocks.block.layers]]
name = "ln_1"
type = "layernorm"
[[blocks.block.layers]]
name = "attn"
type = "attention"
num_heads = 2
causal = {causal}
kernel = "{kernel}"
dropout = {dropout}
[[blocks.block.layers]]
name = "add_1"
type = "add"
from = ["input", "attn"]
[[blocks.block.layers]]
name = "ln_2"
type = "layernorm"
[[blocks.block.layers]]
name = "fc"
type = "dense"
out_features = 16
activation = "gelu"
[[blocks.block.layers]]
name = "proj"
type = "dense"
out_features = 8
[[blocks.block.layers]]
name = "add_2"
type = "add"
from = ["add_1", "proj"]
[[layers]]
name = "h"
type = "block"
block = "block"
repeat = 2
[[layers]]
name = "head"
type = "dense"
out_features = 6
"""


@pytest.mark.parametrize("kernel, causal, dropout", [("flash", "true", 0), ("flash", "false", 0.25), ("math", "true", 0.25)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pre_norm_blocks_as_archcalc_builds_them(kernel, causal, dropout, optimizer):
    """Residual blocks (a graph: archcalc's Graph module and its SelfAttention), two in a row."""
    from archcalc.backends.build import build

    spec = archcalc.loads(BLOCK.format(kernel=kernel, causal=causal, dropout=dropout))
    report = archcalc.analyze(spec, batch=3, optimizer=optimizer)
    assert phases(report, 3) == oracle(build(spec), report.input, 3, "float32", optimizer, "tokens")  # per token


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=token_networks(), batch=st.integers(2, 3), optimizer=st.sampled_from(["sgd", "adam"]),
       low=st.sampled_from(["bfloat16", "float16"]))
def test_drawn_token_networks_under_autocast(net, batch, optimizer, low):
    """bf16-mixed and 16-mixed (with its GradScaler): attention's program in autocast's dtypes (its input and weight
    copies, the fused CPU kernel).
    Attention as explicit matmuls, or with dropout (SDPA's math fallback, which computes in float32 on the CPU),
    is left to autocast's generic rule under autocast: not drawn here."""
    from hypothesis import assume

    from tests.oracle.timeline_probe import step_peaks

    assume(not any(t.get("type") == "attention" and (t.get("kernel") == "math" or t.get("dropout")) for t in net.tables))

    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, optimizer=optimizer, autocast=low)
    torch.manual_seed(0)
    x = torch.randn(batch, *map(int, net.input))
    measured = step_peaks(nn.Sequential(*net.modules), x, optimizer, autocast=getattr(torch, low), scaled=True,
                          loss="tokens")
    assert phases(report, batch) == measured, net.spec()
