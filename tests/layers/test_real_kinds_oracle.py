"""The kinds real models need (issue 18) against torch: identity, stochastic depth, mean over axes, slices, upsampling
as F.interpolate (align_corners, nearest-exact), transformers' LlamaRMSNorm, a layer scale (`mul` by a `parameter`),
dense per position.

Each drawn layer is written twice: as a spec's table, and as the torch module the libraries themselves use where one
exists (torchvision's StochasticDepth, timm's DropPath; tests/oracle/vision.py lets them import beside CPU torch), else
written here from torch's ops (`x.mean(dims)`, `x[:, a:b]`), never with archcalc's own `to_torch`. Torch then gives
the shape, parameters, FlopCounterMode's forward and training FLOPs, the bytes saved_tensors_hooks sees kept (float32
and bfloat16), and the live storages of a whole training step (tests/oracle/timeline_probe.py), to the byte.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (torchvision's ops beside CPU torch, before timm imports it)
from archcalc import SpecError  # noqa: E402
from tests.layers.test_layers_oracle import check, prefix, spatial_shape, spec  # noqa: E402
from tests.memory.test_timeline_oracle import oracle, phases  # noqa: E402
from tests.oracle.timeline_probe import inference_peak, step_peaks  # noqa: E402
from tests.oracle.torch_probe import saved_bytes  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
KINDS = {"identity", "stochastic_depth", "mean", "narrow", "upsample"}  # the kinds this file draws (test_torch_oracle checks all are)
StochasticDepth = pytest.importorskip("torchvision.ops").StochasticDepth
DropPath = pytest.importorskip("timm.layers").DropPath


class Call(nn.Module):
    """A tensor expression as a module (x.mean(dims), x[:, a:b]), for the oracle's chains."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


def any_shape(draw):
    return spatial_shape(draw, dims=(1, 2, 3)) if draw(st.booleans()) else (draw(st.integers(1, 8)),)


# Each builder draws (input shape, spec table, torch module factory) -------------------------------------------

def identity(draw):
    return any_shape(draw), dict(type="identity"), nn.Identity


def stochastic_depth(draw):
    shape = any_shape(draw)
    p = draw(st.sampled_from([0.0, 0.2, 0.5]))
    mode = draw(st.sampled_from(["row", "batch"]))
    table = dict(type="stochastic_depth", p=p, mode=mode)
    if mode == "row" and draw(st.booleans()):
        del table["mode"]  # the default, timm's only mode
        return shape, table, lambda: DropPath(p)
    return shape, table, lambda: StochasticDepth(p, mode)


def mean(draw):
    shape = any_shape(draw)
    axes = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    keepdim = draw(st.booleans())
    assume(keepdim or len(axes) < len(shape))  # nothing left but the batch axis: refused (test below)
    dims = [a - len(shape) if draw(st.booleans()) else a for a in axes]  # negative ones count from the end
    table = dict(type="mean", dims=dims)
    if keepdim or draw(st.booleans()):
        table["keepdim"] = keepdim
    torch_dims = tuple(a + 1 for a in axes)
    return shape, table, lambda: Call(lambda x: x.mean(torch_dims, keepdim=keepdim))


def narrow(draw):
    """torch.narrow (what chunk and split are made of), or a strided slice x[:, start::step] with its length."""
    shape = any_shape(draw)
    axis = draw(st.integers(0, len(shape) - 1))
    start, length, step = draw(st.integers(0, 6)), draw(st.none() | st.integers(1, 5)), draw(st.integers(1, 3))
    table = dict(type="narrow", dim=axis - len(shape) if draw(st.booleans()) else axis, start=start)
    if step != 1:
        table["step"] = step
    if length is not None:
        table["length"] = length
    stop = None if length is None else start + (length - 1) * step + 1
    if stop is not None and stop > shape[axis]:
        return shape, table, lambda: Call(lambda x: x.narrow(axis + 1, start, shape[axis] + 1))  # refused by torch too
    if step == 1 and length is not None and draw(st.booleans()):
        return shape, table, lambda: Call(lambda x: x.narrow(axis + 1, start, length))
    index = (slice(None),) * (axis + 1) + (slice(start, stop, step),)
    return shape, table, lambda: Call(lambda x: x[index])


def upsample(draw):
    """F.interpolate as segmentation heads call it (to a size, bilinear, align_corners), and nn.Upsample's other modes."""
    shape = spatial_shape(draw, dims=(1, 2, 3))
    n = len(shape) - 1
    mode = draw(st.sampled_from(["nearest", "nearest-exact", {1: "linear", 2: "bilinear", 3: "trilinear"}[n]]
                                + (["bicubic"] if n == 2 else [])))
    table = dict(type="upsample", mode=mode)
    options = {}
    if mode not in ("nearest", "nearest-exact") and draw(st.booleans()):
        table["align_corners"] = options["align_corners"] = draw(st.booleans())
    if draw(st.booleans()):
        size = [draw(st.integers(1, 9)) for _ in range(n)]
        table["size"], options["size"] = size, tuple(size)
    else:
        factor = draw(st.sampled_from([2, 1.5, 0.5, 3]))
        table["scale_factor"] = options["scale_factor"] = factor
    if n == 2 and mode == "bilinear" and options.get("align_corners") and "size" in options and draw(st.booleans()):
        return shape, table, lambda: nn.UpsamplingBilinear2d(size=options["size"])
    return shape, table, lambda: Call(lambda x: nn.functional.interpolate(x, mode=mode, **options))


def llama_rmsnorm(draw):
    """transformers' LlamaRMSNorm (float32 inside, γ after the cast back): its own module, as the library writes it."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    shape = spatial_shape(draw, dims=(1, 2))
    table = dict(type="rmsnorm", module="llama")
    if draw(st.booleans()):
        table["eps"] = 1e-5
    return shape, table, lambda: LlamaRMSNorm(shape[-1], table.get("eps", 1e-6))


BUILDERS = [identity, stochastic_depth, mean, narrow, upsample, llama_rmsnorm]


@st.composite
def cases(draw):
    shape, table, build = draw(st.sampled_from(BUILDERS))(draw)
    tables, modules = [table], [build]
    if draw(st.booleans()):  # after a layer with parameters: its input needs a gradient
        head, module = prefix(shape)
        tables, modules = [head, table], [module, build]
    return shape, tables, modules


@settings(max_examples=150, **SETTINGS)
@given(case=cases(), batch=st.integers(1, 3), dtype=st.sampled_from(["float32", "bfloat16"]))
def test_drawn_layers_match_torch(case, batch, dtype):
    check(case, batch, dtype)


@st.composite
def stacks(draw):
    """One drawn layer (perhaps after a 1×1 convolution), then flatten and a dense head: a training step's worth."""
    shape, tables, modules = draw(cases())
    try:
        with torch.no_grad():
            out = nn.Sequential(*(m() for m in modules)).eval()(torch.zeros(2, *shape))
    except (RuntimeError, ValueError, IndexError):
        return None
    if not out.numel():
        return None
    classes = draw(st.integers(2, 5))
    features = out[0].numel()
    return (shape, [*tables, dict(type="flatten"), dict(type="dense", out_features=classes)],
            [*modules, nn.Flatten, lambda: nn.Linear(features, classes)])


@settings(max_examples=80, **SETTINGS)
@given(case=stacks(), batch=st.integers(2, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(["sgd", "adam"]))
def test_drawn_layers_step_by_step(case, batch, dtype, optimizer):
    """The training step's live storages, phase by phase, and one forward's in inference, to the byte (batches of 2 or
    more: with one sample torch views a few sliced shapes that it must copy otherwise, layers/layout.py)."""
    assume(case is not None)
    shape, tables, modules = case
    text = spec(shape, tables)
    try:
        report = archcalc.analyze(archcalc.loads(text), batch=batch, dtype=dtype, optimizer=optimizer)
    except SpecError:
        assume(False)  # what archcalc refuses, torch refuses too (test_drawn_layers_match_torch)
    torch.manual_seed(0)
    model = nn.Sequential(*(m() for m in modules))
    assert phases(report, batch) == oracle(model, shape, batch, dtype, optimizer), text
    # inference does not follow layouts yet (a reshape of a slice copies), nor a layer's own ops (Layer.program)
    if all(t["type"] != "narrow" and t.get("module") != "llama" for t in tables):
        x = torch.randn(batch, *shape, dtype=getattr(torch, dtype))
        assert report.memory.inference_peak.at(batch) == inference_peak(model.to(getattr(torch, dtype)), x), text


@settings(max_examples=40, **SETTINGS)
@given(case=stacks(), batch=st.integers(2, 3), optimizer=st.sampled_from(["sgd", "adam"]))
def test_drawn_layers_under_autocast(case, batch, optimizer):
    """The same under torch.autocast("cpu", bfloat16) (bf16-mixed), float32 parameters: the generic rule's dtypes. Not
    Llama's RMSNorm, whose float32 upcast and cast back the timeline follows op by op only without autocast."""
    assume(case is not None)
    shape, tables, modules = case
    assume(all(t.get("module") != "llama" for t in tables))
    text = spec(shape, tables)
    try:
        report = archcalc.analyze(archcalc.loads(text), batch=batch, optimizer=optimizer, autocast="bfloat16")
    except SpecError:
        assume(False)
    torch.manual_seed(0)
    x = torch.randn(batch, *shape)
    try:
        expected = step_peaks(nn.Sequential(*(m() for m in modules)), x, optimizer, autocast=torch.bfloat16, scaled=True)
    except (NotImplementedError, RuntimeError):  # no bfloat16 CPU kernel (an upsampling mode)
        assume(False)
    assert phases(report, batch) == expected, text


def test_align_corners_only_where_torch_takes_it():
    with pytest.raises(ValueError):
        nn.Upsample(scale_factor=2, mode="nearest", align_corners=True)(torch.zeros(1, 1, 3))
    with pytest.raises(SpecError, match="align_corners is an option of the interpolating modes"):
        archcalc.analyze(archcalc.loads(spec((1, 3), [dict(type="upsample", scale_factor=2, align_corners=True)])))


def test_mean_refuses_to_leave_only_the_batch_axis():
    with pytest.raises(SpecError, match="reduces every axis"):
        archcalc.analyze(archcalc.loads(spec((3, 4), [dict(type="mean", dims=[0, 1])])))
    assert archcalc.analyze(archcalc.loads(spec((3, 4), [dict(type="mean", dims=[0, 1], keepdim=True)]))).output == (1, 1)


def test_narrow_is_what_chunk_and_split_are_made_of():
    """x.chunk(3, 1) on [B, 7, 2]: pieces of 3, 3 and 1 channels, three narrows of one tensor; past the end refused."""
    x = torch.zeros(2, 7, 2)
    pieces = [archcalc.analyze(archcalc.loads(spec((7, 2), [dict(type="narrow", start=a, length=n)]))).rows[0].output
              for a, n in ((0, 3), (3, 3), (6, 1))]
    assert pieces == [tuple(p.shape[1:]) for p in x.chunk(3, 1)]
    with pytest.raises(SpecError, match="passes the end"):
        archcalc.analyze(archcalc.loads(spec((7, 2), [dict(type="narrow", start=6, length=2)])))
    with pytest.raises(SpecError, match="past the end"):
        archcalc.analyze(archcalc.loads(spec((7, 2), [dict(type="narrow", start=7)])))


def test_stochastic_depth_keeps_its_noise_and_is_the_input_in_eval():
    """Row mode keeps a [B, 1, 1, 1] noise tensor (one value per sample), batch mode one value; eval returns the input."""
    text = spec((4, 5, 5), [dict(type="conv", out_channels=4, kernel_size=1), dict(type="stochastic_depth", p=0.2)])
    report = archcalc.analyze(archcalc.loads(text), batch=3)
    assert [k.item.what for k in report.memory.kept[1]] == ["noise, one value per sample"]
    assert report.memory.per_row[1].per_sample == 4 and report.memory.per_row[1].fixed == 0
    batch = archcalc.analyze(archcalc.loads(text.replace('p = 0.2', 'p = 0.2\nmode = "batch"')), batch=3)
    assert batch.memory.per_row[1].fixed == 4 and batch.memory.per_row[1].per_sample == 0
    module = StochasticDepth(0.2, "row").eval()
    x = torch.randn(3, 4, 5, 5)
    assert module(x) is x and report.rows[1].layer.returns_input_in_eval


# A layer scale: `mul` by a `parameter` ---------------------------------------------------------------------------

LAYER_SCALE = spec((4, 5, 5), [
    dict(name="conv", type="conv", out_channels=4, kernel_size=1),
    dict(name="layer_scale", type="parameter", shape=[4, 1, 1], torch_shape=[4, 1, 1], bare=True, expand=False),
    dict(name="mul", type="mul", **{"from": ["layer_scale", "conv"]}),
    dict(type="flatten"), dict(type="dense", out_features=3),
])


class Scaled(nn.Module):
    """conv 1×1 → layer_scale · x (ConvNeXt's: a bare [C, 1, 1] parameter broadcast over the batch) → flatten → dense."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.layer_scale = nn.Parameter(torch.full((4, 1, 1), 1e-6))
        self.dense1 = nn.Linear(100, 3)

    def forward(self, x):
        return self.dense1(torch.flatten(self.layer_scale * self.conv(x), 1))


def test_a_layer_scale_keeps_the_parameter_itself():
    """Issue 18: `verify` said 832 ≠ torch 800: the parameter broadcast over the batch was counted as a kept tensor."""
    from archcalc.backends.build import build

    report = archcalc.analyze(archcalc.loads(LAYER_SCALE), batch=2)
    x = torch.randn(2, 4, 5, 5)
    assert report.memory.saved.at(2) == saved_bytes(Scaled(), x) == 3 * 800  # conv's input, its output (the mul's), dense's
    built = build(archcalc.loads(LAYER_SCALE))
    assert built.state_dict()["layer_scale"].shape == (4, 1, 1)  # torchvision's key and shape
    built.load_state_dict(Scaled().state_dict(), strict=True)
    for optimizer in ("sgd", "adam"):
        stepped = archcalc.analyze(archcalc.loads(LAYER_SCALE), batch=2, optimizer=optimizer)
        assert phases(stepped, 2) == oracle(Scaled(), (4, 5, 5), 2, "float32", optimizer)
        assert phases(stepped, 2) == oracle(build(archcalc.loads(LAYER_SCALE)), (4, 5, 5), 2, "float32", optimizer)


def test_parameter_torch_shape_holds_as_many_values():
    text = spec((4, 5, 5), [dict(type="parameter", shape=[4, 1, 1], torch_shape=[5])])
    with pytest.raises(SpecError, match="torch_shape"):
        archcalc.analyze(archcalc.loads(text))


def cn_block(c: int, p: float) -> list[dict]:
    """torchvision's ConvNeXt block (CNBlock) as spec tables, named as torchvision names its modules."""
    return [
        dict(name="b.block.0", type="conv", **{"from": "stem"}, out_channels=c, kernel_size=7, padding=3, groups=c),
        dict(name="b.block.1", type="permute", dims=[1, 2, 0]),
        dict(name="b.block.2", type="layernorm"),
        dict(name="b.block.3", type="dense", in_features=c, out_features=4 * c),
        dict(name="b.block.4", type="activation", function="gelu"),
        dict(name="b.block.5", type="dense", in_features=4 * c, out_features=c),
        dict(name="b.block.6", type="permute", dims=[2, 0, 1]),
        dict(name="b.layer_scale", type="parameter", shape=[c, 1, 1], torch_shape=[c, 1, 1], bare=True, expand=False),
        dict(name="b.scaled", type="mul", **{"from": ["b.layer_scale", "b.block.6"]}),
        dict(name="b.stochastic_depth", type="stochastic_depth", p=p),
        dict(name="b.add", type="add", **{"from": ["b.stochastic_depth", "stem"]}),
    ]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch", [2, 3])
def test_torchvisions_convnext_block_to_the_byte(optimizer, batch):
    """CNBlock itself (depthwise 7×7, LayerNorm and two Linear per position on [H, W, C], layer scale, stochastic
    depth, the residual), between a 1×1 stem and a `mean` head: torchvision's state_dict loads strictly into the build,
    and the spec's parameters, FLOPs, saved bytes and training step's live storages are torch's."""
    from torchvision.models.convnext import CNBlock

    from archcalc.backends.build import build
    from tests.oracle.torch_probe import flops

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.b, self.fc = nn.Conv2d(4, 4, 1), CNBlock(4, 1e-6, 0.25), nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.b(self.stem(x)).mean((2, 3)))

    text = spec((4, 5, 5), [dict(name="stem", type="conv", out_channels=4, kernel_size=1), *cn_block(4, 0.25),
                            dict(name="pool", type="mean", dims=[1, 2]), dict(name="fc", type="dense", out_features=3)])
    report = archcalc.analyze(archcalc.loads(text), batch=batch, optimizer=optimizer)
    torch.manual_seed(0)
    net, x = Net(), torch.randn(batch, 4, 5, 5)
    built = build(archcalc.loads(text))
    built.load_state_dict(net.state_dict(), strict=True)
    assert torch.allclose(built.eval()(x), net.eval()(x), atol=1e-6)
    assert report.totals["params"] == sum(p.numel() for p in net.parameters())
    assert report.totals["flops"] * batch == flops(net, x)
    assert report.memory.saved.at(batch) == saved_bytes(net, x)
    assert phases(report, batch) == oracle(net, (4, 5, 5), batch, "float32", optimizer)
    assert report.memory.inference_peak.at(batch) == inference_peak(net, x)


def test_dense_per_position_needs_in_features():
    """nn.Linear over the last axis of [H, W, C] (ConvNeXt): said with in_features; without it, the error a CNN
    that forgot flatten gets."""
    with pytest.raises(SpecError, match="add a flatten layer before it"):
        archcalc.analyze(archcalc.loads(spec((3, 4, 5), [dict(type="dense", out_features=2)])))
    with pytest.raises(SpecError, match="in_features = 4, but the input"):
        archcalc.analyze(archcalc.loads(spec((3, 4, 5), [dict(type="dense", in_features=4, out_features=2)])))
    row = archcalc.analyze(archcalc.loads(spec((3, 4, 5), [dict(type="dense", in_features=5, out_features=2)]))).rows[0]
    linear = nn.Linear(5, 2)
    assert row.output == tuple(linear(torch.zeros(1, 3, 4, 5)).shape[1:]) and row.params == 12 and row.macs == 3 * 4 * 5 * 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torchvisions_vit_class_token_and_positions(optimizer):
    """specs/vit_b_16.toml, small, with torchvision's parameters as torchvision holds them: the class token a bare
    [1, 1, d] parameter expanded over the batch for the concat, the positions a bare [1, T, d] one broadcast by the
    add (expand = false). torchvision's VisionTransformer's state_dict loads strictly (its encoder_layer_N named N
    here), and the parameters, FLOPs, saved bytes and the backward and optimizer phases are its own to the byte; its
    forward's peak is higher: VisionTransformer.forward's local `x` holds the encoder's input while the encoder runs,
    a Python frame the spec's graph does not have."""
    from torchvision.models.vision_transformer import VisionTransformer

    from archcalc.backends.build import build
    from tests.conftest import ROOT
    from tests.oracle.torch_probe import flops, torch_counts

    text = (ROOT / "specs" / "vit_b_16.toml").read_text(encoding="utf-8").split("[expect]")[0]
    text = text.replace('shape = [1, "d"]', 'shape = [1, "d"]\nbare = true')
    text = text.replace('shape = ["tokens", "d"]', 'shape = ["tokens", "d"]\nbare = true\nexpand = false')
    values = dict(H=8, W=8, patch=4, d=8, heads=2, mlp=16, n_layer=2, classes=3)
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)
    spec_ = archcalc.loads(text)
    build(spec_, **values).load_state_dict({k.replace("encoder_layer_", ""): v for k, v in vit.state_dict().items()}, strict=True)
    report = archcalc.analyze(spec_, batch=2, optimizer=optimizer, **values)
    x = torch.randn(2, 3, 8, 8)
    assert report.totals["params"] == sum(p.numel() for p in vit.parameters())
    assert torch_counts(report, "flops") * 2 == flops(vit, x)  # SDPA's fused CPU kernel: counted 0 by FlopCounterMode
    assert report.memory.saved.at(2) == saved_bytes(vit, x)
    simulated, measured = phases(report, 2), step_peaks(vit, x, optimizer)
    assert (simulated["backward"], simulated["optimizer"]) == (measured["backward"], measured["optimizer"])
    assert phases(report, 2) == step_peaks(build(spec_, **values), x, optimizer)  # archcalc's own build, every phase
