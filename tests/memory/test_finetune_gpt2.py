"""Fine-tuning a GPT-2 as practitioners do it, against the CPU oracle, to the byte per phase.

transformers' GPT2LMHeadModel from a GPT2Config of 4 layers, d = 256, 8 heads, no dropout; batch 4 of 128 tokens;
AdamW as torch runs it for CPU parameters (for-loop, foreach=False); the loss computed by the model, `model(input_ids=
ids, labels=ids).loss`, as Hugging Face's Trainer runs it. LoRA is peft's (`get_peft_model`, LoraConfig r=8,
lora_alpha=16, no dropout), on `c_attn`, or on all four Conv1D layers of each block (c_attn, attn.c_proj, c_fc,
mlp.c_proj); a bfloat16 base is the model cast to bfloat16 before peft adds its float32 adapters.
archcalc's side is specs/gpt2.toml at the same sizes, with the same [finetune] as flags.

Two configurations:
- the issue's: a vocabulary of 8,000 and 256 positions (the generation figures' GPT-2), `use_cache=False`; its
  backward peaks in MB (10**6 bytes) are the issue's four: 172.3, 119.0, 130.9, 85.4; full fine-tuning's forward /
  backward / optimizer 155.9 / 172.3 / 100.8 MB are the one-process figures of the data-parallel issue;
- transformers' default `use_cache=True` (every layer appends its keys and values to a DynamicCache in training: two
  [B, T, d] copies per layer, kept by the kernel), attention's `use_cache = true` in the spec, at a vocabulary of
  8,192 and 1,024 positions: backward peaks 172.3, 119.6, 130.9 and 85.0 MiB (2**20 bytes).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, assume, example, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (transformers imports torchvision)
from archcalc.memory.timeline import simulate  # noqa: E402
from tests.memory.test_timeline_gpt2 import small_spec  # noqa: E402
from tests.oracle import timeline_probe  # noqa: E402

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

D, HEADS, LAYERS, BATCH, T = 256, 8, 4, 4, 128
ALL_FOUR = ["c_attn", "c_proj", "c_fc"]  # c_proj: attention's and the MLP's, as peft matches the last segment
MB, MiB = 10**6, 2**20
ISSUE = (8000, 256, False)  # vocabulary, positions, use_cache
CACHED = (8192, 1024, True)

# name: the configuration, peft's targets (None: full fine-tuning), the base's dtype, the peaks (unit, phase: value)
CASES = {
    "full": (ISSUE, None, "float32", (MB, {"forward": 155.9, "backward": 172.3, "optimizer": 100.8})),
    "lora_c_attn": (ISSUE, ["c_attn"], "float32", (MB, {"backward": 119.0})),
    "lora_all_four": (ISSUE, ALL_FOUR, "float32", (MB, {"backward": 130.9})),
    "lora_bfloat16_base": (ISSUE, ["c_attn"], "bfloat16", (MB, {"backward": 85.4})),
    "cached_full": (CACHED, None, "float32", (MiB, {"backward": 172.3})),
    "cached_lora_c_attn": (CACHED, ["c_attn"], "float32", (MiB, {"backward": 119.6})),
    "cached_lora_all_four": (CACHED, ALL_FOUR, "float32", (MiB, {"backward": 130.9})),
    "cached_lora_bfloat16_base": (CACHED, ["c_attn"], "bfloat16", (MiB, {"backward": 85.0})),
}


def hugging_face(vocab, positions, cache, targets, dtype, d=D, heads=HEADS, layers=LAYERS, p=0.0):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=layers, n_embd=d, n_head=heads, vocab_size=vocab, n_positions=positions,
                                     resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, use_cache=cache)
    model = transformers.GPT2LMHeadModel(config).to(getattr(torch, dtype))
    if targets is None:
        return model
    return peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))


def measured(model, vocab, batch=BATCH, t=T) -> dict[str, int]:
    x = torch.randint(0, vocab, (batch, t), generator=torch.Generator().manual_seed(0))
    loops = dict(timeline_probe.OPTIMIZERS, adamw=lambda ps: torch.optim.AdamW(ps, lr=1e-5, foreach=False))
    saved, timeline_probe.OPTIMIZERS = timeline_probe.OPTIMIZERS, loops
    try:
        return timeline_probe.step_peaks(model, x, "adamw", loss_of=lambda m, ids: m(input_ids=ids, labels=ids).loss)
    finally:
        timeline_probe.OPTIMIZERS = saved


def spec_text(vocab, positions, cache, d=D, heads=HEADS, layers=LAYERS, p=0.0) -> str:
    """specs/gpt2.toml at these sizes, without dropout (or `p`); use_cache: transformers' default, set in attention's
    table."""
    text = small_spec(vocab, positions, d, heads, layers, p)
    return text.replace("use_cache = false", "use_cache = true") if cache else text


def predicted(text, targets, dtype, batch=BATCH, t=T):
    tuning = {} if targets is None else dict(lora_rank=8, lora_alpha=16, lora_targets=targets)
    if dtype != "float32":
        tuning["base_dtype"] = dtype
    report = archcalc.analyze(archcalc.loads(text), batch=batch, optimizer="adamw", T=t, **tuning)
    timeline = simulate(report, batch, inplace_sums=False, foreach=False, loss_inside=True)
    return report, {phase: peak.at(batch) for phase, peak in timeline.phases.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_gpt2_fine_tuning_matches_the_oracle_per_phase(case):
    (vocab, positions, cache), targets, dtype, (unit, figures) = CASES[case]
    model = hugging_face(vocab, positions, cache, targets, dtype)
    report, ours = predicted(spec_text(vocab, positions, cache), targets, dtype)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.totals["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ours == measured(model, vocab)
    assert {phase: round(ours[phase] / unit, 1) for phase in figures} == figures
    assert max(ours, key=ours.get) == "backward"  # the peak: the start of backward, before any weight's gradient


def test_the_cache_costs_two_copies_of_k_and_v_per_layer():
    """use_cache = true keeps, per layer, k and v copied into the cache: 2·B·T·d float32 values more from forward
    to backward (the kernel keeps the copies; q still holds the projections' output)."""
    vocab, positions, _ = CACHED
    plain = predicted(spec_text(vocab, positions, False), None, "float32")[1]
    cached = predicted(spec_text(vocab, positions, True), None, "float32")[1]
    assert {p: cached[p] - plain[p] for p in plain} == {"forward": 2 * LAYERS * BATCH * T * D * 4,
                                                        "backward": 2 * LAYERS * BATCH * T * D * 4, "optimizer": 0}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.integers(2, 6), batch=st.integers(2, 3), heads=st.sampled_from([1, 2, 3]), head_dim=st.integers(2, 4),
       layers=st.integers(1, 2), cache=st.booleans())
def test_drawn_gpt2_steps_with_and_without_the_cache(t, batch, heads, head_dim, layers, cache):
    """transformers' GPT-2 at drawn small sizes, use_cache drawn, every parameter trained."""
    d, vocab = heads * head_dim, 13
    model = hugging_face(vocab, 8, cache, None, "float32", d, heads, layers)
    _, ours = predicted(spec_text(vocab, 8, cache, d, heads, layers), None, "float32", batch, t)
    assert ours == measured(model, vocab, batch, t)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(targets=st.sampled_from([["c_proj"], ["c_proj", "c_fc"], ["c_attn"], ["c_fc"], ALL_FOUR]), p=st.sampled_from([0.0, 0.1]),
       t=st.integers(2, 16), batch=st.integers(1, 3), heads=st.sampled_from([1, 2, 3]), head_dim=st.integers(2, 12),
       layers=st.integers(1, 2))
@example(targets=["c_proj"], p=0.0, t=2, batch=2, heads=1, head_dim=6, layers=1)  # GPT2Model's held inputs_embeds
@example(targets=["c_proj", "c_fc"], p=0.0, t=16, batch=2, heads=2, head_dim=16, layers=1)  # GPT2Block's attn_output
@example(targets=["c_attn"], p=0.0, t=2, batch=2, heads=1, head_dim=6, layers=1)
def test_gpt2_with_lora_on_drawn_targets(targets, p, t, batch, heads, head_dim, layers):
    """LoRA on drawn Conv1D layers, c_attn adapted or not, at drawn sizes: where the first block's attention is frozen
    its input needs no gradient and nothing keeps it, but transformers' Python variables do (GPT2Model's
    inputs_embeds and its loop's hidden_states, GPT2Block's attn_output and feed_forward_hidden_states), until the body or
    the block returns; with dropout SDPA's math fallback runs."""
    assume(p == 0 or min(heads, batch) > 1)  # dropout at one head or one sample: off, full fine-tuning too (not modelled)
    d, vocab = heads * head_dim, 13
    model = hugging_face(vocab, 16, False, targets, "float32", d, heads, layers, p)
    _, ours = predicted(spec_text(vocab, 16, False, d, heads, layers, p), targets, "float32", batch, t)
    assert ours == measured(model, vocab, batch, t)
