"""`archcalc bench SPEC --nproc N --strategy S`: the step under torchrun (gloo on the CPU), each rank's line beside
archcalc's prediction for that rank. One small GPT-2 on two processes: the whole path (torchrun, the process group
from its environment, Megatron's plan, the ranks' results read back), a few seconds."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import main
from tests.conftest import ROOT

SPEC = str(ROOT / "specs" / "gpt2.toml")
SMALL = {"vocab": 11, "n_ctx": 16, "d": 32, "heads": 4, "n_layer": 1, "T": 8}
SETS = [arg for name, value in SMALL.items() for arg in ("--set", f"{name}={value}")]


def test_bench_runs_tensor_parallel_gpt2_on_two_processes():
    pytest.importorskip("torch")
    flags = ["--batch", "2", "--steps", "2", "--warmup", "1", "--optimizer", "adam", "--nproc", "2", "--strategy", "tp"]
    result = CliRunner().invoke(main, ["bench", SPEC, *SETS, *flags, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    report = archcalc.analyze(archcalc.load(SPEC), batch=2, optimizer="adam", gpus=2, strategy="tp", **SMALL)
    assert data["parallel"] == {"gpus": 2, "strategy": "tp", "tp": 2, "dp": 1}
    assert [r["rank"] for r in data["ranks"]] == [0, 1]
    assert all(r["predicted_peak_bytes"] == report.memory.training.at(2) for r in data["ranks"])
    assert all(r["measured_peak_bytes"] is None for r in data["ranks"])  # a peak torch counts on CUDA only
    assert data["samples_per_s"] > 0 and data["batch_per_gpu"] == 2


@pytest.mark.parametrize(("flags", "problem"), [
    (["--nproc", "2"], "--strategy and --tp go with --nproc N"),
    (["--strategy", "ddp"], "--strategy and --tp go with --nproc N"),
    (["--nproc", "2", "--strategy", "ddp", "--compile"], "--compile is not taken with --nproc"),
    (["--nproc", "3", "--strategy", "tp"], "num_heads = 4 does not divide among --tp 3 ranks"),
])
def test_bench_refuses_before_starting_torchrun(flags, problem):
    result = CliRunner().invoke(main, ["bench", SPEC, *SETS, *flags])
    assert result.exit_code == 2, result.output
    assert problem in result.output
