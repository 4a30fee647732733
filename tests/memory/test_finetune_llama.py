"""LoRA on a Llama's attention, against transformers' LlamaForCausalLM and peft, to the byte per phase.

peft's LoRA (`get_peft_model`, LoraConfig of a drawn rank, dropout and target_modules) on any of q_proj, k_proj,
v_proj, o_proj, with or without the MLP's gate_proj and up_proj; the base frozen in float32 or bfloat16 (float32
adapters beside it, peft's default). The embeddings are frozen, so the first layer's attention reads tokens that need
no gradient (a frozen prefix): only the adapted q, k and v do; in the second layer the tokens need one. The oracle is the
CPU's (tests/oracle/timeline_probe.py) with Hugging Face's causal LM loss; the spec is tests/layers/test_llama_oracle.py's.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (peft imports transformers, which imports torchvision)
from tests.layers.test_llama_oracle import Logits, llama_spec  # noqa: E402
from tests.memory.test_timeline_oracle import phases  # noqa: E402
from tests.oracle.timeline_probe import step_peaks  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes, torch_counts  # noqa: E402

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@st.composite
def configs(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    kv = draw(st.sampled_from([k for k in (1, 2, 4) if heads % k == 0]))
    return transformers.LlamaConfig(vocab_size=13, hidden_size=heads * 2 * draw(st.integers(1, 2)), intermediate_size=6,
                                    num_hidden_layers=draw(st.integers(1, 2)), num_attention_heads=heads,
                                    num_key_value_heads=kv, max_position_embeddings=16,
                                    attention_bias=draw(st.booleans()), attn_implementation="sdpa", use_cache=False)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), t=st.integers(1, 5), batch=st.integers(1, 3), rank=st.integers(1, 3),
       dropout=st.sampled_from([0.0, 0.25]), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(["sgd", "adam"]), attention=st.lists(st.sampled_from(ATTENTION), min_size=1, unique=True),
       mlp=st.lists(st.sampled_from(["gate_proj", "up_proj", "down_proj"]), unique=True))
def test_lora_on_llama_attention_matches_peft(config, t, batch, rank, dropout, dtype, optimizer, attention, mlp):
    """Parameters, the trainable ones, training FLOPs (FlopCounterMode's: the fused attention counted 0 on the CPU),
    the bytes saved_tensors_hooks sees kept, each phase's peak; and peft's state_dict loads into the build."""
    from archcalc.backends.build import build

    targets = attention + mlp
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config).to(getattr(torch, dtype))
    model = peft.get_peft_model(base, peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout,
                                                      target_modules=targets))
    spec = archcalc.loads(llama_spec(config))
    options = dict(lora_rank=rank, lora_alpha=2 * rank, lora_dropout=dropout, lora_targets=targets, base_dtype=dtype)
    report = archcalc.analyze(spec, T=t, batch=batch, optimizer=optimizer, **options)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.totals["trainable_params"] == trainable(model)
    built = build(spec, T=t, **options)
    built.load_state_dict({k.removeprefix("base_model.model."): v for k, v in model.state_dict().items()}, strict=True)
    assert trainable(built) == trainable(model)
    oracle = Logits(model)
    ids = torch.randint(0, config.vocab_size, (batch, t), generator=torch.Generator().manual_seed(0))
    assert torch_counts(report, "training_flops") * batch == flops(oracle, ids, backward=True)
    assert report.memory.saved.at(batch) == saved_bytes(oracle, ids)
    assert phases(report, batch) == step_peaks(oracle, ids, optimizer, loss="causal_lm"), (targets, config)
