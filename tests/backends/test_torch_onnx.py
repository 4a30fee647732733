"""export --onnx: the file passes onnx's checker and computes what the torch module computes, at any batch and size."""

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.onnx import export  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

CONV_ONLY = """
[model]
input = [3, "H", "W"]
[[layers]]
type = "conv"
out_channels = 4
kernel_size = 3
stride = 2
activation = "relu"
[[layers]]
type = "pool"
kernel_size = 2
"""


def axes(data: bytes) -> list:
    graph = onnx.load_from_string(data).graph
    return [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]


def test_lenet_has_a_dynamic_batch_named_b():
    exported = export(archcalc.load(SPECS / "lenet5.toml"))
    assert axes(exported.data) == ["B", 1, 32, 32]
    assert exported.checked_with == "onnxruntime"


def test_the_spec_symbols_name_the_dynamic_axes_and_other_sizes_run():
    spec = archcalc.loads(CONV_ONLY)
    exported = export(spec)
    assert axes(exported.data) == ["B", 3, "H", "W"]
    session = onnxruntime.InferenceSession(exported.data, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 41, 57)
    got = session.run(None, {"input": x.numpy()})[0]
    report = archcalc.analyze(spec, H=41, W=57)
    assert got.shape == (3, *report.output)


def test_sizes_the_weights_depend_on_are_fixed_where_traced():
    exported = export(archcalc.load(SPECS / "alexnet_symbolic.toml"), classes=10, H=227)
    assert axes(exported.data) == ["B", 3, 227, 224]


def test_cli_writes_a_file_and_refuses_stdout(tmp_path):
    out = tmp_path / "net.onnx"
    done = CliRunner().invoke(main, ["export", str(SPECS / "lenet5.toml"), "--onnx", "-o", str(out)])
    assert done.exit_code == 0, done.output
    onnx.checker.check_model(onnx.load(out))
    refused = CliRunner().invoke(main, ["export", str(SPECS / "lenet5.toml"), "--onnx"])
    assert refused.exit_code == 2 and "-o NAME.onnx" in refused.output
