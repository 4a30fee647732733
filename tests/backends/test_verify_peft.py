"""`verify` against peft: peft's model of the spec's LoRA over the plain build, beside archcalc's build.

peft imports transformers, which imports torchvision: tests.oracle.vision first (the installed torchvision lacks two
meta ops). Each case is a spec's LoRA, checked by archcalc.backends.peft_check: the parameters and the trainable
ones against the report's totals, the state_dicts loading strictly both ways, the outputs equal (lora_B random).
"""

from __future__ import annotations

import json
import sys

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401
from archcalc.backends.peft_check import against_peft, targets  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.cli.test_finetune_sweep import LLAMA as LLAMA_SWEEP  # noqa: E402
from tests.memory.test_timeline_gpt2 import small_spec  # noqa: E402

peft = pytest.importorskip("peft")

MLP = """[model]
name = "token MLP"
input = [4, 8]
[[layers]]
name = "fc0"
type = "dense"
out_features = 16
activation = "relu"
[[layers]]
name = "fc1"
type = "dense"
out_features = 8
[finetune]
lora = { rank = 2, alpha = 4, dropout = 0.1, targets = ["fc0"] }
"""
GPT2 = small_spec(50, 16, 16, 2, 2, 0.0)
LLAMA = LLAMA_SWEEP  # a Llama of 2 layers, 4 heads, 2 of k and v, rotary

CASES = {  # name: the spec, analyze's keywords, peft's target_modules (the build's paths)
    "dense": (MLP, {}, ["fc0"]),
    "c_attn": (GPT2, dict(T=8, lora_rank=4, lora_alpha=8, lora_targets=["c_attn"]), ["h.0.attn.in_proj", "h.1.attn.in_proj"]),
    "all_four_bfloat16_base": (GPT2, dict(T=8, lora_rank=4, lora_targets=["c_attn", "c_proj", "c_fc"], base_dtype="bfloat16"),
                               [f"h.{i}.{p}" for i in range(2) for p in ("attn.in_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj")]),
    "llama_q_v": (LLAMA, dict(T=8, lora_rank=8, lora_alpha=16, lora_dropout=0.05, lora_targets=["q_proj", "v_proj"]),
                  [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_spec_lora_is_peft_lora(case):
    text, values, paths = CASES[case]
    report = archcalc.analyze(archcalc.loads(text), **values)
    assert targets(report) == paths
    result = against_peft(report)
    assert result.version == peft.__version__ and not result.missing
    assert [(c.what, c.ok) for c in result.checks] == [
        ("parameters", True), ("trainable parameters", True), ("peft's state_dict loads into archcalc's build (strict)", True),
        ("archcalc's state_dict loads into peft's model (strict)", True), ("outputs (eval, batch 2)", True)]
    assert result.checks[0].measured == report.totals["params"] and result.checks[1].measured == report.totals["trainable_params"]


def test_no_lora_no_peft_check():
    assert against_peft(archcalc.analyze(archcalc.loads(MLP.split("[finetune]")[0]))) is None


def test_verify_prints_peft_checks_and_their_json(tmp_path):
    spec = tmp_path / "mlp.toml"
    spec.write_text(MLP)
    result = CliRunner().invoke(main, ["verify", str(spec)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"LoRA against peft {peft.__version__}:" in result.output
    assert "✓ trainable parameters: 48" in result.output  # fc0's lora_A 2×8 and lora_B 16×2
    data = json.loads(CliRunner().invoke(main, ["verify", str(spec), "-f", "json"]).output)
    assert data["ok"] and data["peft"]["ok"] and len(data["peft"]["checks"]) == 5


def test_without_peft_verify_says_so_in_one_line(tmp_path, monkeypatch):
    spec = tmp_path / "mlp.toml"
    spec.write_text(MLP)
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError(name="peft")
    result = CliRunner().invoke(main, ["verify", str(spec)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "peft" in line]
    assert lines == ["peft is not installed: LoRA not checked against peft (pip install peft)"]


def test_a_peft_mismatch_fails_verify(tmp_path, monkeypatch):
    """A wrong target list (peft adapts a layer archcalc does not): the counts and the loads differ, exit 1."""
    import archcalc.backends.peft_check as check

    spec = tmp_path / "mlp.toml"
    spec.write_text(MLP)
    monkeypatch.setattr(check, "targets", lambda report: ["fc0", "fc1"])
    result = CliRunner().invoke(main, ["verify", str(spec)], env={"COLUMNS": "160"})
    assert result.exit_code == 1
    assert "✗ trainable parameters: archcalc 48, peft 96" in result.output  # fc1's 2×16 and 8×2 too
    assert "✗ peft's state_dict loads into archcalc's build (strict): Missing key(s)" in result.output
