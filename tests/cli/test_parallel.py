"""Many GPUs from the outside: --gpus, --strategy, --tp on show and memory, the panel's collectives and ranks (the same
numbers as JSON's memory.communication_bytes and memory.ranks), the layouts list of memory --budget --gpus N, and
what is refused. The bytes themselves are tested against torch.distributed in tests/memory/test_ranks_oracle.py and
test_timeline_tensor_parallel.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archcalc.cli.main import main
from archcalc.core import fmt
from tests.memory.test_timeline_gpt2 import small_spec

STEP = ("--set", "T=64", "-b", "2", "--optimizer", "adam")


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("parallel") / "gpt2.toml"
    path.write_text(small_spec(500, 64, 64, 4, 2, 0.0))
    return str(path)


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def shown(spec: str, *layout: str) -> tuple[str, dict]:
    """show's table and its JSON memory under a layout."""
    table, data = run("show", spec, *STEP, *layout), run("show", spec, "-f", "json", *STEP, *layout)
    assert table.exit_code == data.exit_code == 0, table.output + data.output
    return table.output, json.loads(data.stdout)["memory"]


def test_zero1s_panel_lists_each_rank_as_json_does(spec):
    table, memory = shown(spec, "--gpus", "2", "--strategy", "zero1")
    assert [r["rank"] for r in memory["ranks"]] == [0, 1]
    for rank in memory["ranks"]:
        line = next(line for line in table.splitlines() if line.startswith(f"rank {rank['rank']}, peak"))
        assert fmt.size_bytes(rank["peak_bytes"]) in line
    assert "Memory per GPU (zero1 over 2 GPUs)" in table


def test_ddp_and_tp_ranks_hold_the_same_bytes_so_the_panel_lists_none(spec):
    for layout in (("--gpus", "2", "--strategy", "ddp"), ("--gpus", "4", "--strategy", "tp", "--tp", "2")):
        table, memory = shown(spec, *layout)
        assert "ranks" not in memory and "rank 0, peak" not in table
        sent = memory["communication_bytes"]["all_reduce"]
        assert sent > 0 and "all-reduce per GPU, a step" in table and f"{fmt.group(sent)} bytes" in table


def test_the_layouts_list_says_allocated_and_reserved_on_cuda_and_the_peak_on_the_cpu(spec):
    cuda = run("memory", spec, "--set", "T=64", "--budget", "512MiB", "--gpus", "2")
    assert cuda.exit_code == 0, cuda.output
    header = cuda.output.splitlines()[1].split()
    assert header[-2:] == ["allocated", "reserved"] and "what sets the batch" in cuda.output.replace("\n  ", " ")
    data = json.loads(run("memory", spec, "--set", "T=64", "--budget", "512MiB", "--gpus", "2", "-f", "json").stdout)
    fit = [c for c in data["layouts"] if c["batch_per_gpu"]]
    assert fit and all(c["reserved_bytes"] >= c["peak_bytes"] for c in fit)
    cpu = run("memory", spec, "--set", "T=64", "--budget", "512MiB", "--gpus", "2", "--device", "cpu")
    assert cpu.output.splitlines()[1].split()[-3:] == ["peak", "per", "GPU"] and "reserved" not in cpu.output


@pytest.mark.parametrize(("args", "where"), [
    (("show", "--gpus", "2"), "--gpus"),  # a world size without a layout
    (("show", "--gpus", "4", "--strategy", "ddp", "--tp", "2"), "--tp"),  # tp under a data-parallel strategy
    (("show", "--gpus", "2", "--strategy", "ddp", "--prompt", "8", "--new-tokens", "4"), "--strategy"),  # generation
    (("show", "--gpus", "2", "--strategy", "tp", "--freeze", "h.0.*"), "--strategy"),  # fine-tuning under a layout
    (("memory", "--budget", "1GiB", "--solve", "T", "--gpus", "2"), "--gpus"),  # a size solved under no layout
])
def test_what_a_layout_refuses(spec, args, where):
    command, *rest = args
    result = run(command, spec, "-b", "2", *rest)
    assert result.exit_code == 2 and where in result.output, result.output
