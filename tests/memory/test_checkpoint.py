"""Activation checkpointing (`checkpoint = true` on a block use): the regions, the torch build, training FLOPs
against FlopCounterMode over a real checkpointed step, memory against the CPU oracle, and what show/memory say.

The timeline's byte-exact check on drawn networks is tests/memory/test_timeline_oracle.py
(test_drawn_checkpointed_blocks_step_by_step)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.analysis import checkpoint
from archcalc.cli.main import main
from tests.conftest import ROOT

RESNET = (ROOT / "specs" / "resnet18_symbolic.toml").read_text()
CHECKPOINTED = RESNET.replace('block = "basic"\n', 'block = "basic"\ncheckpoint = true\n')

NESTED = '''[model]
input = [2, 6, 6]
[blocks.inner]
layers = [
    { name = "conv", type = "conv", out_channels = 2, kernel_size = 3, padding = 1, activation = "relu" },
]
[blocks.outer]
layers = [
    { name = "a", type = "block", block = "inner", checkpoint = true },
    { name = "b", type = "block", block = "inner", repeat = 2 },
    { name = "tail", type = "conv", out_channels = 2, kernel_size = 1 },
]
[[layers]]
name = "o"
type = "block"
block = "outer"
checkpoint = true
[[layers]]
name = "i"
type = "block"
block = "inner"
repeat = 3
checkpoint = true
[[layers]]
name = "flat"
type = "flatten"
[[layers]]
name = "fc"
type = "dense"
out_features = 3
'''


def test_regions_are_the_outermost_checkpointed_uses_one_per_repeat():
    report = archcalc.analyze(archcalc.loads(NESTED))
    regions = checkpoint.regions(report)
    assert [r.path for r in regions] == ["o", "i.0", "i.1", "i.2"]  # o.a is inside o
    o = regions[0]
    assert [row.name for row in report.rows[o.first:o.stop]] == ["o.a.conv", "o.b.0.conv", "o.b.1.conv", "o.tail"]
    # o ends with a conv without activation: it saves its input before it runs, so the recomputation stops there
    assert (o.until, o.runs) == (o.stop, 0)
    assert not report.row("o.tail").recomputed and report.row("o.b.1.conv").recomputed
    # an inner block ends with relu, which saves its output: the conv and the relu both run again
    assert regions[1].runs == 2 and report.row("i.0.conv").recomputed


def test_no_checkpoint_changes_nothing():
    plain = archcalc.analyze(archcalc.loads(RESNET), H=32, W=32, batch=4)
    assert checkpoint.regions(plain) == () and not any(row.recomputed for row in plain.rows)
    marked = archcalc.analyze(archcalc.loads(CHECKPOINTED), H=32, W=32, batch=4)
    assert len(checkpoint.regions(marked)) == 8
    assert marked.totals["flops"] == plain.totals["flops"]
    extra = sum(row.flops for row in marked.rows if row.name.startswith("layer"))  # every block reruns all of its convs
    assert marked.totals["training_flops"] - plain.totals["training_flops"] == extra
    assert marked.memory.phase("forward").at(4) < plain.memory.phase("forward").at(4)
    assert marked.memory.inference_peak.at(4) == plain.memory.inference_peak.at(4)  # eval: nothing is checkpointed


torch = pytest.importorskip("torch")


def _step_flops(model, x, classes):
    from torch.utils.flop_counter import FlopCounterMode

    targets = torch.zeros(x.shape[0], dtype=torch.long) % classes
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), targets).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("text, values", [(CHECKPOINTED, {"H": 32, "W": 32}), (NESTED, {})], ids=["resnet18", "nested"])
def test_training_flops_count_the_recomputation_as_flop_counter_mode_does(text, values):
    from archcalc.backends.build import build

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=2, **values)
    model = build(spec, **values).train()
    x = torch.randn(2, *map(int, report.input))
    assert _step_flops(model, x, int(report.output[0])) == report.totals["training_flops"] * 2


def test_drawn_checkpointed_training_flops():
    from hypothesis import HealthCheck, given, settings, strategies as st

    from archcalc.backends.build import build
    from tests.memory.test_timeline_oracle import checkpointed_graphs

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(text=checkpointed_graphs(), batch=st.integers(1, 3))
    def check(text, batch):
        spec = archcalc.loads(text)
        report = archcalc.analyze(spec, batch=batch)
        x = torch.randn(batch, *map(int, report.input))
        assert _step_flops(build(spec).train(), x, int(report.output[0])) == report.totals["training_flops"] * batch, text

    check()


def test_the_checkpointed_module_computes_the_same_gradients():
    from archcalc.backends.build import build

    grads = []
    for text in (RESNET, CHECKPOINTED):
        torch.manual_seed(0)
        model = build(archcalc.loads(text), H=32, W=32).train()
        x = torch.randn(2, 3, 32, 32)
        model(x).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_checkpointed_resnet18_step_matches_the_oracle(optimizer):
    from archcalc.backends.build import build
    from tests.memory.test_timeline_oracle import oracle, phases

    spec = archcalc.loads(CHECKPOINTED)
    report = archcalc.analyze(spec, batch=2, optimizer=optimizer, H=64, W=64)
    got = phases(report, 2)
    assert got == oracle(build(spec, H=64, W=64), report.input, 2, "float32", optimizer)
    plain = archcalc.analyze(archcalc.loads(RESNET), batch=2, optimizer=optimizer, H=64, W=64)
    assert got["forward"] < phases(plain, 2)["forward"]


def test_verify_still_agrees_row_by_row():
    from archcalc.backends.verify import verify

    report = archcalc.analyze(archcalc.loads(NESTED), batch=2)
    assert all(check.ok for check in verify(report))


def test_show_json_and_memory_name_the_checkpointed_uses(tmp_path):
    path = tmp_path / "r18.toml"
    path.write_text(CHECKPOINTED)
    runner = CliRunner()
    shown = runner.invoke(main, ["show", str(path), "--set", "H=64", "--set", "W=64", "--batch", "8", "--depth", "1"])
    assert shown.exit_code == 0, shown.output
    assert "basic ×2, checkpointed" in shown.output
    assert "8 block uses" in shown.output and "layer1.0 … layer4.1" in shown.output
    data = json.loads(runner.invoke(main, ["show", str(path), "--set", "H=64", "--set", "W=64", "--batch", "8",
                                           "-f", "json"]).output)
    assert next(b["path"] for b in data["blocks"] if b["checkpoint"] and b["repeat"] is None) == "layer1.0"
    fit = runner.invoke(main, ["memory", str(path), "--set", "H=64", "--set", "W=64", "--budget", "1GiB"])
    plain = tmp_path / "plain.toml"
    plain.write_text(RESNET)
    fit_plain = runner.invoke(main, ["memory", str(plain), "--set", "H=64", "--set", "W=64", "--budget", "1GiB",
                                     "-f", "json"])
    assert fit.exit_code == 0, fit.output
    assert "checkpointed" in fit.output
    more = json.loads(runner.invoke(main, ["memory", str(path), "--set", "H=64", "--set", "W=64", "--budget", "1GiB",
                                           "-f", "json"]).output)
    assert more["batch"] > json.loads(fit_plain.output)["batch"]


def test_summed_model_keeps_region_inputs_not_region_tensors():
    plain = archcalc.analyze(archcalc.loads(RESNET), H=64, W=64).memory
    marked = archcalc.analyze(archcalc.loads(CHECKPOINTED), H=64, W=64).memory
    assert marked.saved.per_sample < plain.saved.per_sample
    assert marked.per_row == plain.per_row  # per layer: what its nodes save when kept (verify checks it row by row)


def test_checkpoint_takes_a_condition_like_when():
    every_other = NESTED.replace("repeat = 3\ncheckpoint = true", 'repeat = 3\ncheckpoint = "index % 2 == 0"')
    report = archcalc.analyze(archcalc.loads(every_other))
    assert [r.path for r in checkpoint.regions(report)] == ["o", "i.0", "i.2"]
    switched = "[vars]\nckpt = 0\n" + NESTED.replace("repeat = 3\ncheckpoint = true", 'repeat = 3\ncheckpoint = "ckpt"')
    assert [r.path for r in checkpoint.regions(archcalc.analyze(archcalc.loads(switched)))] == ["o"]
    assert [r.path for r in checkpoint.regions(archcalc.analyze(archcalc.loads(switched), ckpt=1))][1:] == ["i.0", "i.1", "i.2"]
    with pytest.raises(archcalc.SpecError) as error:
        archcalc.loads(NESTED.replace("repeat = 3\ncheckpoint = true", "repeat = 3\ncheckpoint = [1]"))
    assert error.value.field == "checkpoint"


def test_shipped_resnet50_switches_checkpointing_with_a_var():
    spec = archcalc.load(ROOT / "specs" / "resnet50.toml")
    plain = archcalc.analyze(spec, batch=64, optimizer="adam", device="cuda")
    marked = archcalc.analyze(spec, batch=64, optimizer="adam", device="cuda", checkpointing=1)
    assert checkpoint.regions(plain) == () and len(checkpoint.regions(marked)) == 3 + 4 + 6 + 3
    assert marked.totals["params"] == plain.totals["params"] and marked.totals["flops"] == plain.totals["flops"]
    assert marked.memory.training.at(64) < plain.memory.training.at(64) / 2
    # every bottleneck ends with add + relu (relu saves its output): all its convs run again
    assert marked.totals["training_flops"] - plain.totals["training_flops"] == sum(
        row.flops for row in plain.rows if row.name.startswith("layer"))


def test_explain_adds_the_rerun_forward():
    from archcalc.teaching import explain_row

    report = archcalc.analyze(archcalc.loads(CHECKPOINTED), H=32, W=32)
    row = report.row("layer1.0.conv1")
    line = explain_row.text(row, "training_flops")
    assert f"forward again {row.flops:,}" in line and line.endswith(f"= {row.training_flops:,}")
    assert "again" not in explain_row.text(report.row("conv1"), "training_flops")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_nested_and_conditional_uses_match_the_oracle(optimizer, dtype):
    """A checkpointed use inside a checkpointed one (one region), every other repeat checkpointed."""
    from archcalc.backends.build import build
    from tests.memory.test_timeline_oracle import oracle, phases

    text = NESTED.replace("repeat = 3\ncheckpoint = true", 'repeat = 3\ncheckpoint = "index % 2 == 1"')
    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=3, optimizer=optimizer, dtype=dtype)
    assert [r.path for r in checkpoint.regions(report)] == ["o", "i.1"]
    assert phases(report, 3) == oracle(build(spec), report.input, 3, dtype, optimizer)


def test_export_writes_checkpointed_uses_as_checkpoint_calls(tmp_path):
    from archcalc.backends.export import source
    from tests.backends.test_torch_export import round_trip

    report = archcalc.analyze(archcalc.loads(CHECKPOINTED), H=32, W=32, batch=2)
    text = round_trip(report, tmp_path)  # the same state_dict and function as build()
    assert "from torch.utils.checkpoint import checkpoint" in text
    assert text.count("checkpoint(self.layer") == 8 and "use_reentrant=False" in text
    plain = source(archcalc.analyze(archcalc.loads(RESNET), H=32, W=32), "Net")
    assert "checkpoint" not in plain
    from tests.backends.test_torch_export import load_class

    (tmp_path / "checkpointed.py").write_text(text)  # round_trip names its files anew each time
    model = load_class(tmp_path / "checkpointed.py", "Net")().train()
    assert _step_flops(model, torch.randn(2, 3, 32, 32), 1000) == report.totals["training_flops"] * 2
