"""Generation with a KV cache against transformers itself, to the byte per phase (CPU oracle).

transformers' GPT2LMHeadModel, LlamaForCausalLM and MistralForCausalLM (with and without a sliding window) are built
from drawn configs (random weights, nothing downloaded) and run by tests/oracle/generation_probe.py's greedy loop
under inference_mode with a DynamicCache or a StaticCache; their specs (specs/gpt2.toml's structure, the Llama spec
of tests/layers/test_llama_oracle.py) at the same sizes must give the same prefill peak, the same decode peak and the
same cache bytes.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (transformers imports torchvision)
from archcalc.report import largest_generation_batch, largest_prompt  # noqa: E402
from tests.layers.test_llama_oracle import llama_spec  # noqa: E402
from tests.memory.test_timeline_gpt2 import small_spec  # noqa: E402
from tests.oracle.generation_probe import generation_peaks  # noqa: E402

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()  # a tiny vocabulary without GPT-2's token 50256: said, not wrong
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ours(text: str, batch: int, prompt: int, new_tokens: int, cache: str, logits: str, dtype: str = "float32") -> dict:
    report = archcalc.analyze(archcalc.loads(text), batch=batch, dtype=dtype, prompt=prompt, new_tokens=new_tokens,
                              cache=cache, logits=logits)
    g = report.to_dict()["memory"]["generation"]
    return {"prefill": g["prefill_peak_bytes"], "decode": g["decode_peak_bytes"], "kv_cache": g["kv_cache_bytes"]}


def gpt2(vocab, n_positions, d, heads, layers, dtype="float32"):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=d, n_layer=layers, n_head=heads,
                                     attn_implementation="sdpa", bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).to(getattr(torch, dtype)), small_spec(vocab, n_positions, d, heads, layers, 0.1)


def llama(config, dtype="float32"):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype))
    window = getattr(config, "sliding_window", None)
    text = llama_spec(config)
    return model, text.replace("causal = true", f"causal = true, window = {window}") if window else text


def measured(model, batch, prompt, new_tokens, cache, logits) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt))
    return generation_peaks(model, ids, new_tokens, cache, logits)


@settings(max_examples=25, **SETTINGS)
@given(vocab=st.integers(8, 60), heads=st.integers(1, 3), head_dim=st.sampled_from([2, 4]), layers=st.integers(1, 2),
       batch=st.integers(1, 3), prompt=st.integers(1, 7), new_tokens=st.integers(1, 4),
       cache=st.sampled_from(["dynamic", "static"]), logits=st.sampled_from(["last", "all"]),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_hugging_face_gpt2_generates_as_predicted(vocab, heads, head_dim, layers, batch, prompt, new_tokens, cache, logits,
                                                  dtype):
    model, text = gpt2(vocab, prompt + new_tokens + 2, heads * head_dim, heads, layers, dtype)
    assert ours(text, batch, prompt, new_tokens, cache, logits, dtype) == measured(model, batch, prompt, new_tokens, cache, logits)


@st.composite
def decoders(draw):
    """A tiny Llama (grouped-query attention, tied or not, with biases or not) or Mistral (with a sliding window or not)."""
    heads = draw(st.integers(1, 4))
    kv = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    options = dict(vocab_size=draw(st.integers(8, 40)), hidden_size=heads * 2 * draw(st.integers(1, 3)),
                   intermediate_size=draw(st.integers(2, 20)), num_hidden_layers=draw(st.integers(1, 2)),
                   num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=64,
                   tie_word_embeddings=draw(st.booleans()), attn_implementation="sdpa")
    if draw(st.booleans()):
        return transformers.LlamaConfig(attention_bias=draw(st.booleans()), **options)
    return transformers.MistralConfig(sliding_window=draw(st.sampled_from([None, 2, 3, 5])), **options)


@settings(max_examples=30, **SETTINGS)
@given(config=decoders(), batch=st.integers(1, 3), prompt=st.integers(1, 7), new_tokens=st.integers(1, 5),
       static=st.booleans(), logits=st.sampled_from(["last", "all"]), dtype=st.sampled_from(["float32", "bfloat16"]))
def test_llama_and_mistral_generate_as_predicted(config, batch, prompt, new_tokens, static, logits, dtype):
    cache = "static" if static and getattr(config, "sliding_window", None) is None else "dynamic"
    model, text = llama(config, dtype)
    assert ours(text, batch, prompt, new_tokens, cache, logits, dtype) == measured(model, batch, prompt, new_tokens, cache, logits), text


# The issue's figures (issue 21): GPT-2 of 4 layers, d = 256, batch 2, a 128-token prompt, 64 decode steps, float32.
# Its vocabulary and positions were not given: 8,000 and 256 reproduce the prefill peak as printed (31.6 MB) with
# every position's logits (a forward without logits_to_keep), and the decode peak (24.7 MB) with the explicit loop's
# `out` rebound: the previous step's logits, 64,000 bytes, alive through the next forward (deleted before it, as
# transformers' generate deletes them, the decode peak is 24,644,632, 24.6 MB). transformers' generate computes the
# last position's logits only (logits_to_keep=1 in 5.x): its prefill is 2.8 MB lower.
GPT2_FIGURES = {
    ("dynamic", "all"): {"prefill": 31_645_696, "decode": 24_708_632, "kv_cache": 3_145_728},
    ("dynamic", "last"): {"prefill": 28_828_672, "decode": 24_708_632, "kv_cache": 3_145_728},
    ("static", "last"): {"prefill": 29_877_280, "decode": 24_370_224, "kv_cache": 3_145_728},
}


@pytest.mark.parametrize(("cache", "logits"), list(GPT2_FIGURES))
def test_the_issues_gpt2_figures(cache, logits):
    model, text = gpt2(8000, 256, 256, 4, 4)
    figures = GPT2_FIGURES[(cache, logits)]
    assert figures["kv_cache"] == 2 * 4 * 2 * 256 * 192 * 4  # 2 × layers × batch × kv_heads·head_dim × tokens × bytes
    assert ours(text, 2, 128, 64, cache, logits) == figures
    assert measured(model, 2, 128, 64, cache, logits) == figures
    if (cache, logits) == ("dynamic", "all"):  # as the issue prints them, in MB
        assert [round(figures[k] / 1e6, 1) for k in ("prefill", "decode")] == [31.6, 24.7]


# A Llama of 4 layers, d = 256, 8 heads, 2 of them for keys and values (head_dim 32), Llama's MLP ratio (688), a
# vocabulary of 8,000: the issue's cache of 786,432 bytes, and the peaks measured beside it.
LLAMA_FIGURES = {
    "dynamic": {"prefill": 31_191_168, "decode": 28_428_696, "kv_cache": 786_432},
    "static": {"prefill": 31_453_344, "decode": 28_387_504, "kv_cache": 786_432},
}


@pytest.mark.parametrize("cache", list(LLAMA_FIGURES))
def test_the_issues_grouped_query_llama(cache):
    config = transformers.LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256,
                                      attn_implementation="sdpa")
    model, text = llama(config)
    assert LLAMA_FIGURES[cache]["kv_cache"] == 2 * 4 * 2 * 2 * 32 * 192 * 4
    assert ours(text, 2, 128, 64, cache, "last") == LLAMA_FIGURES[cache]
    assert measured(model, 2, 128, 64, cache, "last") == LLAMA_FIGURES[cache]


def test_a_sliding_window_keeps_its_window_and_its_first_step_is_the_decode_peak():
    """Mistral with a window of 4 and a prompt of 12: the prefill's cache holds all 12 tokens (the window's view of the
    last 3 keeps the whole concatenation alive), so the first decode step, which makes the window's 4 while the 12 are
    still there, is the decode phase's peak; at the end each layer holds 4."""
    config = transformers.MistralConfig(vocab_size=30, hidden_size=16, intermediate_size=8, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                        attn_implementation="sdpa")
    model, text = llama(config)
    figures = ours(text, 2, 12, 6, "dynamic", "last")
    assert figures == measured(model, 2, 12, 6, "dynamic", "last")
    assert figures["kv_cache"] == 2 * 2 * 2 * 8 * 4 * 4
    assert ours(text, 2, 12, 1, "dynamic", "last")["decode"] == figures["decode"]  # the first step alone: as high


# The largest batch or prompt under a budget (memory --budget with generation): the budget is transformers' own peak at
# a batch (or a prompt), so the answer must be that batch (prompt), and transformers at one more must not fit.
def test_the_largest_batch_under_a_budget_is_the_one_transformers_fits():
    model, text = gpt2(40, 32, 8, 2, 2)
    budget = max(v for k, v in measured(model, 3, 16, 4, "dynamic", "last").items() if k != "kv_cache")
    fit = largest_generation_batch(archcalc.loads(text), budget, prompt=16, new_tokens=4)
    assert fit.value == 3
    assert max(v for k, v in measured(model, 4, 16, 4, "dynamic", "last").items() if k != "kv_cache") > budget


def test_the_largest_prompt_under_a_budget_is_the_one_transformers_fits():
    config = transformers.LlamaConfig(vocab_size=30, hidden_size=16, intermediate_size=20, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      attn_implementation="sdpa")
    model, text = llama(config)
    peak = {prompt: max(v for k, v in measured(model, 2, prompt, 3, "dynamic", "last").items() if k != "kv_cache")
            for prompt in (11, 12)}
    fit = largest_prompt(archcalc.loads(text), peak[11], batch=2, new_tokens=3)
    assert fit.value == 11 and peak[12] > peak[11]
