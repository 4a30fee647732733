"""verify: every number of a report against torch, layer by layer (shapes and parameters on meta, the rest on CPU)."""

import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends.verify import QUANTITIES, verify  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from archcalc.core.errors import SpecError  # noqa: E402
from archcalc.layers.dense import Dense  # noqa: E402
from tests.backends.test_torch_build import STACKS, VALUES  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.oracle import torch_probe  # noqa: E402
from tests.oracle.torch_nets import networks, spec_text  # noqa: E402


def wrong(checks):
    return [c for c in checks if not c.ok]


@pytest.mark.parametrize("name", [n for n in STACKS if n != "alexnet_symbolic.toml" or n in VALUES])
def test_every_shipped_spec_verifies(name):
    report = archcalc.analyze(archcalc.load(SPECS / name), **VALUES.get(name, {}))
    checks = verify(report)
    assert len(checks) == len(report.rows) * len(QUANTITIES)
    assert wrong(checks) == []


def test_verify_covers_every_quantity_of_every_layer():
    report = archcalc.analyze(archcalc.load(SPECS / "lenet5.toml"), batch=3, dtype="bfloat16")
    checks = verify(report)
    assert [(c.layer, c.quantity) for c in checks] == [(r.name, q) for r in report.rows for q in QUANTITIES]
    assert wrong(checks) == []
    # the counts are for the batch, and the batch is the report's: a conv's FLOPs are 3 samples' worth
    assert next(c for c in checks if (c.layer, c.quantity) == ("conv1", "flops")).measured == 3 * 2 * (6 * 28 * 28) * (1 * 5 * 5)


def test_the_totals_agree_with_an_independent_whole_network_measurement():
    # torch_probe measures the whole network at once (not row by row): the rows must add up to it
    report = archcalc.analyze(archcalc.load(SPECS / "lenet5.toml"), batch=2)
    checks = verify(report)
    net = archcalc.torch.build(report)
    x = torch.randn(2, *report.input)
    total = {q: sum(c.measured for c in checks if c.quantity == q) for q in ("flops", "training_flops", "saved_bytes")}
    assert total["flops"] == torch_probe.flops(net, x)
    assert total["training_flops"] == torch_probe.flops(net, x, backward=True)
    assert total["saved_bytes"] == torch_probe.saved_bytes(net, x)


def test_a_wrong_number_is_caught_with_both_values(monkeypatch):
    monkeypatch.setattr(Dense, "weights", lambda self, x: x[0] * self.out_features + 1)
    report = archcalc.analyze(archcalc.load(SPECS / "lenet5.toml"))
    bad = wrong(verify(report))
    assert [(c.layer, c.quantity) for c in bad] == [("fc1", "weights"), ("fc2", "weights"), ("fc3", "weights")]
    assert (bad[0].expected, bad[0].measured) == (48001, 48000)


def test_the_command_exits_1_on_a_mismatch_and_shows_both_values(monkeypatch):
    monkeypatch.setattr(Dense, "weights", lambda self, x: x[0] * self.out_features + 1)
    result = CliRunner().invoke(main, ["verify", str(SPECS / "lenet5.toml")], env={"COLUMNS": "200"})  # a mismatch on one line
    assert result.exit_code == 1
    assert "✗ 48,001 ≠ torch 48,000" in result.output
    assert "3 of 48 checks differ from torch" in result.output


def test_the_command_prints_a_table_of_ticks():
    result = CliRunner().invoke(main, ["verify", str(SPECS / "mlp_quiz.toml"), "--batch", "3"])
    assert result.exit_code == 0, result.output
    assert "all 18 checks agree with torch" in result.output
    assert "✓ 2,000" in result.output and "batch 3" in result.output and "✗" not in result.output


def test_the_command_speaks_json():
    result = CliRunner().invoke(main, ["verify", str(SPECS / "lenet5.toml"), "--dtype", "float64", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["dtype"] == "float64" and data["batch"] == 2
    conv1 = {c["quantity"]: c for c in data["checks"] if c["layer"] == "conv1"}
    assert conv1["output"]["measured"] == [6, 28, 28]
    assert conv1["saved_bytes"]["expected"] == conv1["saved_bytes"]["measured"] > 0


# Found by the drawn networks: torch keeps a zero-padded copy of a conv's input for padding "same" with an even span.
@pytest.mark.parametrize("kernel, dilation", [(4, 1), ([2, 3], 1), (3, 2), ([3, 2], [1, 3])])
def test_same_padding_with_an_even_span_keeps_a_padded_copy(kernel, dilation):
    text = spec_text([2, 5, 7], [
        {"type": "conv", "out_channels": 3, "kernel_size": 3, "activation": "relu"},
        {"type": "conv", "out_channels": 2, "kernel_size": kernel, "padding": "same", "dilation": dilation},
    ])
    assert wrong(verify(archcalc.analyze(archcalc.loads(text)))) == []


def test_avg_pool_3d_refuses_an_input_smaller_than_its_kernel_as_torch_does():
    text = spec_text([1, 2, 1, 2], [{"type": "pool", "op": "avg", "kernel_size": 2, "padding": 1}])
    with pytest.raises(SpecError, match="smaller than the kernel"):
        archcalc.analyze(archcalc.loads(text))
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        torch.nn.AvgPool3d(2, padding=1)(torch.zeros(1, 1, 2, 1, 2))
    # 1-D and 2-D average pooling and max pooling accept it, in torch and in archcalc
    for shape, layer in (([1, 1, 1], {"op": "avg"}), ([1, 2, 1, 2], {"op": "max"})):
        text = spec_text(shape, [{"type": "pool", "kernel_size": 2, "padding": 1, **layer}])
        assert wrong(verify(archcalc.analyze(archcalc.loads(text)))) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(networks(dtypes=("float32", "bfloat16", "float16", "float64")), st.integers(2, 3))
def test_drawn_networks_verify(text, batch):
    report = archcalc.analyze(archcalc.loads(text), batch=batch)
    assert wrong(verify(report)) == []


def test_a_layer_torch_refuses_fails_verify_with_torchs_message(monkeypatch):
    from archcalc.layers.shape import Flatten

    monkeypatch.setattr(Flatten, "to_torch", lambda self, x, nn: nn.Unflatten(1, (999,)))  # a torch module that cannot take x
    checks = verify(archcalc.analyze(archcalc.load(SPECS / "lenet5.toml")))
    flatten = next(c for c in checks if (c.layer, c.quantity) == ("flatten", "output"))
    assert not flatten.ok and flatten.measured.startswith("refused: ")
    assert all(c.measured is None for c in checks if c.layer == "fc3")
    result = CliRunner().invoke(main, ["verify", str(SPECS / "lenet5.toml")])
    assert result.exit_code == 1 and "refused" in result.output and "could not be measured" in result.output


def test_a_model_name_with_markup_is_shown_as_written(tmp_path):
    path = tmp_path / "markup.toml"
    path.write_text('[model]\nname = "net [/] [red]x"\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n')
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "net [/] [red]x against torch" in result.output
