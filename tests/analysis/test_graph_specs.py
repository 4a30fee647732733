"""The shipped graph specs are torchvision's networks (and the reference U-Net): the same state_dict, the same
function, the same parameters, per-layer shapes and FLOPs. The reference modules (tests/oracle/reference_nets.py) are
proved against torchvision's published totals in test_reference_nets.py."""

import re

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.verify import QUANTITIES, verify  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.oracle import (  # noqa: E402
    reference_nets as ref,
    torch_probe,  # noqa: F401  (torch_probe: torch on one thread)
)

GRAPHS = {  # spec -> the reference module's constructor
    "resnet18.toml": ref.resnet18,
    "resnet50.toml": ref.resnet50,
    "mobilenet_v2.toml": ref.mobilenet_v2,
    "densenet121.toml": ref.densenet121,
    "unet.toml": ref.unet,
    "vgg16_bn.toml": ref.vgg16_bn,
}
PUBLISHED = {"resnet18.toml": "resnet18", "resnet50.toml": "resnet50", "mobilenet_v2.toml": "mobilenet_v2",
             "densenet121.toml": "densenet121", "vgg16_bn.toml": "vgg16_bn"}


def report_at(name: str, size: int | None = None, **values):
    """The spec's report, at a smaller square input where `size` is given (the spec's own text, input changed)."""
    text = (SPECS / name).read_text()
    if size is not None:
        text, count = re.subn(r"(?m)^input = \[3, 224, 224\]$", f"input = [3, {size}, {size}]", text)
        if count == 0:  # the input's sides are the spec's variables (VGG)
            assert re.search(r'(?m)^input = \[3, "H", "W"\]$', text)
            values = {"H": size, "W": size} | values
    return archcalc.analyze(archcalc.loads(text, str(SPECS / name)), **values)


def randomized(net):
    """The reference with random batchnorm parameters and statistics (the weights are random already), so a
    load that mixes tensors up shows in the outputs."""
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point() and tensor.dim() == 1:
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return net.eval()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_the_spec_loads_the_reference_weights_strictly_and_computes_the_same(name):
    reference = randomized(GRAPHS[name]())
    built = archcalc.torch.build(report_at(name, 32)).eval()
    assert list(built.state_dict()) == list(reference.state_dict())  # the same keys, in the same order
    built.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, expected = built(x), reference(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_spec_has_torchvisions_published_totals(name):
    report = report_at(name)
    assert (report.totals["params"], report.totals["flops"]) == ref.PUBLISHED[PUBLISHED[name]]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_layer_has_the_reference_modules_shape_parameters_and_flops_at_224(name):
    report = report_at(name)
    with torch.device("meta"):  # shapes, parameters and FLOPs: no memory, no compute
        reference = GRAPHS[name]().eval()
        x = torch.zeros(1, *report.input)
    modules = dict(reference.named_modules())
    outputs = {}
    for path, module in modules.items():
        module.register_forward_hook(lambda m, args, out, path=path: outputs.update({path: tuple(out.shape[1:])}))
    with FlopCounterMode(display=False) as counter:
        final = reference(x)
    root = type(reference).__name__
    flops = {name.removeprefix(root + "."): sum(per_op.values()) for name, per_op in counter.get_flop_counts().items()}
    for row in report.rows:
        if row.params:  # every layer with weights is a module of the reference, at the same path
            assert row.name in modules, row.name
        if row.name in modules:
            assert tuple(row.output) == outputs[row.name], row.name
            assert row.params == sum(p.numel() for p in modules[row.name].parameters()), row.name
            assert row.flops == flops.get(row.name, 0), row.name
    for use in report.uses:  # a block's output is the reference module's (DenseNet's layer returns only its new maps)
        if use.path in modules and "denselayer" not in use.path:
            assert tuple(report.rows[use.stop - 1].output) == outputs[use.path], use.path
    assert tuple(report.output) == tuple(final.shape[1:])
    assert report.totals["params"] == sum(p.numel() for p in reference.parameters())


def test_the_unet_spec_counts_the_reference_flops():
    report = report_at("unet.toml")
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        ref.unet()(torch.zeros(1, *report.input))
    assert report.totals["flops"] == counter.get_total_flops()


@pytest.mark.parametrize("name", ["resnet18.toml", "mobilenet_v2.toml"])
def test_verify_agrees_with_torch_on_every_number_of_every_layer(name):
    report = report_at(name, 32)
    checks = verify(report)
    assert len(checks) == len(report.rows) * len(QUANTITIES)
    assert [c for c in checks if not c.ok] == []


def test_symbolic_resnet18_is_resnet18_at_every_size():
    symbolic = report_at("resnet18_symbolic.toml")
    assert symbolic.totals["params"] == ref.PUBLISHED["resnet18"][0]
    at224 = report_at("resnet18_symbolic.toml", H=224, W=224)
    assert at224.totals["flops"] == ref.PUBLISHED["resnet18"][1]
    built = archcalc.torch.build(report_at("resnet18_symbolic.toml", H=96, W=80))
    built.load_state_dict(ref.resnet18().state_dict(), strict=True)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_export_writes_one_class_per_block_that_round_trips(name, tmp_path):
    from tests.backends.test_torch_export import round_trip

    report = report_at(name, 32)
    text = round_trip(report, tmp_path)  # the same state_dict keys and shapes as build(), its weights, the same outputs
    blocks = {use.block for use in report.uses}
    assert len(re.findall(r"^class \w+\(nn\.Module\):", text, re.M)) == len(blocks) + 1 + ("class Namespace" in text)
