"""Fine-tuning flags in every combination on GPT-2 and on a Llama: `show` exits 0, or 2 with a message, never with a
traceback (LoRA over GPT-2's four Conv1D layers by peft's names, frozen layers, autocast, CUDA)."""

from __future__ import annotations

import itertools

import pytest
from click.testing import CliRunner

from archcalc.cli.main import main
from tests.conftest import SPECS

CONV1D = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]  # peft matches the last segments: c_proj is both
TARGETS = [[], ["c_proj"], *(list(c) for r in range(1, 5) for c in itertools.combinations(CONV1D, r))]
FREEZE = [[], ["--freeze", "emb,ln"], ["--freeze", "h.0.*"], ["--freeze", "*"]]
PLACES = [[], ["--device", "cuda"], ["--precision", "bf16-mixed"]]

# one line per inline table (TOML 1.0)
LLAMA = """[model]
name = "tiny llama"
input = ["T"]

[blocks.layer]
layers = [
    { name = "input_layernorm", type = "rmsnorm", module = "llama" },
    { name = "self_attn", type = "attention", from = ["input_layernorm", "model.rotary_emb"], module = "llama", rotary = true, num_heads = 4, kv_heads = 2, causal = true, bias = false },
    { name = "attn_residual", type = "add", from = ["input", "self_attn"] },
    { name = "post_attention_layernorm", type = "rmsnorm", module = "llama" },
    { name = "mlp.gate_proj", type = "dense", out_features = 64, bias = false, activation = "silu" },
    { name = "mlp.up_proj", type = "dense", from = "post_attention_layernorm", out_features = 64, bias = false },
    { name = "mlp.gated", type = "mul", from = ["mlp.gate_proj", "mlp.up_proj"] },
    { name = "mlp.down_proj", type = "dense", out_features = 32, bias = false },
    { name = "mlp_residual", type = "add", from = ["attn_residual", "mlp.down_proj"] },
]

[[layers]]
name = "model.embed_tokens"
type = "embedding"
num_embeddings = 50
embedding_dim = 32

[[layers]]
name = "model.rotary_emb"
type = "rotary"
head_dim = 8
theta = 10000

[[layers]]
name = "model.layers"
type = "block"
block = "layer"
repeat = 2
from = "model.embed_tokens"

[[layers]]
name = "model.norm"
type = "rmsnorm"
module = "llama"

[[layers]]
name = "lm_head"
type = "dense"
out_features = 50
bias = false
"""  # noqa: E501


def show(*args: str):
    result = CliRunner().invoke(main, ["show", *args])
    assert result.exit_code in (0, 2) and not (result.exception and not isinstance(result.exception, SystemExit)), (
        args, result.exception)
    assert result.exit_code == 0 or result.output.startswith("archcalc: "), (args, result.output)
    return result


def lora(targets: list[str]) -> list[str]:
    return ["--lora-rank", "8", "--lora-targets", ",".join(targets)] if targets else []


@pytest.mark.parametrize("extra", [[], ["--freeze", "emb,ln"]])
def test_lora_on_c_proj_alone_shows_gpt2(extra):
    """attention's out_proj adapted alone, its input needing no gradient: its adapter keeps its input."""
    assert show(str(SPECS / "gpt2.toml"), "--set", "T=64", "--lora-rank", "8", "--lora-targets", "c_proj", "-b", "2",
                *extra).exit_code == 0


@pytest.mark.parametrize("targets", TARGETS, ids=lambda t: ",".join(t) or "none")
def test_every_fine_tuning_of_gpt2_exits_cleanly(targets):
    for freeze, place in itertools.product(FREEZE, PLACES):
        show(str(SPECS / "gpt2.toml"), "--set", "T=64", "--set", "n_layer=2", "-b", "2", *lora(targets), *freeze, *place)


@pytest.mark.parametrize("targets", [["q_proj"], ["v_proj"], ["o_proj"], ["q_proj", "v_proj"], ["q_proj", "v_proj", "o_proj"],
                                     ["o_proj", "down_proj"], ["down_proj"]], ids=",".join)
def test_lora_on_a_llama_exits_cleanly(tmp_path, targets):
    spec = tmp_path / "llama.toml"
    spec.write_text(LLAMA)
    for freeze, place in itertools.product([[], ["--freeze", "model.embed_tokens"]], PLACES):
        show(str(spec), "--set", "T=16", "-b", "2", *lora(targets), *freeze, *place)


@pytest.mark.parametrize("place", [[], ["--device", "cuda"]], ids=["cpu", "cuda"])
def test_lora_on_a_llamas_q_proj_and_v_proj_shows_it(tmp_path, place):
    """peft's default targets for a Llama: exit 0 on the CPU (its exact program) and on CUDA alike."""
    spec = tmp_path / "llama.toml"
    spec.write_text(LLAMA)
    result = show(str(spec), "--set", "T=16", "-b", "2", "--lora-rank", "8", "--lora-targets", "q_proj,v_proj", *place)
    assert result.exit_code == 0, result.output
