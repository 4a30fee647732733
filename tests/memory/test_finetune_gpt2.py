"""Fine-tuning a GPT-2 as practitioners do it, against the CPU oracle, to the byte per phase.

transformers' GPT2LMHeadModel from a GPT2Config of 4 layers, d = 256, 8 heads, a vocabulary of 8,192 and 1,024
positions, no dropout, `use_cache=False` (training keeps no KV cache); batch 4 of 128 tokens; AdamW as torch runs
it for CPU parameters (for-loop, foreach=False); the loss computed by the model, `model(input_ids=ids,
labels=ids).loss`, as Hugging Face's Trainer runs it. LoRA is peft's (`get_peft_model`, LoraConfig r=8,
lora_alpha=16, no dropout), on `c_attn`, or on all four Conv1D layers of each block (c_attn, attn.c_proj, c_fc,
mlp.c_proj); a bfloat16 base is the model cast to bfloat16 before peft adds its float32 adapters.
archcalc's side is specs/gpt2.toml at the same sizes, with the same [finetune] as flags.

The peaks, in MiB (2**20 bytes), backward / forward / optimizer:
full 168.3 / 152.3 / 100.2; LoRA on c_attn 115.6 / 100.1 / 21.6; on all four 126.9 / 111.4 / 23.2;
LoRA on c_attn over a bfloat16 base 83.0 / 75.3 / 11.1. With transformers' default `use_cache=True` the model also
appends each layer's keys and values to a DynamicCache in training (two [B, T, d] copies per layer, kept by
attention's node: +4 MiB in float32), which archcalc does not model: 172.3, 119.6, 130.9 and 85.0 MiB then.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (transformers imports torchvision)
from archcalc.memory.timeline import simulate  # noqa: E402
from tests.memory.test_timeline_gpt2 import small_spec  # noqa: E402
from tests.oracle import timeline_probe  # noqa: E402

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

VOCAB, POSITIONS, D, HEADS, LAYERS, BATCH, T = 8192, 1024, 256, 8, 4, 4, 128
ALL_FOUR = ["c_attn", "c_proj", "c_fc"]  # c_proj: attention's and the MLP's, as peft matches the last segment
MiB = 2**20

# name: peft's targets (None: full fine-tuning), the base's dtype, the backward peak in MiB to one decimal
CASES = {
    "full": (None, "float32", 168.3),
    "lora_c_attn": (["c_attn"], "float32", 115.6),
    "lora_all_four": (ALL_FOUR, "float32", 126.9),
    "lora_bfloat16_base": (["c_attn"], "bfloat16", 83.0),
}


def hugging_face(targets, dtype):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=LAYERS, n_embd=D, n_head=HEADS, vocab_size=VOCAB, n_positions=POSITIONS,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
    model = transformers.GPT2LMHeadModel(config).to(getattr(torch, dtype))
    if targets is None:
        return model
    return peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))


def measured(model) -> dict[str, int]:
    x = torch.randint(0, VOCAB, (BATCH, T), generator=torch.Generator().manual_seed(0))
    loops = dict(timeline_probe.OPTIMIZERS, adamw=lambda ps: torch.optim.AdamW(ps, lr=1e-5, foreach=False))
    saved, timeline_probe.OPTIMIZERS = timeline_probe.OPTIMIZERS, loops
    try:
        return timeline_probe.step_peaks(model, x, "adamw", loss_of=lambda m, ids: m(input_ids=ids, labels=ids).loss)
    finally:
        timeline_probe.OPTIMIZERS = saved


def predicted(targets, dtype):
    spec = archcalc.loads(small_spec(VOCAB, POSITIONS, D, HEADS, LAYERS, 0.0))
    tuning = {} if targets is None else dict(lora_rank=8, lora_alpha=16, lora_targets=targets)
    if dtype != "float32":
        tuning["base_dtype"] = dtype
    report = archcalc.analyze(spec, batch=BATCH, optimizer="adamw", T=T, **tuning)
    timeline = simulate(report, BATCH, inplace_sums=False, foreach=False, loss_inside=True)
    return report, {phase: peak.at(BATCH) for phase, peak in timeline.phases.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_gpt2_fine_tuning_matches_the_oracle_per_phase(case):
    targets, dtype, backward_mib = CASES[case]
    model = hugging_face(targets, dtype)
    report, ours = predicted(targets, dtype)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.totals["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ours == measured(model)
    assert round(ours["backward"] / MiB, 1) == backward_mib
    assert max(ours, key=ours.get) == "backward"  # the peak: the start of backward, before any weight's gradient
