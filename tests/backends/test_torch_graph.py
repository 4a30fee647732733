"""The torch backend on graphs: the module's paths and names, tensors freed after their last reader, bench."""

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.bench import Options, bench  # noqa: E402
from archcalc.backends.modules import Graph  # noqa: E402
from archcalc.backends.verify import verify  # noqa: E402
from archcalc.core.errors import SpecError  # noqa: E402
from tests.analysis.test_graph_oracle import graphs  # noqa: E402
from tests.analysis.test_graph_specs import report_at  # noqa: E402
from tests.oracle import torch_probe  # noqa: E402, F401  (torch on one thread)

SKIP = """
[model]
input = [4, 8, 8]

[blocks.unit]
layers = [
    { name = "float", type = "conv", out_channels = 4, kernel_size = 3, padding = 1, activation = "relu" },
    { name = "cat", type = "concat", from = ["input", "float"] },
]

[[layers]]
name = "stem"
type = "conv"
out_channels = 4
kernel_size = 1

[[layers]]
name = "train"
type = "block"
block = "unit"
repeat = 2

[[layers]]
name = "sum"
type = "add"
from = ["train.1.float", "stem"]   # train.1.cat is read by nothing
"""


NESTED = """[model]
input = [4, 8, 8]

[blocks.inner]
layers = [
    { name = "conv", type = "conv", out_channels = "c", kernel_size = 3, padding = 1 },
    { name = "add", type = "add", from = ["input", "conv"] },
]

[blocks.outer]
layers = [
    { name = "a", type = "block", block = "inner", c = 4 },
    { name = "b", type = "block", block = "inner", c = 4, repeat = 2 },
    { name = "bn", type = "batchnorm", activation = "relu" },
]

[[layers]]
name = "solo"
type = "block"
block = "outer"

[[layers]]
name = "stage"
type = "block"
block = "outer"
repeat = 2
"""


def test_a_graph_builds_modules_at_its_paths_with_clashing_names_renamed():
    report = archcalc.analyze(archcalc.loads(SKIP))
    net = archcalc.torch.build(report)
    assert isinstance(net, Graph)
    # nn.Module's own attributes (train, float) get an underscore; the concats and the add hold no state
    assert list(net.state_dict()) == ["stem.weight", "stem.bias", "train_.0.float_.weight", "train_.0.float_.bias",
                                      "train_.1.float_.weight", "train_.1.float_.bias"]
    assert callable(net.train) and sum(p.numel() for p in net.parameters()) == report.totals["params"]
    x = torch.randn(2, 4, 8, 8)
    stem = net.stem(x)
    first = torch.cat([stem, torch.relu(net.get_submodule("train_.0.float_")(stem))], 1)
    second = torch.cat([first, torch.relu(net.get_submodule("train_.1.float_")(first))], 1)
    assert second.shape[1] == 12  # the concatenations ran
    torch.testing.assert_close(net(x), torch.relu(net.get_submodule("train_.1.float_")(first)) + stem)


def test_each_tensor_is_freed_once_after_its_last_reader():
    report = report_at("resnet18.toml", 32)
    net = archcalc.torch.build(report)
    last: dict[int, int] = {}
    for i, step in enumerate(net.steps, start=1):
        for slot in step.inputs:
            last[slot] = i
    freed = [slot for step in net.steps for slot in step.free]
    assert sorted(freed) == sorted(set(range(len(net.steps))))  # every tensor but the output, once
    for i, step in enumerate(net.steps, start=1):
        assert all(last.get(slot, slot) == i for slot in step.free)


def test_overlapping_paths_are_refused():
    text = '[model]\ninput = [4]\n[[layers]]\nname = "fc"\ntype = "dense"\nout_features = 4\n' \
           '[[layers]]\nname = "fc.0"\ntype = "dense"\nout_features = 4\n'
    with pytest.raises(SpecError, match="'fc' is a layer"):
        archcalc.torch.build(archcalc.loads(text))


def test_bench_runs_a_graph():
    report = report_at("resnet18.toml", 32)
    result = bench(report, Options(device="cpu", batch=2, steps=1, warmup=0))
    assert result.train.ms_per_step > 0 and result.inference.flops == 2 * report.totals["flops"]


def test_export_round_trips_a_graph_with_renamed_layers_and_a_dead_end(tmp_path):
    from tests.backends.test_torch_export import round_trip

    text = round_trip(archcalc.analyze(archcalc.loads(SKIP)), tmp_path)
    assert "class Unit(nn.Module):" in text and "self.float_ = nn.Conv2d(4, 4, 3, padding=1)" in text


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(g=graphs(), batch=st.integers(1, 3))
def test_drawn_graphs_verify_layer_by_layer_and_export(g, batch, tmp_path_factory):
    from tests.backends.test_torch_export import round_trip

    if g.ops[0][0] == "n_last":  # an empty draw
        return
    report = archcalc.analyze(archcalc.loads(g.spec()), batch=batch)
    checks = verify(report)
    wrong = [c for c in checks if not c.ok and not (c.quantity == "training_flops" and not g.reaches_output())]
    assert wrong == [], g.spec()
    round_trip(archcalc.analyze(archcalc.loads(g.spec())), tmp_path_factory.mktemp("export"))


def test_nested_blocks_export_as_nested_classes(tmp_path):
    from tests.backends.test_torch_export import round_trip

    report = archcalc.analyze(archcalc.loads(NESTED))
    text = round_trip(report, tmp_path)
    assert text.index("class Inner(") < text.index("class Outer(")  # a class before the classes that use it
    assert "self.a = Inner()" in text and "self.stage = nn.ModuleList([" in text
    assert "stage.1.b.1.conv.weight" in archcalc.torch.build(report).state_dict()


def test_a_layer_named_like_the_path_of_others_is_refused():
    text = '[model]\ninput = [4]\n[[layers]]\nname = "fc.0"\ntype = "dense"\nout_features = 4\n' \
           '[[layers]]\nname = "fc"\ntype = "dense"\nout_features = 4\n'
    with pytest.raises(SpecError, match="'fc' holds other layers"):
        archcalc.torch.build(archcalc.loads(text))
