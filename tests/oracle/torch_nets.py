"""Hypothesis strategies for small random networks, as spec text, for the torch backend's tests.

A network grows one layer at a time; a drawn layer that archcalc refuses for the
current input (a kernel larger than the input, groups that do not divide...) is
dropped and another is drawn, so every network that comes out is valid. Sizes stay
small (at most MAX_VALUES values per sample) so that a CPU runs dozens per second.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

import archcalc
from archcalc.core.errors import SpecError
from archcalc.layers import ACTIVATIONS

MAX_VALUES = 3000
UPSAMPLE_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def spec_text(input_shape, layers, dtype: str = "float32") -> str:
    lines = ["[model]", 'name = "drawn"', f"input = {toml_value(list(input_shape))}", f'dtype = "{dtype}"']
    for layer in layers:
        lines += ["", "[[layers]]"] + [f"{key} = {toml_value(value)}" for key, value in layer.items()]
    return "\n".join(lines) + "\n"


def axes(draw, n: int, values: st.SearchStrategy):
    """One value, or one per axis (asymmetric kernels, strides...)."""
    if n > 1 and draw(st.booleans()):
        return [draw(values) for _ in range(n)]
    return draw(values)


def activation(draw) -> dict:
    return {"activation": draw(st.sampled_from(sorted(ACTIVATIONS)))} if draw(st.booleans()) else {}


def conv(draw, shape) -> dict:
    n = len(shape) - 1
    groups = draw(st.sampled_from([g for g in range(1, shape[0] + 1) if shape[0] % g == 0]))
    stride = axes(draw, n, st.integers(1, 3))
    padding = draw(st.one_of(
        st.just("same") if stride == 1 else st.just("valid"), st.just("valid"), st.integers(0, 2),
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
    ))
    return {
        "type": "conv", "out_channels": groups * draw(st.integers(1, 3)), "kernel_size": axes(draw, n, st.integers(1, 4)),
        "stride": stride, "padding": padding, "dilation": axes(draw, n, st.integers(1, 2)), "groups": groups,
        "bias": draw(st.booleans()), **activation(draw),
    }


def pool(draw, shape, dtype: str) -> dict:
    n = len(shape) - 1
    op = "max" if n == 3 and dtype != "float32" else draw(st.sampled_from(["max", "avg"]))  # no bf16 AvgPool3d on CPU
    kernel = draw(st.integers(1, 3))
    layer = {"type": "pool", "op": op, "kernel_size": kernel, "padding": draw(st.integers(0, kernel // 2)),
             "ceil_mode": draw(st.booleans())}
    if draw(st.booleans()):
        layer["stride"] = axes(draw, n, st.integers(1, 3))
    if op == "max" and draw(st.booleans()):
        layer["dilation"] = draw(st.integers(1, 2))
    return layer


def upsample(draw, shape) -> dict:
    n = len(shape) - 1
    mode = draw(st.sampled_from(["nearest", UPSAMPLE_MODES[n]] + (["bicubic"] if n == 2 else [])))
    if draw(st.booleans()):
        return {"type": "upsample", "mode": mode, "size": [draw(st.integers(1, 9)) for _ in range(n)]}
    return {"type": "upsample", "mode": mode, "scale_factor": axes(draw, n, st.sampled_from([1, 2, 1.5, 0.5]))}


def reshape(draw, shape) -> dict:
    total = math.prod(shape)
    divisors = [d for d in range(1, total + 1) if total % d == 0]
    d = draw(st.sampled_from(divisors))
    return {"type": "reshape", "shape": draw(st.sampled_from([[-1], [d, -1], [d, total // d], [d, 1, total // d]]))}


@st.composite
def layer_for(draw, shape, dtype: str) -> dict:
    """A layer that may fit an input of `shape` (one sample)."""
    common = ["dropout", "activation", "batchnorm", "reshape"]
    kind = draw(st.sampled_from(["conv", "conv", "pool", "upsample", "flatten", *common] if len(shape) > 1 else ["dense", "dense", *common]))
    if kind == "conv":
        return conv(draw, shape)
    if kind == "pool":
        return pool(draw, shape, dtype)
    if kind == "upsample":
        return upsample(draw, shape)
    if kind == "reshape":
        return reshape(draw, shape)
    if kind == "dense":
        return {"type": "dense", "out_features": draw(st.integers(1, 12)), "bias": draw(st.booleans()), **activation(draw)}
    if kind == "dropout":
        return {"type": "dropout", "p": draw(st.sampled_from([0, 0.25, 0.5]))}
    if kind == "activation":
        return {"type": "activation", "function": draw(st.sampled_from(sorted(ACTIVATIONS)))}
    if kind == "batchnorm":
        return {"type": "batchnorm", "affine": draw(st.booleans()), **activation(draw)}
    return {"type": "flatten"}


@st.composite
def networks(draw, dtypes=("float32",), max_layers: int = 6) -> str:
    """Spec text of a valid network of 1 to `max_layers` layers."""
    dtype = draw(st.sampled_from(dtypes))
    spatial = draw(st.integers(0, 3))
    shape = (draw(st.integers(1, 4)), *(draw(st.integers(3, {1: 16, 2: 9, 3: 5}[spatial])) for _ in range(spatial)))
    if spatial == 0:
        shape = (draw(st.integers(1, 24)),)
    layers: list[dict] = []
    current = shape
    for _ in range(draw(st.integers(1, max_layers))):
        layer = draw(layer_for(current, dtype))
        try:
            report = archcalc.analyze(archcalc.loads(spec_text(shape, [*layers, layer], dtype)))
        except SpecError:
            continue
        if math.prod(report.output) > MAX_VALUES:
            continue
        layers.append(layer)
        current = report.output
    if not layers:
        layers = [{"type": "flatten"}]
    return spec_text(shape, layers, dtype)
