"""export: readable nn.Module source that rebuilds the same network as build(), round-tripped through a file."""

import ast
import importlib.util
import itertools
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.export import source  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.backends.test_torch_build import STACKS, VALUES  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.oracle.torch_nets import networks  # noqa: E402

FILES = itertools.count()


def load_class(path, name: str):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def round_trip(report, tmp_path, name="Net"):
    """Export, import the file, and compare with build(): parameters, buffers, output shape and values."""
    # a new file each time: hypothesis reuses tmp_path, and a file rewritten within a second with the same
    # size would be loaded from its stale bytecode in __pycache__
    path = tmp_path / f"{name.lower()}_{next(FILES)}.py"
    path.write_text(source(report, name))
    exported = load_class(path, name)()
    built = archcalc.torch.build(report).float()
    assert sum(p.numel() for p in exported.parameters()) == report.totals["params"]
    shapes = lambda m: [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert shapes(exported) == shapes(built)
    exported.load_state_dict(built.state_dict())  # same names, so build's weights fit; then the same function
    x = torch.randn(2, *report.input)
    with torch.no_grad():
        out, expected = exported.eval()(x), built.eval()(x)
    assert tuple(out.shape) == (2, *report.output)
    # a max-pooling window that covers only padding gives -inf in both, and NaN after it: the same function
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    return path.read_text()


# export writes each layer as an attribute: a stack named by dotted paths (torchvision's "features.0") is not exportable yet
EXPORTABLE = [n for n in STACKS if not any(".0" in line for line in (SPECS / n).read_text().splitlines() if line.startswith("name"))]


@pytest.mark.parametrize("name", [n for n in EXPORTABLE if n != "alexnet_symbolic.toml" or n in VALUES])
def test_every_shipped_spec_round_trips(name, tmp_path):
    report = archcalc.analyze(archcalc.load(SPECS / name), **VALUES.get(name, {}))
    round_trip(report, tmp_path)


def test_alexnet_reads_like_the_course(tmp_path):
    text = round_trip(archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")), tmp_path, "AlexNet")
    assert "class AlexNet(nn.Module):" in text
    assert "self.conv1 = nn.Conv2d(3, 96, 11, stride=4, padding=2)" in text
    assert "x = torch.flatten(x, 1)" in text and "# B×9216" in text
    assert "x = F.relu(self.fc1(x))" in text and "self.drop1 = nn.Dropout(p=0.5)" in text
    assert "62,378,344 parameters" in text


def test_the_source_imports_only_torch_and_comments_every_line():
    text = source(archcalc.analyze(archcalc.load(SPECS / "lenet5.toml")))
    tree = ast.parse(text)
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and all(name == "torch" or name.startswith("torch.") for name in imported)
    body = text.split("super().__init__()")[1].split("return x")[0]
    code = [line for line in body.splitlines() if line.strip() and not line.strip().startswith(("def ", "#"))]
    assert code and all("  # " in line for line in code)


def test_the_class_is_named_after_the_model():
    report = archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"), H=64, W=64, classes=10)
    assert "class AlexNetSymbolic(nn.Module):" in source(report)
    assert "class LeNet5(nn.Module):" in source(archcalc.analyze(archcalc.load(SPECS / "lenet5.toml")))


def test_the_exported_file_runs_as_a_script(tmp_path):
    path = tmp_path / "lenet.py"
    result = CliRunner().invoke(main, ["export", str(SPECS / "lenet5.toml"), "-o", str(path)])
    assert result.exit_code == 0, result.output
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch.Size([2,", "10])", "61706"]


def test_export_writes_to_stdout_with_dash():
    result = CliRunner().invoke(main, ["export", str(SPECS / "mlp_quiz.toml"), "-o", "-", "--class-name", "Quiz"])
    assert result.exit_code == 0
    assert "class Quiz(nn.Module):" in result.output and "nn.Linear(10, 200, bias=False)" in result.output


def test_a_bad_class_name_is_refused():
    result = CliRunner().invoke(main, ["export", str(SPECS / "mlp_quiz.toml"), "--class-name", "not a name"])
    assert result.exit_code == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(networks())
def test_drawn_networks_round_trip(tmp_path, text):
    round_trip(archcalc.analyze(archcalc.loads(text)), tmp_path)


def test_spec_text_cannot_escape_the_docstring():
    # specs come from strangers: a model name that closes the docstring must stay inside it
    text = '[model]\nname = "x\\"\\"\\"\\nimport os\\nos.remove(\\"f\\") #\\\\"\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n'
    exported = source(archcalc.analyze(archcalc.loads(text)))
    tree = ast.parse(exported)
    assert [type(n).__name__ for n in tree.body] == ["Expr", "Import", "Import", "ImportFrom", "ClassDef", "If"]
    assert 'import os\nos.remove("f")' in ast.get_docstring(tree).replace("\\n", "\n").replace('\\"', '"')
    assert not any(isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "remove" for n in ast.walk(tree))



ISSUE_10 = """[model]
input = [4, 6, 6]
[[layers]]
type = "conv"
out_channels = 6
kernel_size = 3
padding = 1
padding_mode = "reflect"
[[layers]]
type = "conv_transpose"
out_channels = 4
kernel_size = 2
stride = 2
[[layers]]
type = "groupnorm"
num_groups = 2
[[layers]]
type = "lrn"
size = 3
[[layers]]
type = "prelu"
num_parameters = 4
[[layers]]
type = "flatten"
start_dim = 1
[[layers]]
type = "permute"
dims = [1, 0]
[[layers]]
type = "layernorm"
[[layers]]
type = "gru"
hidden_size = 5
bidirectional = true
[[layers]]
type = "rmsnorm"
[[layers]]
type = "activation"
function = "leaky_relu"
negative_slope = 0.2
[[layers]]
type = "dense"
out_features = 3
activation = "gelu"
[[layers]]
type = "activation"
function = "softmax"
dim = -1
"""


def test_issue_10_kinds_round_trip(tmp_path):
    text = round_trip(archcalc.analyze(archcalc.loads(ISSUE_10)), tmp_path)
    for call in ("x.permute(0, 2, 1)", "nn.GRU(4, 5, batch_first=True, bidirectional=True)", "(x)[0]",
                 "F.leaky_relu(x, negative_slope=0.2)", "F.softmax(x, dim=-1)", "torch.flatten(x, 2)"):
        assert call in text
