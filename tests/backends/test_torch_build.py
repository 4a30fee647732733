"""archcalc.torch.build: the spec's network as a named nn.Sequential, or a clear refusal."""

import doctest

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.build import free_names, is_chain, parts  # noqa: E402
from archcalc.backends.modules import Graph  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from archcalc.core.errors import SpecError  # noqa: E402
from tests.conftest import SEQUENCE_STACKS, SPECS  # noqa: E402
from tests.oracle.torch_nets import spec_text  # noqa: E402

# Values for the shipped specs that leave sizes open; a new symbolic spec without an entry here must be refused.
VALUES = {"alexnet_symbolic.toml": {"H": 224, "W": 224, "classes": 1000}, "resnet18_symbolic.toml": {"H": 64, "W": 64}}
SHIPPED = sorted(p.name for p in SPECS.glob("*.toml"))
# the graph specs (ResNet, DenseNet... at 224×224) are tested at small inputs in test_graph_specs.py, to keep CI fast
STACKS = [name for name in SHIPPED if "[blocks." not in (SPECS / name).read_text() and name not in SEQUENCE_STACKS]


def report_of(name: str, **values):
    return archcalc.analyze(archcalc.load(SPECS / name), **values)


@pytest.mark.parametrize("name", STACKS)
def test_every_shipped_spec_builds_with_the_reports_parameters(name):
    report = report_of(name, **VALUES.get(name, {}))
    if free_names(report):
        with pytest.raises(SpecError):
            archcalc.torch.build(report)
        return
    net = archcalc.torch.build(SPECS / name, **VALUES.get(name, {}))
    assert isinstance(net, torch.nn.Sequential if is_chain(report) else Graph)
    assert sum(p.numel() for p in net.parameters()) == report.totals["params"]
    for part in parts(report):  # each row's children carry its name and hold its parameters
        children = [net.get_submodule(n) for n in part.names]
        assert sum(p.numel() for c in children for p in c.parameters()) == part.row.params, part.row.name
    x = torch.zeros(2, *report.input)
    assert tuple(net.eval()(x).shape) == (2, *report.output)


def test_children_are_named_after_the_layers_and_their_activations():
    net = archcalc.torch.build(SPECS / "lenet5.toml")
    assert [name for name, _ in net.named_children()] == [
        "conv1", "conv1_relu", "pool1", "conv2", "conv2_relu", "pool2", "flatten", "fc1", "fc1_relu", "fc2", "fc2_relu", "fc3",
    ]
    assert isinstance(net.conv1_relu, torch.nn.ReLU) and isinstance(net.pool1, torch.nn.AvgPool2d)
    assert dict(net.named_parameters())["fc1.weight"].shape == (120, 400)


def test_names_that_clash_get_an_underscore():
    text = spec_text([8], [
        {"type": "dense", "name": "train", "out_features": 4, "activation": "tanh"},  # nn.Module.train
        {"type": "dense", "name": "fc", "out_features": 4, "activation": "relu"},
        {"type": "activation", "name": "fc_relu", "function": "relu"},  # what fc's activation would be called
    ])
    net = archcalc.torch.build(archcalc.loads(text))
    assert [name for name, _ in net.named_children()] == ["train_", "train__tanh", "fc", "fc_relu_", "fc_relu"]
    assert callable(net.train)  # the method is still the method
    assert tuple(net(torch.zeros(2, 8)).shape) == (2, 4)


def test_the_parameters_take_the_specs_dtype():
    text = spec_text([3, 8, 8], [{"type": "conv", "out_channels": 4, "kernel_size": 3}], dtype="bfloat16")
    net = archcalc.torch.build(archcalc.loads(text))
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}


def test_a_spec_with_free_sizes_is_refused_naming_them():
    with pytest.raises(SpecError) as error:
        archcalc.torch.build(SPECS / "alexnet_symbolic.toml", H=224)
    assert "W, classes" in error.value.problem and "H" not in error.value.problem.split(":")[-1]
    assert "--set W=" in error.value.hint


def test_a_free_name_in_a_layer_field_is_refused_too():
    # the shapes and counts are numbers, but dropout's p is not: torch needs it all the same
    text = '[model]\ninput = [4]\n[[layers]]\ntype = "dropout"\np = "q"\n'
    with pytest.raises(SpecError, match="still unknown: q"):
        archcalc.torch.build(archcalc.loads(text))


@pytest.mark.parametrize("command", ["verify", "export", "bench"])
def test_the_commands_refuse_free_sizes_with_status_2(command):
    result = CliRunner().invoke(main, [command, str(SPECS / "alexnet_symbolic.toml"), "--set", "classes=10"])
    assert result.exit_code == 2, result.output
    assert "still unknown: H, W" in result.output and "--set H=" in result.output
    assert "Traceback" not in result.output


def test_the_facade_examples_run():
    assert doctest.testmod(archcalc.torch).failed == 0
