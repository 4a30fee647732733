"""PyTorch as the oracle for shapes, parameters and FLOPs, layer by layer.

Hypothesis draws each layer's hyperparameters once and writes them twice: as a spec's
[[layers]] table, and as a torch.nn module built here, from the drawn values, without
archcalc's `to_torch`. Torch runs a real forward pass on zeros (which also tells which
drawn layers are valid: a layer torch refuses is not added), and every row of archcalc's
report must give the same output shape, weights (`.weight.numel()`), biases
(`.bias.numel()`) and forward FLOPs (FlopCounterMode) as the module of its layer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archcalc  # noqa: E402
from archcalc import SpecError  # noqa: E402
from archcalc.backends.modules import NN  # noqa: E402
from archcalc.core import num  # noqa: E402
from tests.conftest import (  # noqa: E402
    ROOT,
    SEQUENCE_STACKS,
)
from tests.oracle.torch_nets import toml_value  # noqa: E402
from tests.oracle.torch_probe import ACTIVATIONS, Permute  # noqa: E402

SPECS = sorted(ROOT.glob("specs/*.toml"))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
MAX_VALUES = 6000  # per sample: keeps each forward pass (and the suite) fast

UPSAMPLE_MODES = {1: ["nearest", "linear"], 2: ["nearest", "bilinear", "bicubic"], 3: ["nearest", "trilinear"]}


class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


@dataclass
class Measured:
    input: tuple
    output: tuple
    weights: int
    biases: int
    flops: int


def measure(module: nn.Module, shape) -> Measured:
    """A forward pass of one sample of `shape` through `module`: its output shape, parameters and FLOPs."""
    module.eval()  # batchnorm on a batch of one
    with torch.no_grad(), FlopCounterMode(display=False) as counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "same" padding with an even kernel makes a padded copy: fine
        out = module(torch.zeros(1, *shape))
    # .weight and .bias, and an LSTM's weight_ih_l0, bias_hh_l0_reverse, ...
    tensors = lambda name: [p for path, p in module.named_parameters() if path.rsplit(".", 1)[-1].startswith(name)]
    return Measured(
        tuple(shape), tuple(out.shape[1:]),
        sum(t.numel() for t in tensors("weight")), sum(t.numel() for t in tensors("bias")),
        counter.get_total_flops(),
    )


@dataclass
class Net:
    """A drawn network, as spec tables and as the torch module of each layer, side by side."""

    input: list
    shape: tuple = ()
    tables: list[dict] = field(default_factory=list)
    layers: list[Measured] = field(default_factory=list)

    def __post_init__(self):
        self.shape = tuple(self.input)

    def add(self, table: dict, build) -> bool:
        """Add the layer if torch accepts it (and its output stays small); `build` makes its module."""
        try:
            measured = measure(build(), self.shape)
        except (RuntimeError, ValueError):  # torch refuses: a kernel larger than the input, and so on
            return False
        if not 0 < math.prod(measured.output) <= MAX_VALUES:
            return False
        self.tables.append(table)
        self.layers.append(measured)
        self.shape = measured.output
        return True

    def spec(self, input=None) -> str:
        lines = ["[model]", f"input = {toml_value(input or self.input)}"]
        for table in self.tables:
            lines += ["[[layers]]", *(f"{key} = {toml_value(value)}" for key, value in table.items())]
        return "\n".join(lines) + "\n"


def per_axis(draw, n: int, low: int, high: int):
    """One value for every axis (an int in the spec) or one per axis (a list): (spec value, torch value)."""
    if n > 1 and draw(st.booleans()):
        values = draw(st.lists(st.integers(low, high), min_size=n, max_size=n))
        return values, tuple(values)
    value = draw(st.integers(low, high))
    return value, value


def with_activation(draw, table: dict, module):
    activation = draw(st.none() | st.sampled_from(sorted(ACTIVATIONS)))
    if activation is None:
        return table, module
    return table | {"activation": activation}, lambda: nn.Sequential(module(), ACTIVATIONS[activation]())


def conv(draw, shape):
    c, n = shape[0], len(shape) - 1
    groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if c % g == 0]))
    out = groups * draw(st.integers(1, 3))
    kernel, k = per_axis(draw, n, 1, 5)
    stride, s = per_axis(draw, n, 1, 3)
    dilation, d = per_axis(draw, n, 1, 3)
    padding_kinds = ["int", "list", "valid"] + (["same"] if stride in (1, [1] * n) else [])
    match draw(st.sampled_from(padding_kinds)):
        case "int":
            padding = p = draw(st.integers(0, 3))
        case "list":
            padding = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
            p = tuple(padding)
        case word:
            padding = p = word
    bias = draw(st.booleans())
    table = dict(type="conv", out_channels=out, kernel_size=kernel, stride=stride, padding=padding,
                 dilation=dilation, groups=groups, bias=bias)
    Conv = getattr(nn, f"Conv{n}d")
    return with_activation(draw, table, lambda: Conv(c, out, k, s, p, d, groups=groups, bias=bias))


def pool(draw, shape):
    n = len(shape) - 1
    op = draw(st.sampled_from(["max", "avg"]))
    kernel, k = per_axis(draw, n, 1, 4)
    halves = [kk // 2 for kk in (k if isinstance(k, tuple) else (k,) * n)]
    if len(set(halves)) == 1 and draw(st.booleans()):
        padding = p = draw(st.integers(0, halves[0]))  # PyTorch's rule: at most half the kernel
    else:
        padding = [draw(st.integers(0, h)) for h in halves]
        p = tuple(padding)
    table = dict(type="pool", op=op, kernel_size=kernel)
    stride = s = None
    if draw(st.booleans()):
        stride, s = per_axis(draw, n, 1, 3)
        table["stride"] = stride
    ceil = draw(st.booleans())
    table |= dict(padding=padding, ceil_mode=ceil)
    if op == "max":
        dilation, d = per_axis(draw, n, 1, 2)
        table["dilation"] = dilation
        return table, lambda: getattr(nn, f"MaxPool{n}d")(k, s, p, d, ceil_mode=ceil)
    return table, lambda: getattr(nn, f"AvgPool{n}d")(k, s, p, ceil_mode=ceil)


def upsample(draw, shape, exact: bool = False):
    n = len(shape) - 1
    mode = draw(st.sampled_from(UPSAMPLE_MODES[n]))
    table = dict(type="upsample", mode=mode)
    if draw(st.booleans()):
        size = draw(st.lists(st.integers(1, 12), min_size=1, max_size=1) | st.lists(st.integers(1, 12), min_size=n, max_size=n))
        return table | {"size": size}, lambda: nn.Upsample(size=tuple(size) if len(size) > 1 else size[0], mode=mode)
    # factors whose products PyTorch rounds in floating point (0.7, 1.3): archcalc must round the same way;
    # `exact` keeps to binary fractions, for formulas that must agree with floating point after substitution
    factors = st.sampled_from([0.5, 1, 1.5, 2, 2.5, 3, 0.75] if exact else [0.5, 0.7, 1, 1.3, 1.5, 2, 2.5, 3, 0.29])
    if n > 1 and draw(st.booleans()):
        factor = draw(st.lists(factors, min_size=n, max_size=n))
        return table | {"scale_factor": factor}, lambda: nn.Upsample(scale_factor=tuple(map(float, factor)), mode=mode)
    factor = draw(factors)
    return table | {"scale_factor": factor}, lambda: nn.Upsample(scale_factor=float(factor), mode=mode)


def batchnorm(draw, shape):
    affine = draw(st.booleans())
    norm = getattr(nn, f"BatchNorm{max(len(shape) - 1, 1)}d")
    return with_activation(draw, dict(type="batchnorm", affine=affine), lambda: norm(shape[0], affine=affine))


def activation(draw, shape):
    function = draw(st.sampled_from(sorted(ACTIVATIONS)))
    return dict(type="activation", function=function), ACTIVATIONS[function]


def dropout(draw, shape):
    p = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    return dict(type="dropout", p=p), lambda: nn.Dropout(p)


def flatten(draw, shape):
    return dict(type="flatten"), nn.Flatten


def reshape(draw, shape):
    total = math.prod(shape)
    divisors = [a for a in range(2, min(total, 64) + 1) if total % a == 0]
    choices = [[total], [-1], [shape[0], -1]] + [[a, total // a] for a in divisors] + [[a, -1, 1] for a in divisors]
    target = draw(st.sampled_from(choices))
    inferred = [total // -math.prod(target) if t == -1 else t for t in target]
    return dict(type="reshape", shape=target), lambda: Reshape(inferred)


def dense(draw, shape):
    out, bias = draw(st.integers(1, 16)), draw(st.booleans())
    return with_activation(draw, dict(type="dense", out_features=out, bias=bias), lambda: nn.Linear(shape[0], out, bias=bias))


def conv_transpose(draw, shape):
    c, n = shape[0], len(shape) - 1
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
    out = groups * draw(st.integers(1, 3))
    kernel, k = per_axis(draw, n, 1, 4)
    stride, s = per_axis(draw, n, 1, 3)
    padding, p = per_axis(draw, n, 0, 2)
    output_padding = op = draw(st.integers(0, 1))
    bias = draw(st.booleans())
    table = dict(type="conv_transpose", out_channels=out, kernel_size=kernel, stride=stride, padding=padding,
                 output_padding=output_padding, groups=groups, bias=bias)
    return with_activation(draw, table, lambda: getattr(nn, f"ConvTranspose{n}d")(c, out, k, s, p, op, groups, bias))


def layernorm(draw, shape):
    count = draw(st.integers(1, len(shape)))
    affine = draw(st.booleans())
    normalized = list(shape[len(shape) - count:])
    return dict(type="layernorm", normalized_shape=normalized, elementwise_affine=affine), lambda: nn.LayerNorm(
        normalized, elementwise_affine=affine)


def rmsnorm(draw, shape):
    affine = draw(st.booleans())
    return dict(type="rmsnorm", elementwise_affine=affine), lambda: nn.RMSNorm(shape[-1], elementwise_affine=affine)


def groupnorm(draw, shape):
    groups = draw(st.sampled_from([g for g in range(1, shape[0] + 1) if shape[0] % g == 0]))
    return dict(type="groupnorm", num_groups=groups), lambda: nn.GroupNorm(groups, shape[0])


def instancenorm(draw, shape):
    affine = draw(st.booleans())
    norm = getattr(nn, f"InstanceNorm{len(shape) - 1}d")
    return dict(type="instancenorm", affine=affine), lambda: norm(shape[0], affine=affine)


def lrn(draw, shape):
    size = draw(st.integers(1, 5))
    return dict(type="lrn", size=size), lambda: nn.LocalResponseNorm(size)


def permute(draw, shape):
    dims = [0, *draw(st.permutations(range(1, len(shape) + 1)))]
    return dict(type="permute", dims=[d - 1 for d in dims[1:]]), lambda: Permute(dims)


def prelu(draw, shape):
    count = draw(st.sampled_from([1, shape[0]]))
    return dict(type="prelu", num_parameters=count), lambda: nn.PReLU(count)


class NativeRNN(nn.Module):
    """An LSTM or GRU's output sequence, run without oneDNN (with it, FlopCounterMode counts no LSTM FLOPs)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # oneDNN's flags warn about TF32 on Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False):
                return self.rnn(x)[0]


def recurrent(kind):
    def draw_layer(draw, shape):
        hidden, layers, bidirectional = draw(st.integers(1, 8)), draw(st.integers(1, 2)), draw(st.booleans())
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        table = dict(type=kind, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional)
        return table, lambda: NativeRNN(cls(shape[-1], hidden, layers, batch_first=True, bidirectional=bidirectional))
    draw_layer.__name__ = kind
    return draw_layer


lstm, gru = recurrent("lstm"), recurrent("gru")


def adaptive_pool(draw, shape):
    n = len(shape) - 1
    op = draw(st.sampled_from(["max", "avg"]))
    size, o = per_axis(draw, n, 1, 7)  # larger than the input too: windows then overlap
    return dict(type="adaptive_pool", op=op, output_size=size), lambda: getattr(nn, f"Adaptive{op.title()}Pool{n}d")(o)


SPATIAL = [conv, conv, conv, pool, pool, upsample, batchnorm, activation, dropout, reshape, adaptive_pool,
           conv_transpose, layernorm, rmsnorm, groupnorm, instancenorm, lrn, prelu, permute, lstm, gru]
FLAT = [dense, dense, batchnorm, activation, dropout, reshape, flatten, layernorm, rmsnorm, groupnorm, prelu]
SIZES = {1: (4, 40), 2: (4, 20), 3: (3, 9)}


@st.composite
def networks(draw, dims=(1, 2, 3), exact: bool = False):
    n = draw(st.sampled_from(dims))
    low, high = SIZES[n]
    net = Net([draw(st.integers(1, 6)), *(draw(st.integers(low, high)) for _ in range(n))])
    for _ in range(draw(st.integers(1, 6))):
        kinds = SPATIAL if 2 <= len(net.shape) <= 4 else FLAT
        kind = draw(st.sampled_from(kinds))
        net.add(*(upsample(draw, net.shape, exact) if kind is upsample else kind(draw, net.shape)))
    if draw(st.booleans()):  # a classifier head
        net.add(*flatten(draw, net.shape))
        net.add(*dense(draw, net.shape))
    if not net.layers:
        net.add(*flatten(draw, net.shape))
    return net


def rows_match(report, net: Net) -> None:
    assert len(report.rows) == len(net.layers)
    for row, torch_says in zip(report.rows, net.layers):
        ours = Measured(row.input, row.output, row.weights, row.biases, row.flops)
        assert ours == torch_says, f"{row.name}:\n{net.spec()}"
        assert row.macs * 2 == row.flops


@settings(max_examples=120, **SETTINGS)
@given(net=networks())
def test_drawn_networks_match_torch_layer_by_layer(net):
    rows_match(archcalc.analyze(archcalc.loads(net.spec())), net)


@settings(max_examples=40, **SETTINGS)
@given(net=networks(dims=(2,), exact=True), data=st.data())
def test_symbolic_shapes_substituted_match_concrete_and_torch(net, data):
    c, h, w = net.input
    symbolic = archcalc.analyze(archcalc.loads(net.spec(input=[c, "H", "W"])))
    given_values = archcalc.analyze(archcalc.loads(net.spec(input=[c, "H", "W"])), H=h, W=w)
    concrete = archcalc.analyze(archcalc.loads(net.spec()))
    rows_match(concrete, net)
    values = {"H": h, "W": w}
    for formula, given_row, row in zip(symbolic.rows, given_values.rows, concrete.rows):
        for quantity in ("output", "weights", "biases", "macs"):
            expected = getattr(row, quantity)
            got = getattr(formula, quantity)
            substituted = tuple(num.subs(d, values) for d in got) if quantity == "output" else num.subs(got, values)
            assert substituted == expected == getattr(given_row, quantity), f"{row.name}.{quantity}: {got}"
    assert {k: num.subs(v, values) for k, v in symbolic.totals.items()} == concrete.totals


# A single conv, pool or upsample layer, drawn with no regard for validity: archcalc must refuse
# exactly what torch refuses, and agree with it on everything else.
@st.composite
def single_layers(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    shape = (draw(st.integers(1, 4)), *(draw(st.integers(1, 9)) for _ in range(n)))
    kind = draw(st.sampled_from(["conv", "pool", "upsample"]))
    if kind == "conv":
        groups, out = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        k, s, p, d = (draw(st.integers(lo, hi)) for lo, hi in ((1, 9), (1, 4), (0, 4), (1, 3)))
        padding = draw(st.sampled_from([p, "same", "valid"]))
        table = dict(type="conv", out_channels=out, kernel_size=k, stride=s, padding=padding, dilation=d, groups=groups)
        build = lambda: getattr(nn, f"Conv{n}d")(shape[0], out, k, s, padding, d, groups=groups)
    elif kind == "pool":
        op, ceil = draw(st.sampled_from(["max", "avg"])), draw(st.booleans())
        k, s, p, d = (draw(st.integers(lo, hi)) for lo, hi in ((1, 9), (1, 4), (0, 4), (1, 3)))
        table = dict(type="pool", op=op, kernel_size=k, stride=s, padding=p, ceil_mode=ceil)
        if op == "max":
            table["dilation"] = d
            build = lambda: getattr(nn, f"MaxPool{n}d")(k, s, p, d, ceil_mode=ceil)
        else:
            build = lambda: getattr(nn, f"AvgPool{n}d")(k, s, p, ceil_mode=ceil)
    else:
        factor = draw(st.sampled_from([0.1, 0.2, 0.25, 0.5, 1.5, 2]))
        table = dict(type="upsample", scale_factor=factor)
        build = lambda: nn.Upsample(scale_factor=factor)
    return shape, table, build


@settings(max_examples=300, **SETTINGS)
@given(case=single_layers())
def test_archcalc_refuses_exactly_what_torch_refuses(case):
    shape, table, build = case
    spec = Net(list(shape), tables=[table]).spec()
    try:
        torch_says = measure(build(), shape)
    except (RuntimeError, ValueError):
        torch_says = None
    if torch_says and math.prod(torch_says.output) == 0:
        torch_says = None  # nearest upsampling to an empty axis "works" in torch; a network with no values does not
    try:
        row = archcalc.analyze(archcalc.loads(spec)).rows[0]
    except SpecError as error:
        assert torch_says is None, f"archcalc refuses what torch accepts: {error}\n{spec}"
        return
    assert torch_says is not None, f"torch refuses what archcalc accepts:\n{spec}"
    assert Measured(row.input, row.output, row.weights, row.biases, row.flops) == torch_says, spec


# Cases the drawing found or that PyTorch's source singles out, pinned: (input, layer table, torch output)
PINNED = [
    ((3, 2, 2), dict(type="pool", kernel_size=3, stride=2, ceil_mode=True), (3, 1, 1)),  # the window overhangs
    ((1, 5), dict(type="pool", kernel_size=2, stride=2, ceil_mode=True), (1, 3)),  # a last partial window
    ((1, 4), dict(type="pool", kernel_size=2, stride=2, padding=1, ceil_mode=True), (1, 3)),  # it would start in the padding
    ((1, 100), dict(type="upsample", scale_factor=0.29), (1, 28)),  # 100·0.29 = 28.999999999999996 in doubles
    ((2, 7, 7), dict(type="conv", out_channels=2, kernel_size=[2, 4], padding="same", dilation=[3, 1]), (2, 7, 7)),
]


@pytest.mark.parametrize("shape, table, output", PINNED, ids=[str(c[1]) for c in PINNED])
def test_pinned_shapes(shape, table, output):
    spec = Net(list(shape), tables=[table]).spec()
    assert archcalc.analyze(archcalc.loads(spec)).rows[0].output == output


def torch_modules(row):
    yield row.layer.to_torch(row.input, NN)
    if getattr(row.layer, "activation", None):
        yield ACTIVATIONS[row.layer.activation]()


STACKS = [path for path in SPECS if "[blocks." not in path.read_text() and path.name not in SEQUENCE_STACKS]  # graphs: test_graph_specs.py
SHIPPED = [(path, {}) for path in STACKS if "symbolic" not in path.stem] + [
    (path, values) for path in STACKS if "symbolic" in path.stem
    for values in ({"H": 224, "W": 224, "classes": 1000}, {"H": 67, "W": 99, "classes": 10})
]


@pytest.mark.parametrize("path, values", SHIPPED, ids=[f"{p.stem}{v or ''}" for p, v in SHIPPED])
def test_shipped_specs_match_torch(path, values):
    report = archcalc.analyze(archcalc.load(path), **values)
    total = 0
    for row in report.rows:
        module = nn.Sequential(*torch_modules(row))
        got = measure(module, row.input)
        assert (row.output, row.weights, row.biases, row.flops) == (got.output, got.weights, got.biases, got.flops), row.name
        total += sum(p.numel() for p in module.parameters())
    assert report.totals["params"] == total


def test_every_layer_kind_is_drawn():
    from tests.analysis.test_graph_oracle import MERGES  # the layers that read several tensors are drawn in graphs
    from tests.layers.test_import_kinds_oracle import KINDS as IMPORTED
    from tests.layers.test_llama_oracle import KINDS as LLAMA
    from tests.layers.test_modern_oracle import KINDS as MODERN
    from tests.layers.test_real_kinds_oracle import KINDS as REAL

    drawn = {kind.__name__ for kind in SPATIAL + FLAT} | set(MERGES) | MODERN | REAL | LLAMA | IMPORTED
    assert drawn == set(archcalc.layers.LAYERS)
