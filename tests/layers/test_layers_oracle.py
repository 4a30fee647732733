"""The layers of issue 10 against torch, one drawn layer at a time: transposed convolution, padding
modes, the normalizations, the activations with their parameters, permute and flatten's axes,
dense per token, LSTM and GRU.

Hypothesis draws a layer's hyperparameters once and writes them twice: as a spec's [[layers]]
table, and as a torch module built here (not with archcalc's `to_torch`). The layer may follow a
1×1 convolution, so that its input needs a gradient or not. Torch then gives the shape, the
parameters, FlopCounterMode's forward and training FLOPs, the bytes saved_tensors_hooks sees kept
(float32 and bfloat16) and the buffers; archcalc must give the same numbers.
"""

from __future__ import annotations

import math
import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)

import archcalc  # noqa: E402
from archcalc import SpecError  # noqa: E402
from tests.oracle.torch_nets import toml_value  # noqa: E402
from tests.oracle.torch_probe import Permute, flops, saved_bytes, torch_counts  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def spec(shape, tables) -> str:
    lines = ["[model]", f"input = {toml_value(list(shape))}"]
    for table in tables:
        lines += ["[[layers]]", *(f"{key} = {toml_value(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"


def spatial_shape(draw, dims=(1, 2, 3), low=1, channels=(1, 6)):
    n = draw(st.sampled_from(dims))
    high = {1: 12, 2: 8, 3: 5}[n]
    return (draw(st.integers(*channels)), *(draw(st.integers(low, high)) for _ in range(n)))


def per_axis(draw, n, low, high):
    """(spec value, torch value): one int for every axis, or a list of one per axis."""
    if n > 1 and draw(st.booleans()):
        values = draw(st.lists(st.integers(low, high), min_size=n, max_size=n))
        return values, tuple(values)
    value = draw(st.integers(low, high))
    return value, value


# Each builder draws (input shape, spec table, torch module factory) -------------------------------

def conv_transpose(draw):
    shape = spatial_shape(draw)
    c, n = shape[0], len(shape) - 1
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
    out = groups * draw(st.integers(1, 3))
    kernel, k = per_axis(draw, n, 1, 4)
    stride, s = per_axis(draw, n, 1, 3)
    padding, p = per_axis(draw, n, 0, 2)
    dilation, d = per_axis(draw, n, 1, 2)
    output_padding, op = per_axis(draw, n, 0, 2)
    bias = draw(st.booleans())
    table = dict(type="conv_transpose", out_channels=out, kernel_size=kernel, stride=stride, padding=padding,
                 output_padding=output_padding, dilation=dilation, groups=groups, bias=bias)
    return shape, table, lambda: getattr(nn, f"ConvTranspose{n}d")(c, out, k, s, p, op, groups, bias, d)


def padded_conv(draw):
    shape = spatial_shape(draw)
    c, n = shape[0], len(shape) - 1
    mode = draw(st.sampled_from(["reflect", "replicate", "circular", "zeros"]))
    kernel, k = per_axis(draw, n, 1, 3)
    dilation, d = per_axis(draw, n, 1, 2)
    padding, p = per_axis(draw, n, 0, 3)
    if draw(st.integers(0, 3)) == 0:
        padding = p = "same"
    out, bias = draw(st.integers(1, 4)), draw(st.booleans())
    table = dict(type="conv", out_channels=out, kernel_size=kernel, padding=padding, dilation=dilation, bias=bias,
                 padding_mode=mode)
    return shape, table, lambda: getattr(nn, f"Conv{n}d")(c, out, k, 1, p, d, bias=bias, padding_mode=mode)


def layernorm(draw):
    shape = spatial_shape(draw, dims=(1, 2))
    count = draw(st.integers(0, len(shape)))
    affine, bias = draw(st.booleans()), draw(st.booleans())
    table = dict(type="layernorm", elementwise_affine=affine, bias=bias)
    normalized = list(shape[len(shape) - max(count, 1):])
    if count:
        table["normalized_shape"] = normalized if len(normalized) > 1 or draw(st.booleans()) else normalized[0]
    return shape, table, lambda: nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias)


def rmsnorm(draw):
    shape = spatial_shape(draw, dims=(1, 2))
    count = draw(st.integers(0, len(shape)))
    affine = draw(st.booleans())
    table = dict(type="rmsnorm", elementwise_affine=affine)
    normalized = list(shape[len(shape) - max(count, 1):])
    if count:
        table["normalized_shape"] = normalized
    if draw(st.booleans()):
        table["eps"] = 1e-6
    return shape, table, lambda: nn.RMSNorm(normalized, eps=table.get("eps"), elementwise_affine=affine)


def groupnorm(draw):
    shape = spatial_shape(draw, dims=(1, 2, 3))
    groups = draw(st.sampled_from([g for g in range(1, shape[0] + 1) if shape[0] % g == 0]))
    affine = draw(st.booleans())
    return shape, dict(type="groupnorm", num_groups=groups, affine=affine), lambda: nn.GroupNorm(groups, shape[0], affine=affine)


def instancenorm(draw):
    shape = spatial_shape(draw, low=2)
    affine, running = draw(st.booleans()), draw(st.booleans())
    table = dict(type="instancenorm", affine=affine, track_running_stats=running)
    norm = getattr(nn, f"InstanceNorm{len(shape) - 1}d")
    return shape, table, lambda: norm(shape[0], affine=affine, track_running_stats=running)


def lrn(draw):
    shape = spatial_shape(draw)
    size = draw(st.integers(1, 6))
    alpha, beta, k = draw(st.sampled_from([1e-4, 0.5])), draw(st.sampled_from([0.75, 1.0])), draw(st.sampled_from([1.0, 2.0]))
    table = dict(type="lrn", size=size, alpha=alpha, beta=beta, k=k)
    return shape, table, lambda: nn.LocalResponseNorm(size, alpha, beta, k)


def activation(draw):
    shape = spatial_shape(draw, dims=(1, 2))
    function = draw(st.sampled_from(["gelu", "leaky_relu", "elu", "softmax", "log_softmax", "hardswish", "hardsigmoid",
                                     "silu"]))
    table, options = dict(type="activation", function=function), {}
    if function == "gelu" and draw(st.booleans()):
        options["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    if function == "leaky_relu" and draw(st.booleans()):
        options["negative_slope"] = draw(st.sampled_from([0.2, -0.5, 2.0]))
    if function == "elu" and draw(st.booleans()):
        options["alpha"] = draw(st.sampled_from([0.5, 2.0]))
    if "softmax" in function and draw(st.booleans()):
        options["dim"] = draw(st.integers(-len(shape), len(shape) - 1))  # an axis of one sample
    module = {"gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "softmax": nn.Softmax, "log_softmax": nn.LogSoftmax,
              "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "silu": nn.SiLU}[function]
    torch_options = dict(options)
    if "softmax" in function:  # torch counts the batch axis: archcalc's dim 0 (its default) is torch's 1
        torch_options["dim"] = options.get("dim", 0) + 1 if options.get("dim", 0) >= 0 else options["dim"]
    return shape, table | options, lambda: module(**torch_options)


def prelu(draw):
    shape = spatial_shape(draw, dims=(1, 2))
    if draw(st.booleans()):
        shape = shape[:1]  # a flat input: its features are the channels
    count = draw(st.sampled_from([1, shape[0], shape[0] + 1]))
    init = draw(st.sampled_from([0.25, 0.1]))
    return shape, dict(type="prelu", num_parameters=count, init=init), lambda: nn.PReLU(count, init)


def recurrent(draw):
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    kind = draw(st.sampled_from(["lstm", "gru"]))
    hidden, layers = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    bidirectional, bias = draw(st.booleans()), draw(st.booleans())
    table = dict(type=kind, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional, bias=bias)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    return shape, table, lambda: Outputs(cls(shape[1], hidden, layers, bias, batch_first=True, bidirectional=bidirectional))


class Outputs(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


BUILDERS = [activation, prelu, recurrent, conv_transpose, padded_conv, layernorm, rmsnorm, groupnorm, instancenorm, lrn]


def prefix(shape):
    """A 1×1 convolution that keeps the shape: the drawn layer's input then needs a gradient."""
    if len(shape) == 1:
        return dict(type="dense", out_features=shape[0]), lambda: nn.Linear(shape[0], shape[0])
    table = dict(type="conv", out_channels=shape[0], kernel_size=1)
    return table, lambda: getattr(nn, f"Conv{len(shape) - 1}d")(shape[0], shape[0], 1)


def torch_numbers(model, shape, batch, dtype):
    model = model.to(DTYPES[dtype])
    x = torch.zeros(batch, *shape, dtype=DTYPES[dtype])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.eval()
        out = model(x)
    return {
        "output": tuple(out.shape[1:]),
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops(model, x),
        "training_flops": flops(model, x, backward=True) if any(p.requires_grad for p in model.parameters()) else 0,
        "saved": saved_bytes(model, x),
        "buffers": sum(b.numel() * b.element_size() for b in model.buffers()),
    }


def archcalc_numbers(report):
    b = report.batch
    return {
        "output": tuple(report.output),
        "params": report.totals["params"],
        "flops": report.totals["flops"] * b,
        "training_flops": torch_counts(report, "training_flops") * b,  # a grouped weight gradient: torch's count
        "saved": report.memory.saved.at(b),
        "buffers": report.memory.buffers.at(b),
    }


@st.composite
def cases(draw, builders=None):
    shape, table, build = draw(st.sampled_from(builders or [b for b in BUILDERS if b is not recurrent]))(draw)
    tables, modules = [table], [build]
    if draw(st.booleans()):
        head, module = prefix(shape)
        tables, modules = [head, table], [module, build]
    return shape, tables, modules


def check(case, batch, dtype):
    shape, tables, modules = case
    try:
        model = nn.Sequential(*(m() for m in modules))
        with torch.no_grad():
            if not model.eval()(torch.zeros(1, *shape)).numel():
                # a grouped transposed conv cropped to nothing "works" in torch; a network with no values does not
                raise ValueError("empty output")
    except (RuntimeError, ValueError, IndexError):  # torch refuses this drawing: archcalc must too
        with pytest.raises(SpecError):
            archcalc.analyze(archcalc.loads(spec(shape, tables)))
        return
    report = archcalc.analyze(archcalc.loads(spec(shape, tables)), batch=batch, dtype=dtype)
    try:
        expected = torch_numbers(model, shape, batch, dtype)
    except (NotImplementedError, RuntimeError) as error:  # no bfloat16 kernel on the CPU (avg_pool3d, ...)
        assert dtype == "bfloat16", error
        report = archcalc.analyze(archcalc.loads(spec(shape, tables)), batch=batch, dtype="float32")
        expected = torch_numbers(model, shape, batch, "float32")
    assert archcalc_numbers(report) == expected, spec(shape, tables)


@settings(max_examples=150, **SETTINGS)
@given(case=cases(), batch=st.integers(1, 3), dtype=st.sampled_from(sorted(DTYPES)))
def test_drawn_layers_match_torch(case, batch, dtype):
    check(case, batch, dtype)


# LSTM on the CPU runs through oneDNN, which FlopCounterMode does not count and whose workspace is
# opaque: archcalc's figures are those of torch's native implementation, measured with oneDNN off.
# Batches of 2 or more: with one sample, torch views the input sequence where it otherwise copies it.
@settings(max_examples=60, **SETTINGS)
@given(case=cases([recurrent]), batch=st.integers(2, 3), dtype=st.sampled_from(sorted(DTYPES)))
def test_recurrent_layers_match_torch_native(case, batch, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's flags warn about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            check(case, batch, dtype)


def test_lstm_on_onednn_counts_no_flops():
    """Why the test above turns oneDNN off: with it on, FlopCounterMode sees no matrix product."""
    model = Outputs(nn.LSTM(3, 4, batch_first=True))
    assert flops(model, torch.zeros(2, 5, 3)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False):
            assert flops(model, torch.zeros(2, 5, 3)) == 2 * 2 * 5 * (3 + 4) * 16 > 0


def test_every_new_kind_is_drawn():
    kinds = {"prelu", "lstm", "gru", "conv_transpose", "layernorm", "rmsnorm", "groupnorm", "instancenorm", "lrn"}
    assert kinds <= set(archcalc.layers.LAYERS)
    assert len(BUILDERS) >= len(kinds)


# Drawn with no regard for validity: archcalc refuses exactly what torch refuses.
@st.composite
def wild_layers(draw):
    n = draw(st.sampled_from([1, 2]))
    shape = (draw(st.integers(1, 4)), *(draw(st.integers(1, 6)) for _ in range(n)))
    k, s, p, d, op = (draw(st.integers(lo, hi)) for lo, hi in ((1, 5), (1, 3), (0, 4), (1, 3), (0, 3)))
    if draw(st.booleans()):
        table = dict(type="conv_transpose", out_channels=2, kernel_size=k, stride=s, padding=p, dilation=d, output_padding=op)
        return shape, table, lambda: getattr(nn, f"ConvTranspose{n}d")(shape[0], 2, k, s, p, op, dilation=d)
    mode = draw(st.sampled_from(["reflect", "replicate", "circular"]))
    padding = draw(st.sampled_from([p, "same"]))
    table = dict(type="conv", out_channels=2, kernel_size=k, padding=padding, dilation=d, padding_mode=mode)
    return shape, table, lambda: getattr(nn, f"Conv{n}d")(shape[0], 2, k, 1, padding, d, padding_mode=mode)


@settings(max_examples=200, **SETTINGS)
@given(case=wild_layers())
def test_archcalc_refuses_exactly_what_torch_refuses(case):
    shape, table, build = case
    text = spec(shape, [table])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = build()(torch.zeros(1, *shape))
        torch_says = tuple(out.shape[1:]) if math.prod(out.shape) else None
    except (RuntimeError, ValueError):
        torch_says = None
    try:
        row = archcalc.analyze(archcalc.loads(text)).rows[0]
    except SpecError as error:
        assert torch_says is None, f"archcalc refuses what torch accepts: {error}\n{text}"
        return
    assert torch_says == row.output, text


# Chains of layers that move axes around: what autograd keeps depends on which tensors are views
# of which (a permute is a view; a reshape of it, or nn.Linear on it, is a copy).
class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def axis_layer(draw, shape):
    rank = len(shape)
    kind = draw(st.sampled_from(["permute", "permute", "flatten", "flatten", "dense", "dense", "reshape", "reshape",
                                 "layernorm", "gelu", "relu", "groupnorm", "instancenorm", "conv"]))
    if kind == "permute":  # archcalc's dims are a sample's axes: torch's less one
        dims = [0, *draw(st.permutations(range(1, rank + 1)))]
        written = [d - 1 - (rank if draw(st.booleans()) else 0) for d in dims[1:]]
        return dict(type="permute", dims=written), lambda: Permute(dims)
    if kind == "flatten":
        start = draw(st.integers(1, rank))
        end = draw(st.integers(start, rank))
        table = dict(type="flatten", start_dim=start - 1, end_dim=end - 1 if draw(st.booleans()) else end - rank - 1)
        return table, lambda: nn.Flatten(start, end)
    if kind == "dense" and rank <= 2:
        out, bias = draw(st.integers(1, 6)), draw(st.booleans())
        return dict(type="dense", out_features=out, bias=bias), lambda: nn.Linear(shape[-1], out, bias=bias)
    if kind == "layernorm":
        return dict(type="layernorm"), lambda: nn.LayerNorm(shape[-1])
    if kind == "groupnorm":
        return dict(type="groupnorm", num_groups=1), lambda: nn.GroupNorm(1, shape[0])
    if kind == "instancenorm" and 2 <= rank <= 4:
        return dict(type="instancenorm", affine=True), lambda: getattr(nn, f"InstanceNorm{rank - 1}d")(shape[0], affine=True)
    if kind == "conv" and 2 <= rank <= 4:
        return dict(type="conv", out_channels=2, kernel_size=1), lambda: getattr(nn, f"Conv{rank - 1}d")(shape[0], 2, 1)
    if kind == "reshape":
        total = math.prod(shape)
        target = draw(st.sampled_from([[total], [shape[-1], total // shape[-1]], [*shape[:-1], shape[-1]], [-1, shape[0]]]))
        concrete = [total // shape[0] if t == -1 else t for t in target]
        return dict(type="reshape", shape=target), lambda: Reshape(concrete)
    function = "gelu" if kind == "gelu" else "relu"
    return dict(type="activation", function=function), {"gelu": nn.GELU, "relu": nn.ReLU}[function]


@st.composite
def chains(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(2, 3))))
    current, tables, modules = shape, [], []
    if draw(st.booleans()):
        head, module = prefix(shape)
        tables, modules = [head], [module]
    for _ in range(draw(st.integers(1, 5))):
        table, build = axis_layer(draw, current)
        try:
            with torch.no_grad():
                out = nn.Sequential(*(m() for m in [*modules, build])).eval()(torch.zeros(2, *shape))
        except (RuntimeError, ValueError):
            continue
        tables.append(table)
        modules.append(build)
        current = tuple(out.shape[1:])
    if not tables:
        tables.append(dict(type="flatten"))
        modules.append(nn.Flatten)
    return shape, tables, modules


@settings(max_examples=120, **SETTINGS)
@given(case=chains(), batch=st.integers(2, 3), dtype=st.sampled_from(sorted(DTYPES)))
def test_views_and_copies_match_torch(case, batch, dtype):
    check(case, batch, dtype)
