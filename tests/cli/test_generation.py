"""Generation with a KV cache from the outside: the [generate] table, show's and memory's flags, JSON's
memory.generation (docs/design.md section 11), the budget's answers and what is refused. No torch needed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import main
from archcalc.report import largest_generation_batch, largest_prompt
from tests.conftest import SPECS

GPT2 = str(SPECS / "gpt2.toml")
CONTRACT = {"prefill_peak_bytes", "decode_peak_bytes", "kv_cache_bytes", "peak_bytes"}


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def generation(*args: str) -> dict:
    result = run("show", GPT2, "-f", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["memory"]["generation"]


def small(table: str = "") -> str:
    """specs/gpt2.toml at a small size, with a [generate] table."""
    text = (SPECS / "gpt2.toml").read_text()
    for name, value in (("vocab", 500), ("d", 64), ("heads", 4), ("n_layer", 2)):
        text = text.replace(f"\n{name} = ", f"\n{name} = {value} #", 1)
    return text[:text.index("[expect]")] + table


def test_show_gives_the_contracts_keys_and_the_cache_formula():
    g = generation("--prompt", "128", "--new-tokens", "64", "--batch", "2")
    assert set(g) >= CONTRACT and g["peak_bytes"] == max(g["prefill_peak_bytes"], g["decode_peak_bytes"])
    assert g["kv_cache_bytes"] == 2 * 12 * 2 * 768 * 192 * 4  # 2 × layers × batch × kv_heads·head_dim × tokens × bytes
    assert (g["prompt"], g["new_tokens"], g["cache"], g["logits"], g["peak_phase"]) == (128, 64, "dynamic", "last", "prefill")


def test_with_the_batch_a_symbol_each_peak_is_a_formula_in_b():
    g = generation("--prompt", "128", "--new-tokens", "64")
    assert g["kv_cache_bytes"] == "14155776*B" and "B" in g["prefill_peak_bytes"] and g["peak_phase"] is None
    at_two = generation("--prompt", "128", "--new-tokens", "64", "--batch", "2")
    assert archcalc.analyze(archcalc.load(GPT2), prompt=128, new_tokens=64).memory.generation.peak.at(2) == at_two["peak_bytes"]


def test_the_table_and_the_flags_ask_the_same_and_flags_win():
    spec = archcalc.loads(small("\n[generate]\nprompt = 16\nnew_tokens = 8\ncache = \"static\"\n"))
    assert spec.generate == archcalc.spec.generate.Generate(16, 8, "static")
    from_table = archcalc.analyze(spec, batch=2).to_dict()["memory"]["generation"]
    plain = archcalc.loads(small())
    assert from_table == archcalc.analyze(plain, batch=2, prompt=16, new_tokens=8, cache="static").to_dict()["memory"]["generation"]
    flags = archcalc.analyze(spec, batch=2, new_tokens=4, cache="dynamic").memory.generation.settings
    assert (flags.prompt, flags.new_tokens, flags.cache) == (16, 4, "dynamic")
    assert archcalc.analyze(spec, batch=2).rows[-1].output == (16, 500)  # the prompt is the sequence's length


def test_the_panel_has_the_generations_lines():
    result = run("show", GPT2, "--prompt", "128", "--new-tokens", "64", "--batch", "2")
    assert result.exit_code == 0, result.output
    for text in ("generation", "128 + 64 tokens", "prefill peak (generation's peak)", "KV cache at 192 tokens", "28,311,552 bytes"):
        assert text in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt", "128"], "generation needs --new-tokens M"),
    (["--new-tokens", "8"], "generation needs --prompt N"),
    (["--prompt", "128", "--new-tokens", "64", "--set", "T=100"], "the prompt sets T"),
    (["--prompt", "1000", "--new-tokens", "100"], "make 1,100 positions"),
    (["--prompt", "0", "--new-tokens", "1"], "0 is not in the range"),
])
def test_what_show_refuses(args, message):
    result = run("show", GPT2, *args)
    assert result.exit_code == 2 and message in result.output, result.output


ENCODER = """[model]
input = ["T"]
[[layers]]
type = "embedding"
num_embeddings = 100
embedding_dim = 16
[[layers]]
type = "attention"
num_heads = 2
[[layers]]
type = "dense"
out_features = 100
"""


@pytest.mark.parametrize(("text", "message"), [
    ((SPECS / "alexnet.toml").read_text(), "the input's length must be a name"),
    (ENCODER, "generation needs causal attention layers"),
    (ENCODER.replace("num_heads = 2", "num_heads = 2\nwindow = 4"), "a sliding window is causal"),
])
def test_a_network_that_does_not_generate_is_refused(tmp_path, text, message):
    (tmp_path / "net.toml").write_text(text)
    result = run("show", str(tmp_path / "net.toml"), "--prompt", "8", "--new-tokens", "2")
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(("table", "message"), [
    ("prompt = 8\nnew_token = 2", "did you mean 'new_tokens'?"),
    ("prompt = 8", "missing 'new_tokens'"),
    ("prompt = 8\nnew_tokens = 0", "expected 1 to 16,777,216 tokens"),
    ("prompt = 8\nnew_tokens = 2\ncache = \"paged\"", "expected one of 'dynamic', 'static'"),
    ("prompt = 8.5\nnew_tokens = 2", "expected a whole number of tokens"),
])
def test_a_bad_generate_table_is_refused_with_its_place(table, message):
    with pytest.raises(archcalc.SpecError, match=message) as error:
        archcalc.loads(small(f"\n[generate]\n{table}\n"))
    assert error.value.where == "[generate]"


def test_the_largest_batch_fits_and_the_next_does_not():
    spec = archcalc.loads(small())
    fit = largest_generation_batch(spec, 64 * 2**20, prompt=256, new_tokens=64)
    peak = fit.report.memory.generation.peak
    assert fit.value >= 1 and peak.at(fit.value) <= 64 * 2**20 < peak.at(fit.value + 1)


def test_the_largest_prompt_fits_and_the_next_does_not():
    spec = archcalc.loads(small().replace("n_ctx = ", "n_ctx = 100000 #"))
    fit = largest_prompt(spec, 64 * 2**20, batch=2, new_tokens=16)
    assert fit.report.memory.generation.peak.at(2) <= 64 * 2**20
    longer = archcalc.analyze(spec, batch=2, prompt=fit.value + 1, new_tokens=16)
    assert longer.memory.generation.peak.at(2) > 64 * 2**20


def test_memory_budget_answers_for_generation(tmp_path):
    path = tmp_path / "gpt2_small.toml"
    path.write_text(small())
    result = run("memory", str(path), "--budget", "64MiB", "--device", "cpu", "--prompt", "256", "--new-tokens", "64")
    assert result.exit_code == 0, result.output
    assert "Largest batch:" in result.stdout and "generates 256 + 64 tokens" in result.stdout
    data = json.loads(run("memory", str(path), "--budget", "64MiB", "--device", "cpu", "--prompt", "256", "--new-tokens", "64",
                          "-f", "json").stdout)
    assert data["solve"] == "batch" and data["batch"] >= 1 and set(data["generation"]) >= CONTRACT
    assert data["generation"]["peak_bytes"] <= data["budget_bytes"]
    solved = run("memory", str(path), "--budget", "64MiB", "--device", "cpu", "--new-tokens", "16", "-b", "2", "--solve", "T")
    assert solved.exit_code == 0 and "Largest prompt:" in solved.stdout, solved.output
    none = run("memory", str(path), "--budget", "512KiB", "--prompt", "8", "--new-tokens", "2")
    assert none.exit_code == 1 and "Not even a batch of 1 fits" in none.stdout


def test_a_sliding_windows_cache_says_how_many_tokens_it_keeps(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(ENCODER.replace("num_heads = 2", "num_heads = 2\ncausal = true\nwindow = 4"))
    result = run("show", str(path), "--prompt", "8", "--new-tokens", "2", "--batch", "1")
    assert result.exit_code == 0 and "KV cache, the last 4 of 10 tokens" in result.stdout, result.output
    g = json.loads(run("show", str(path), "--prompt", "8", "--new-tokens", "2", "--batch", "1", "-f", "json").stdout)
    assert g["memory"]["generation"]["kv_cache_bytes"] == 2 * 16 * 4 * 4  # keys and values, d = 16, 4 tokens, float32
