"""Transformers' Llama as a spec, against transformers itself: rotary tables, Llama's attention (q_proj, k_proj, v_proj,
o_proj, rotate_half, SDPA with grouped queries), LlamaRMSNorm, the gated MLP (down(silu(gate(x)) · up(x))).

Hypothesis draws a tiny LlamaConfig; the spec is written from it here (as an import would), and
LlamaForCausalLM built from the same config (random weights, no download) is the oracle: its state_dict loads
strictly into archcalc's build, the logits agree, and the parameters, FlopCounterMode's FLOPs (its CPU count of the
fused attention: 0), the bytes saved_tensors_hooks sees kept and the training step's live storages, phase by phase
(Hugging Face's causal LM loss), are torch's to the byte.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (transformers imports torchvision)
from tests.memory.test_timeline_oracle import phases  # noqa: E402
from tests.oracle.timeline_probe import step_peaks  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes, torch_counts  # noqa: E402

transformers = pytest.importorskip("transformers")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = {"rotary"}  # the kinds this file draws (test_torch_oracle checks all are)


def llama_spec(config) -> str:
    """A LlamaForCausalLM (MistralForCausalLM) config as a spec, its layers named as transformers names its modules."""
    d, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    bias = "true" if getattr(config, "attention_bias", False) else "false"
    tie = '\ntie = "model.embed_tokens"' if config.tie_word_embeddings else ""
    attention = (f'from = ["input_layernorm", "model.rotary_emb"], module = "llama", rotary = true, num_heads = {heads}, '
                 f"kv_heads = {kv}, causal = true, bias = {bias}")
    return f"""[model]
name = "tiny llama"
input = ["T"]

[blocks.layer]
layers = [
    {{ name = "input_layernorm", type = "rmsnorm", module = "llama" }},
    {{ name = "self_attn", type = "attention", {attention} }},
    {{ name = "attn_residual", type = "add", from = ["input", "self_attn"] }},
    {{ name = "post_attention_layernorm", type = "rmsnorm", module = "llama" }},
    {{ name = "mlp.gate_proj", type = "dense", out_features = {config.intermediate_size}, bias = false, activation = "silu" }},
    {{ name = "mlp.up_proj", type = "dense", from = "post_attention_layernorm", out_features = {config.intermediate_size}, bias = false }},
    {{ name = "mlp.gated", type = "mul", from = ["mlp.gate_proj", "mlp.up_proj"] }},
    {{ name = "mlp.down_proj", type = "dense", out_features = {d}, bias = false }},
    {{ name = "mlp_residual", type = "add", from = ["attn_residual", "mlp.down_proj"] }},
]

[[layers]]
name = "model.embed_tokens"
type = "embedding"
num_embeddings = {config.vocab_size}
embedding_dim = {d}

[[layers]]
name = "model.rotary_emb"
type = "rotary"
head_dim = {d // heads}
theta = {int(config.rope_parameters["rope_theta"])}

[[layers]]
name = "model.layers"
type = "block"
block = "layer"
repeat = {config.num_hidden_layers}
from = "model.embed_tokens"

[[layers]]
name = "model.norm"
type = "rmsnorm"
module = "llama"

[[layers]]
name = "lm_head"
type = "dense"
out_features = {config.vocab_size}
bias = false{tie}
"""


class Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids).logits


@st.composite
def configs(draw):
    heads = draw(st.integers(1, 4))
    kv = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    family = draw(st.sampled_from(["llama", "mistral"]))
    options = dict(vocab_size=draw(st.integers(8, 40)), hidden_size=heads * 2 * draw(st.integers(1, 3)),
                   intermediate_size=draw(st.integers(2, 20)), num_hidden_layers=draw(st.integers(1, 2)),
                   num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=32,
                   tie_word_embeddings=draw(st.booleans()), attn_implementation="sdpa", use_cache=False)
    if family == "llama":
        return transformers.LlamaConfig(attention_bias=draw(st.booleans()), **options)
    return transformers.MistralConfig(sliding_window=None, **options)


@settings(max_examples=25, **SETTINGS)
@given(config=configs(), t=st.integers(1, 6), batch=st.integers(1, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(["sgd", "adam"]))
def test_tiny_llamas_match_transformers(config, t, batch, dtype, optimizer):
    from archcalc.backends.build import build

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype))
    oracle = Logits(model)
    text = llama_spec(config)
    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, T=t, batch=batch, dtype=dtype, optimizer=optimizer)
    built = build(spec, T=t).to(getattr(torch, dtype))
    built.load_state_dict(model.state_dict(), strict=True)
    ids = torch.randint(0, config.vocab_size, (batch, t))
    with torch.no_grad():
        assert torch.allclose(built.eval()(ids).float(), oracle.eval()(ids).float(), atol=1e-2 if dtype == "bfloat16" else 1e-5)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert torch_counts(report, "flops") * batch == flops(oracle, ids)  # the fused attention: 0 on the CPU
    assert report.memory.saved.at(batch) == saved_bytes(oracle, ids), text
    assert phases(report, batch) == step_peaks(oracle, ids, optimizer, loss="causal_lm"), text


def test_the_rotary_tables_are_kept_once_for_every_layer():
    """cos and sin, [1, T, head_dim] each, made once by the model and kept by every attention layer's rotations."""
    config = transformers.LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=4, num_hidden_layers=3,
                                      num_attention_heads=2, num_key_value_heads=1, attn_implementation="sdpa", use_cache=False)
    report = archcalc.analyze(archcalc.loads(llama_spec(config)), T=5, batch=2)
    tables = [k for kept in report.memory.kept for k in kept if "rotary" in k.item.what]
    assert len(tables) == 3 and [k.counted for k in tables] == [True, False, False]
    assert tables[0].nbytes == 2 * 5 * 4 * 4 and not tables[0].item.per_sample
    rotary = next(r for r in report.rows if r.kind == "rotary")
    assert rotary.output == (2, 5, 4) and rotary.params == 0 and not rotary.layer.is_view()
    assert report.memory.buffers.at(2) == 4 * 4  # inv_freq and original_inv_freq, 2 values each


def test_rotary_needs_its_tables_and_fits_them():
    text = llama_spec(transformers.LlamaConfig(vocab_size=11, hidden_size=8, intermediate_size=4, num_hidden_layers=1,
                                               num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(archcalc.SpecError, match="reads the rotary tables too"):
        archcalc.analyze(archcalc.loads(text.replace('from = ["input_layernorm", "model.rotary_emb"], ', "")), T=3)
    with pytest.raises(archcalc.SpecError, match="do not fit"):
        archcalc.analyze(archcalc.loads(text.replace("head_dim = 4", "head_dim = 2")), T=3)


def test_the_documented_llama_is_llama_3_8b():
    """docs/spec.md's Llama example, with a [model] table, has Meta-Llama-3-8B's 8,030,261,248 parameters."""
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    block = next(b for b in text.split("```toml\n")[1:] if "model.rotary_emb" in b).split("```")[0]
    report = archcalc.analyze(archcalc.loads('[model]\ninput = ["T"]\n' + block), T=8)
    assert report.totals["params"] == 8_030_261_248
