"""FLOPs and bytes kept for backward, against torch: FlopCounterMode and saved_tensors_hooks on CPU.

Hypothesis draws a network's hyperparameters once and turns them into both a spec and a torch
module built here, independently of archcalc's own `to_torch`; the two must agree to the FLOP
and to the byte, at several batch sizes and dtypes.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.analysis.engine import names  # noqa: E402
from archcalc.backends.modules import NN  # noqa: E402
from tests.conftest import (  # noqa: E402
    ROOT,
    SEQUENCE_STACKS,
)
from tests.oracle.torch_nets import toml_value  # noqa: E402
from tests.oracle.torch_probe import ACTIVATIONS, flops, saved_bytes, torch_counts  # noqa: E402

SPECS = sorted(ROOT.glob("specs/*.toml"))
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class Net:
    """A drawn network, as spec text and as a torch module built side by side."""

    def __init__(self, shape):
        self.shape = list(shape)
        self.modules: list[nn.Module] = []
        self.tables: list[dict] = []

    def fits(self, module) -> bool:
        try:
            with torch.no_grad():
                out = module(torch.zeros(2, *self.shape))
        except RuntimeError:
            return False
        return out.numel() > 0

    def add(self, table: dict, *modules) -> None:
        with torch.no_grad():
            out = nn.Sequential(*modules)(torch.zeros(2, *self.shape))
        self.shape = list(out.shape[1:])
        self.tables.append(table)
        self.modules.extend(modules)

    def spec(self) -> str:
        lines = ["[model]", f"input = {toml_value(self.input)}"]
        for table in self.tables:
            lines.append("[[layers]]")
            lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        return "\n".join(lines) + "\n"


@st.composite
def networks(draw):
    dims = draw(st.sampled_from([1, 2, 2, 3]))
    channels = draw(st.integers(1, 4))
    size = draw(st.tuples(*[st.integers(6, 16 if dims < 3 else 8)] * dims))
    net = Net((channels, *size))
    net.input = [channels, *size]
    net.dims = dims
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "batchnorm", "activation", "dropout", "upsample"]))
        c = net.shape[0]
        if kind == "conv":
            groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
            out = groups * draw(st.integers(1, 3))
            k = draw(st.tuples(*[st.integers(1, 4)] * dims))
            s = draw(st.integers(1, 2))
            p = draw(st.integers(0, 2))
            d = draw(st.integers(1, 2))
            bias = draw(st.booleans())
            module = getattr(nn, f"Conv{dims}d")(c, out, k, s, p, dilation=d, groups=groups, bias=bias)
            if not net.fits(module):
                continue
            table = dict(type="conv", out_channels=out, kernel_size=list(k), stride=s, padding=p, dilation=d,
                         groups=groups, bias=bias)
            activation = draw(st.none() | st.sampled_from(sorted(ACTIVATIONS)))
            if activation:
                table["activation"] = activation
            net.add(table, module, *([ACTIVATIONS[activation]()] if activation else []))
        elif kind == "pool":
            op = draw(st.sampled_from(["max", "avg"]))
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, 3))
            p = draw(st.integers(0, k // 2))
            ceil = draw(st.booleans())
            module = getattr(nn, f"{'Max' if op == 'max' else 'Avg'}Pool{dims}d")(k, s, p, ceil_mode=ceil)
            if net.fits(module):
                net.add(dict(type="pool", op=op, kernel_size=k, stride=s, padding=p, ceil_mode=ceil), module)
        elif kind == "batchnorm":
            affine = draw(st.booleans())
            net.add(dict(type="batchnorm", affine=affine), getattr(nn, f"BatchNorm{dims}d")(c, affine=affine))
        elif kind == "activation":
            function = draw(st.sampled_from(sorted(ACTIVATIONS)))
            net.add(dict(type="activation", function=function), ACTIVATIONS[function]())
        elif kind == "upsample":
            if max(net.shape[1:]) <= 16:
                net.add(dict(type="upsample", scale_factor=2), nn.Upsample(scale_factor=2.0))
        else:
            p = draw(st.sampled_from([0.0, 0.25, 0.5]))
            net.add(dict(type="dropout", p=p), nn.Dropout(p))
    if draw(st.booleans()):  # a reshape that swaps the channels and the first spatial axis
        shape = [net.shape[1], net.shape[0], *net.shape[2:]]
        net.add(dict(type="reshape", shape=shape), _Reshape(shape))
    net.add(dict(type="flatten"), nn.Flatten())
    for _ in range(draw(st.integers(1, 2))):
        out = draw(st.integers(1, 8))
        bias = draw(st.booleans())
        table = dict(type="dense", out_features=out, bias=bias)
        modules = [nn.Linear(net.shape[0], out, bias=bias)]
        if draw(st.booleans()):
            table["activation"] = "relu"
            modules.append(nn.ReLU())
        net.add(table, *modules)
        if draw(st.booleans()):
            p = draw(st.sampled_from([0.0, 0.5]))
            net.add(dict(type="dropout", p=p), nn.Dropout(p))
    return net


def measured(model: nn.Module, shape, batch: int, dtype: str, ids: int | None = None) -> dict[str, int]:
    """torch's numbers; `ids`: the input is token ids below it (an embedding reads it), not values."""
    model = model.to(DTYPES[dtype])
    x = torch.zeros(batch, *shape, dtype=DTYPES[dtype]) if ids is None else torch.randint(0, ids, (batch, *shape))
    return {
        "flops": flops(model, x),
        "training_flops": flops(model, x, backward=True),
        "saved": saved_bytes(model, x),
        "params": sum(p.numel() * p.element_size() for p in model.parameters()),
        "buffers": sum(b.numel() * b.element_size() for b in model.buffers()),
    }


def predicted(report) -> dict[str, int]:
    b = report.batch
    return {
        "flops": torch_counts(report, "flops") * b,  # as FlopCounterMode counts fused attention on the CPU: 0
        "training_flops": torch_counts(report, "training_flops") * b,
        "saved": report.memory.saved.at(b),
        "params": report.memory.params.at(b),
        "buffers": report.memory.buffers.at(b),
    }


class _Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(2, 3), dtype=st.sampled_from(sorted(DTYPES)))
def test_drawn_networks_match_torch(net, batch, dtype):
    if dtype == "bfloat16" and net.dims == 3 and any(isinstance(m, nn.AvgPool3d) for m in net.modules):
        dtype = "float32"  # torch has no bfloat16 avg_pool3d on the CPU
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, dtype=dtype)
    assert [tuple(row.output) for row in report.rows][-1] == tuple(net.shape)
    model = nn.Sequential(*net.modules)
    assert predicted(report) == measured(model, net.input, batch, dtype), net.spec()


STACKS = [path for path in SPECS if "[blocks." not in path.read_text() and path.name not in SEQUENCE_STACKS]
GRAPHS = [path for path in SPECS if path not in STACKS and path.name not in SEQUENCE_STACKS]


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shipped_specs_match_torch(path, dtype):
    spec = archcalc.load(path)
    values = {k: v for k, v in {"H": 67, "W": 67, "classes": 10}.items() if k in names(spec)}
    report = archcalc.analyze(spec, batch=2, dtype=dtype, **values)
    model = archcalc.torch.build(report).float()  # graphs too: the modules run in the report's order
    assert predicted(report) == measured(model, report.input, 2, dtype)


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.stem)
def test_shipped_graphs_match_torch(path):
    """ResNet, MobileNetV2, DenseNet, U-Net: every skip, concat and shared tensor, to the byte (built by the backend)."""
    import archcalc.torch

    values = {"H": 67, "W": 67} if "symbolic" in path.stem else SMALL.get(path.stem, {})
    report = archcalc.analyze(archcalc.load(path), batch=2, **values)
    ids = next((row.layer.token_ids for row in report.rows if row.layer.token_ids is not None), None)
    assert predicted(report) == measured(archcalc.torch.build(report), report.input, 2, "float32", ids)


SMALL = {  # the transformers with small dimensions (their [vars]), so that the whole step takes a fraction of a second
    "gpt2": dict(T=8, vocab=97, n_ctx=16, d=32, heads=4, n_layer=2, pdrop=0),  # no fused CPU kernel takes dropout
    "vit_b_16": dict(H=32, W=32, d=32, heads=4, mlp=64, n_layer=2),
}


def _modules(row):
    yield row.layer.to_torch(row.input, NN)
    activation = getattr(row.layer, "activation", None)
    if activation:
        yield ACTIVATIONS[activation]()


def test_saved_bytes_scale_with_the_batch_and_bn_statistics_do_not():
    spec = archcalc.loads(
        '[model]\ninput = [3, 8, 8]\n[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 3\n'
        '[[layers]]\ntype = "batchnorm"\nactivation = "relu"\n'
    )
    per_batch = archcalc.analyze(spec).memory.saved
    assert per_batch.fixed == 2 * 4 * 4  # batch mean and 1/std, per channel, float32
    assert per_batch.per_sample == (3 * 8 * 8 + 4 * 6 * 6 + 4 * 6 * 6) * 4  # input, conv output, relu output
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    for batch in (1, 2, 5):
        assert saved_bytes(model, torch.zeros(batch, 3, 8, 8)) == per_batch.at(batch)


def test_cuda_dropout_masks_take_one_byte():
    spec = archcalc.loads('[model]\ninput = [10]\n[[layers]]\ntype = "dense"\nout_features = 6\n'
                          '[[layers]]\ntype = "dropout"\np = 0.5\n[[layers]]\ntype = "dense"\nout_features = 2\n')
    cpu = archcalc.analyze(spec, batch=4).memory.saved.at(4)
    cuda = archcalc.analyze(spec, batch=4, device="cuda").memory.saved.at(4)
    assert cpu - cuda == 4 * 6 * (4 - 1)  # a float32 mask on CPU, a bool mask (native_dropout) on CUDA


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.integers(2, 4), per_group=st.integers(1, 3), out_per_group=st.integers(1, 3), k=st.integers(1, 3),
       size=st.integers(3, 8), grad=st.booleans())
def test_a_grouped_conv_counts_its_real_work_once(groups, per_group, out_per_group, k, size, grad):
    """A grouped conv is `groups` independent convs on slices of the channels: FlopCounterMode counts those
    right, and archcalc's training FLOPs equal theirs (the grouped conv itself, torch counts groups times too much)."""
    c, out = groups * per_group, groups * out_per_group
    layers = '[[layers]]\ntype = "batchnorm"\n' if grad else ""  # parameters before: the conv's input needs a gradient
    report = archcalc.analyze(archcalc.loads(
        f'[model]\ninput = [{c}, {size}, {size}]\n{layers}[[layers]]\ntype = "conv"\nout_channels = {out}\n'
        f'kernel_size = {k}\ngroups = {groups}\n'), batch=2)
    x = torch.randn(2, c, size, size, requires_grad=grad)
    slices = [nn.Conv2d(per_group, out_per_group, k) for _ in range(groups)]
    with FlopCounterMode(display=False) as counter:
        y = torch.cat([conv(part) for conv, part in zip(slices, x.split(per_group, dim=1))], dim=1)
        y.sum().backward()
    assert report.totals["training_flops"] * 2 == counter.get_total_flops()
    grouped = nn.Conv2d(c, out, k, groups=groups)
    assert flops(grouped, x.detach().requires_grad_(grad), backward=True) == torch_counts(report, "training_flops") * 2
