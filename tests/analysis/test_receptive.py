"""Receptive fields and jumps against torch: the input pixels that reach one output, measured.

Hypothesis draws a stack of windows (conv, max and average pooling, with kernels, strides, paddings
and dilations per axis); archcalc's field of the last layer must equal the extent, per axis, of the
input pixels whose gradient is nonzero when one output in the middle is backpropagated, with every
weight 1 so that nothing cancels. Max pooling sends its gradient to one argmax only: in the gradient
measurement it is replaced by an all-ones depthwise convolution over the same window (what it *reads*);
a second measurement keeps the real MaxPool2d and perturbs whole rows and columns of the input instead.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import (  # noqa: E402
    assume,
    given,
    settings,
    strategies as st,
)

import archcalc  # noqa: E402


@st.composite
def windows(draw):
    """One layer: (kind, op, kernel, stride, padding, dilation), each per axis (H, W)."""
    kind = draw(st.sampled_from(["conv", "pool"]))
    op = draw(st.sampled_from(["max", "avg"])) if kind == "pool" else None
    k = tuple(draw(st.integers(1, 5)) for _ in range(2))
    s = tuple(draw(st.integers(1, 3)) for _ in range(2))
    d = (1, 1) if op == "avg" else tuple(draw(st.integers(1, 3)) for _ in range(2))
    cap = [kk // 2 if kind == "pool" else (kk - 1) * dd // 2 + 1 for kk, dd in zip(k, d)]
    p = tuple(draw(st.integers(0, c)) for c in cap)
    return kind, op, k, s, p, d


def spec_text(layers, size) -> str:
    out = [f'[model]\ninput = [1, {size[0]}, {size[1]}]']
    for kind, op, k, s, p, d in layers:
        out.append(f'[[layers]]\ntype = "{kind}"\nkernel_size = {list(k)}\nstride = {list(s)}\npadding = {list(p)}')
        out.append(f'op = "{op}"' if kind == "pool" else 'out_channels = 1\nactivation = "relu"')
        if op != "avg":
            out.append(f"dilation = {list(d)}")
    return "\n".join(out) + "\n"


def torch_net(layers, real_max: bool):
    modules = []
    for _, op, k, s, p, d in layers:
        if op == "avg":
            modules.append(nn.AvgPool2d(k, s, p))  # count_include_pad: every window pixel gets a gradient
        elif op == "max" and real_max:
            modules.append(nn.MaxPool2d(k, s, p, dilation=d))
        else:
            conv = nn.Conv2d(1, 1, k, s, p, d, bias=False)
            nn.init.ones_(conv.weight)
            modules.append(conv)  # the spec's relu aside: its gradient at 0 (a padded border) would be 0
    return nn.Sequential(*modules).double()


def extent(hit: torch.Tensor) -> tuple[int, int]:
    """(first, last) index where `hit` (one axis) is true."""
    where = torch.nonzero(hit).flatten()
    return int(where.min()), int(where.max())


def measured(layers, size):
    """Per axis, the extent of the input pixels with a nonzero gradient from the middle output."""
    x = torch.ones(1, 1, *size, dtype=torch.float64, requires_grad=True)
    y = torch_net(layers, real_max=False)(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    hit = x.grad[0, 0] != 0
    return [extent(hit.any(dim=1)), extent(hit.any(dim=0))]


def field_of(layers, size):
    report = archcalc.analyze(archcalc.loads(spec_text(layers, size)))
    return report.fields[-1]


def big_enough(layers) -> tuple[int, int]:
    """An input where the middle output's field lies inside the image, whatever the strides and paddings."""
    report = archcalc.analyze(archcalc.loads(spec_text(layers, (4000, 4000))))  # large enough for any drawn stack
    jumps = [(1, 1), *(f.jump for f in report.fields)]
    pads = [sum(layer[4][axis] * j[axis] for layer, j in zip(layers, jumps)) for axis in (0, 1)]
    return tuple(2 * r + 4 * j + 2 * p + 12 for r, j, p in zip(report.fields[-1].size, jumps[-1], pads))


@settings(max_examples=40, deadline=None)
@given(st.lists(windows(), min_size=1, max_size=4))
def test_field_is_the_gradient_footprint(layers):
    size = big_enough(layers)
    field = field_of(layers, size)
    for axis, (first, last) in enumerate(measured(layers, size)):
        assert first > 0 and last < size[axis] - 1, "the footprint touches the edge: the input is too small"
        if any(k > 1 for _, _, kk, _, _, _ in layers for k in kk[axis:axis + 1]):
            assert last - first + 1 == field.size[axis]
        else:  # 1×1 windows all the way: one pixel
            assert field.size[axis] == 1 == last - first + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(windows(), min_size=1, max_size=4))
def test_jump_is_the_distance_between_neighbouring_footprints(layers):
    size = big_enough(layers)
    field = field_of(layers, size)
    x = torch.ones(1, 1, *size, dtype=torch.float64, requires_grad=True)
    y = torch_net(layers, real_max=False)(x)
    i, j = y.shape[2] // 2, y.shape[3] // 2
    if i + 1 >= y.shape[2] or j + 1 >= y.shape[3]:
        return
    starts = []
    for a, b in ((i, j), (i + 1, j + 1)):
        grad, = torch.autograd.grad(y[0, 0, a, b], x, retain_graph=True)
        hit = grad[0, 0] != 0
        starts.append((extent(hit.any(dim=1))[0], extent(hit.any(dim=0))[0]))
    assert [b - a for a, b in zip(*starts)] == list(field.jump)


@settings(max_examples=20, deadline=None)
@given(st.lists(windows(), min_size=1, max_size=3))
def test_field_with_real_max_pooling_by_perturbation(layers):
    """Raise a whole row (or column) of the input: the middle output changes iff the row is in its field."""
    size = big_enough(layers)
    assume(max(size) <= 400)  # each row of the input is a forward pass
    field = field_of(layers, size)
    net = torch_net(layers, real_max=True)
    base = torch.rand(1, 1, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1
    with torch.no_grad():
        y = net(base)
        i, j = y.shape[2] // 2, y.shape[3] // 2
        for axis in (0, 1):
            changed = []
            for chunk in range(0, size[axis], 32):  # 32 perturbed copies at a time: memory stays small
                rows = range(chunk, min(chunk + 32, size[axis]))
                batch = base.repeat(len(rows), 1, 1, 1)
                for b, n in enumerate(rows):
                    if axis == 0:
                        batch[b, 0, n, :] += 1000
                    else:
                        batch[b, 0, :, n] += 1000
                changed.append(net(batch)[:, 0, i, j] != y[0, 0, i, j])
            first, last = extent(torch.cat(changed))
            assert last - first + 1 == field.size[axis]


def test_alexnet_pool3_sees_195_pixels():
    report = archcalc.analyze(archcalc.load("specs/alexnet.toml"))
    assert report.fields[report.row("pool3").index - 1].size == (195, 195)
    layer = report.to_dict()["layers"][report.row("pool3").index - 1]
    assert layer["receptive_field"] == [195, 195] and layer["jump"] == [32, 32]


def test_flatten_sees_the_whole_map_and_dense_keeps_it():
    """16×16 → conv 3 → 14 → pool 2 → 7: flatten's field is the whole 16, as the gradient of a dense output says."""
    spec = archcalc.loads('[model]\ninput = [1, 16, 16]\n[[layers]]\ntype = "conv"\nout_channels = 1\nkernel_size = 3\n'
                          '[[layers]]\ntype = "pool"\nkernel_size = 2\n[[layers]]\ntype = "flatten"\n'
                          '[[layers]]\ntype = "dense"\nout_features = 1\n')
    report = archcalc.analyze(spec)
    assert [f.size for f in report.fields] == [(3, 3), (4, 4), (16, 16), (16, 16)]
    assert report.fields[-1].jump is None and report.to_dict()["layers"][-1]["jump"] is None
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(49, 1)).double()
    for p in net.parameters():
        nn.init.ones_(p)
    x = torch.ones(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0].backward()
    assert int((x.grad[0, 0] != 0).any(dim=1).sum()) == 16


def test_fields_are_formulas_of_symbolic_kernels():
    spec = archcalc.loads('[model]\ninput = [1, 64, 64]\n[[layers]]\ntype = "conv"\nout_channels = 1\nkernel_size = "k"\n'
                          'stride = 2\n[[layers]]\ntype = "conv"\nout_channels = 1\nkernel_size = "k"\n')
    field = archcalc.analyze(spec).fields[-1]
    assert str(field.size[0]) == "3*k - 2" and field.jump == (2, 2)


def test_upsample_nearest_divides_the_jump():
    spec = archcalc.loads('[model]\ninput = [1, 32, 32]\n[[layers]]\ntype = "pool"\nkernel_size = 2\n'
                          '[[layers]]\ntype = "upsample"\nscale_factor = 2\n[[layers]]\ntype = "conv"\nout_channels = 1\nkernel_size = 3\n')
    fields = archcalc.analyze(spec).fields
    assert fields[1].size == (2, 2) and fields[1].jump == (1, 1)
    assert fields[2].size == (4, 4)


GRAPH = """[model]
input = [1, 64, 64]
[[layers]]
name = "a"
type = "conv"
out_channels = 1
kernel_size = 3
padding = 1
[[layers]]
name = "b"
type = "conv"
out_channels = 1
kernel_size = 5
padding = 4
dilation = 2
[[layers]]
name = "skip"
type = "conv"
from = "input"
out_channels = 1
kernel_size = 1
[[layers]]
name = "sum"
type = "add"
from = ["b", "skip"]
[[layers]]
name = "joined"
type = "concat"
from = ["sum", "a"]
"""


def test_a_graph_takes_the_worst_path_as_its_gradient_footprint_does():
    report = archcalc.analyze(archcalc.loads(GRAPH))
    fields = {row.name: f for row, f in zip(report.rows, report.fields)}
    assert fields["b"].size == (11, 11) and fields["skip"].size == (1, 1) and fields["sum"].size == (11, 11)
    assert fields["joined"].size == (11, 11)
    convs = {}
    for name, (k, p, d) in {"a": (3, 1, 1), "b": (5, 4, 2), "skip": (1, 0, 1)}.items():
        convs[name] = nn.Conv2d(1, 1, k, padding=p, dilation=d, bias=False).double()
        nn.init.ones_(convs[name].weight)
    x = torch.ones(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)
    a = convs["a"](x)
    total = convs["b"](a) + convs["skip"](x)
    total[0, 0, 32, 32].backward()
    first, last = extent((x.grad[0, 0] != 0).any(dim=1))
    assert last - first + 1 == fields["sum"].size[0]


def test_resnet18s_last_conv_sees_435_pixels():
    report = archcalc.analyze(archcalc.load("specs/resnet18.toml"))
    assert report.fields[report.row("layer4.1.conv2").index - 1].size == (435, 435)
