"""The bytes of a quantized frozen weight, against a hand computation from bitsandbytes' layout.

Not a torch oracle: bitsandbytes needs CUDA, so no CPU run can measure it. The layout is read from its source
(github.com/bitsandbytes-foundation/bitsandbytes at 95f9af30; docs/memory-model.md cites the lines): 4-bit weights
packed two per uint8 byte, one absmax per block of 64 weights (Params4bit's default blocksize), which double
quantization (Linear4bit's default compress_statistics=True) stores as uint8 codes in blocks of 256 with a
float32 absmax per such block, their float32 mean (offset) and a float32 copy of the 256-entry dynamic map; the
16-entry float32 4-bit code per layer. int8 (Linear8bitLt): the weight as int8 and one float32 scale per row (SCB).
"""

from __future__ import annotations

import math

import pytest

import archcalc
from archcalc.layers.tuning import quantized_bytes

SPEC = ("[model]\ninput = [16, {d}]\n[[layers]]\nname = \"fc\"\ntype = \"dense\"\nout_features = {out}\nbias = false\n"
        "[[layers]]\nname = \"head\"\ntype = \"dense\"\nout_features = 10\n")


def four_bit(rows: int, cols: int) -> int:
    n = rows * cols
    blocks = math.ceil(n / 64)
    return math.ceil(n / 2) + blocks + 4 + 4 * math.ceil(blocks / 256) + 4 * 256 + 4 * 16


@pytest.mark.parametrize("rows, cols", [(256, 768), (64, 64), (3, 7), (1000, 4096), (1, 1)])
def test_the_layouts_by_hand(rows, cols):
    assert sum(quantized_bytes("nf4", rows * cols, rows)) == four_bit(rows, cols)
    assert sum(quantized_bytes("fp4", rows * cols, rows)) == four_bit(rows, cols)
    assert sum(quantized_bytes("int8", rows * cols, rows)) == rows * cols + 4 * rows


def test_llama_7b_sized_layer_in_nf4_is_about_half_a_byte_per_weight():
    # 4096 × 4096: 8 MiB packed, 262,144 absmax codes, 1,024 nested absmax: 0.5 + 1/64 + 1/16384 bytes per weight
    total = sum(quantized_bytes("nf4", 4096 * 4096, 4096))
    assert total == 8_388_608 + 262_144 + 4 + 4_096 + 1_024 + 64
    assert 0.515 < total / (4096 * 4096) < 0.517


@pytest.mark.parametrize("form", ["int8", "nf4", "fp4"])
def test_a_quantized_lora_base_stores_its_weight_so(form):
    """A LoRA'd dense over a quantized base: its weight's bytes are the packed layout, beside its float32 adapters;
    the model's output layer stays float32 (transformers leaves lm_head unquantized)."""
    text = SPEC.format(d=256, out=512)
    report = archcalc.analyze(archcalc.loads(text), batch=2, lora_rank=4, lora_targets=["fc"], base_dtype=form)
    want = (four_bit(512, 256) if form != "int8" else 512 * 256 + 4 * 512) + 4 * (4 * 256 + 512 * 4) + 4 * (512 * 10 + 10)
    assert report.memory.params.at(2) == want
    assert report.totals["trainable_params"] == 4 * 256 + 512 * 4
