"""import on real code: torch.export where torch.fx fails, subclasses of torch.nn classes, names torch gives that a
spec cannot, the written spec always read back, file:line in installed packages, Hugging Face from a config alone."""

import pytest

torch = pytest.importorskip("torch")

import archcalc  # noqa: E402
from archcalc.backends import importer  # noqa: E402
from archcalc.backends.importer import problems  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes, torch_counts  # noqa: E402

nn = torch.nn


def exact(module, text: str, shape: tuple, strict: bool = True) -> None:
    """The spec's parameters, FLOPs (batch 1), saved bytes (batch 2, training) and output shape are torch's,
    and build(spec) loads the module's state_dict with strict=True (where `strict`: attention written as operations
    is built as archcalc's in_proj and out_proj, under other names than the module's)."""
    import archcalc.torch

    spec = archcalc.loads(text)
    one, two = archcalc.analyze(spec, B=1), archcalc.analyze(spec, B=2)
    assert one.totals["params"] == sum(p.numel() for p in module.parameters())
    assert torch_counts(one, "flops") == flops_of_one(module, shape)
    assert two.memory.value("saved_for_backward_bytes") == saved_bytes(module, torch.randn(2, *shape))
    with torch.no_grad():  # in training, as imported: googlenet's and inception's auxiliary heads are outputs then
        assert output_shapes(module.train()(torch.randn(2, *shape))) == [tuple(row.output) for row in one.output_rows]
    if strict:
        archcalc.torch.build(spec).load_state_dict(module.state_dict(), strict=True)


def flops_of_one(module, shape: tuple) -> int:
    """FLOPs of a training forward at batch 1; half batch 2's where torch refuses a batch of one in training (a batch
    norm of one value per channel: inception's auxiliary head, deeplabv3's image pooling). FLOPs are linear in B."""
    try:
        return flops(module, torch.randn(1, *shape))
    except ValueError as error:
        if "Expected more than 1 value per channel" not in str(error):
            raise
        return flops(module, torch.randn(2, *shape)) // 2


def output_shapes(out) -> list[tuple]:
    """The shape of each tensor a forward returns (one sample's): a tensor, a tuple, a dict (segmentation's out, aux)."""
    items = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]
    return [tuple(t.shape[1:]) for t in items]


# --- subclasses of torch.nn classes, nn.Identity, torch.cat of one tensor -----------------------------------


class Conv3DSimple(nn.Conv3d):  # torchvision's video ResNets: a subclass that adds no forward
    def __init__(self, cin, cout):
        super().__init__(cin, cout, kernel_size=(3, 3, 3), padding=1, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):  # timm's: batch norm, then its own children drop and act
    def __init__(self, channels):
        super().__init__(channels)
        self.drop, self.act = nn.Identity(), nn.ReLU()

    def forward(self, x):
        x = nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                                     self.momentum, self.eps)
        return self.act(self.drop(x))


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Conv3DSimple(3, 8)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Sequential(nn.Identity(), nn.Linear(8, 4))

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.stem(x)), 1))


class Timmish(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn1 = BatchNormAct2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.bn1(self.conv(x))
        return self.conv2(torch.cat([y], 1))  # densenet's first layer of a block: cat of one tensor


def test_a_subclass_that_keeps_its_base_forward_is_that_layer_in_torch_fx():
    module = Video()
    text = importer.import_module(module, [3, 4, 8, 8], capture="fx")
    kinds = [row.layer.kind for row in archcalc.analyze(archcalc.loads(text)).rows]
    assert kinds == ["conv", "adaptive_pool", "flatten", "dense"]  # nn.Identity removed: its input itself
    exact(module, text, (3, 4, 8, 8))


def test_a_subclass_with_its_own_forward_is_its_base_for_its_own_operations_and_its_children_apart():
    module = Timmish()
    with pytest.raises(importer.ImportFailed):  # torch.fx traces into it: F.batch_norm on the module's buffers
        importer.import_module(module, [3, 8, 8], capture="fx")
    text = importer.import_module(module, [3, 8, 8])  # auto: torch.export then
    rows = archcalc.analyze(archcalc.loads(text)).rows
    assert [(row.name, row.layer.kind) for row in rows] == [("conv", "conv"), ("bn1", "batchnorm"), ("cat", "concat"), ("conv2", "conv")]
    assert rows[1].layer.activation == "relu"  # bn1.act folded into the batch norm; torch.cat([y]) a copy of y
    exact(module, text, (3, 8, 8))


class Branches(nn.Module):
    """torch.fx cannot follow the `if` on a size; torch.export can (the size is known when it runs)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[1] == 3:
            x = self.conv(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_torch_export_captures_what_torch_fx_cannot_trace():
    with pytest.raises(importer.CaptureFailed) as error:
        importer.import_module(Branches(), [3, 8, 8], capture="fx")
    assert "torch.export is tried next" in str(error.value)
    text = importer.import_module(Branches(), [3, "H", "W"])
    report = archcalc.analyze(archcalc.loads(text))
    assert [row.layer.kind for row in report.rows] == ["conv", "adaptive_pool", "flatten", "dense"]
    assert str(report.rows[0].output) == "(4, H - 2, W - 2)"  # the named axes stay names
    exact(Branches(), importer.import_module(Branches(), [3, 8, 8]), (3, 8, 8))


class Fixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        if x.shape[2] != 8:
            raise ValueError("8×8 only")
        return self.fc(torch.flatten(x, 1))


def test_a_named_axis_the_model_fixes_is_refused_with_its_size_or_its_error():
    with pytest.raises((importer.ImportFailed, importer.CaptureFailed)) as error:
        importer.import_module(Fixed(), [3, "H", "W"], capture="export")
    assert "H = 224" in str(error.value) and "--input" in str(error.value)


# --- names torch gives that a spec cannot: the [names] table -------------------------------------------------


class Stage(nn.Module):  # regnet's AnyStage: children named "block1-0", "block1-1"
    def __init__(self):
        super().__init__()
        for i in range(2):
            self.add_module(f"block1-{i}", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()))

    def forward(self, x):
        for block in self.children():
            x = block(x)
        return x


def test_paths_that_are_not_spec_names_are_escaped_and_mapped_back_so_the_state_dict_loads_strictly():
    module = nn.Sequential(nn.Conv2d(3, 4, 1), Stage())
    text = importer.import_module(module, [3, 8, 8])
    assert '[names]' in text and '"layer0" = "0"' in text and '"layer1.block1_0" = "1.block1-0"' in text
    exact(module, text, (3, 8, 8))  # build's modules carry torch's paths: 1.block1-0.0.weight


def test_the_names_table_is_checked_like_any_spec_table():
    base = '[model]\ninput = [4]\n[[layers]]\nname = "layer0"\ntype = "dense"\nout_features = 2\n'
    assert archcalc.loads(base + '[names]\nlayer0 = "0"\n').names == (("layer0", "0"),)
    for table, message in (('layer0 = "a.b"', "of 1 segment"), ('layer0 = "a b"', "of 1 segment"), ('"0x" = "0"', "not a usable name")):
        with pytest.raises(archcalc.SpecError) as error:
            archcalc.loads(base + f"[names]\n{table}\n")
        assert message in str(error.value)


# --- the written spec is read back; places in installed packages --------------------------------------------


def test_a_spec_archcalc_would_refuse_is_never_returned(monkeypatch):
    from archcalc.backends import importer as package

    def broken(layers, returned):
        return [package.Layer(layers[0].name, "add", {}, layers[0].inputs)]  # a sum of one tensor: refused

    monkeypatch.setattr(package, "fold_activations", broken)
    with pytest.raises(archcalc.ArchcalcError) as error:
        importer.import_module(nn.Sequential(nn.Linear(4, 2)), [4])
    assert "archcalc cannot read the spec written from it, so none is written" in str(error.value)


def test_places_in_installed_packages_are_kept_and_torchs_own_frames_skipped():
    trace = ('File "/usr/lib/python3/site-packages/torchvision/models/resnet.py", line 102, in forward\n'
             'File "/usr/lib/python3/site-packages/torch/nn/modules/conv.py", line 565, in forward\n')
    assert problems.place(trace, "node x", "/usr/lib/python3/site-packages/torch") == "torchvision/models/resnet.py:102"
    assert problems.place('File "/home/me/models.py", line 12, in forward\n', "node x", "/x/torch") == "models.py:12"
    assert problems.place("", "node conv_3", "/x/torch") == "node conv_3"


def test_problems_are_grouped_by_cause_most_frequent_first():
    listed = [problems.Problem("stochastic_depth(): no layer", f"features.{i}", "torchvision/ops/stochastic_depth.py:62")
              for i in range(5)] + [problems.Problem("sort(): no layer", "", "net.py:3")]
    text = str(problems.ImportFailed("Net", listed))
    assert text.index("5× stochastic_depth()") < text.index("1× sort()")
    assert "features.0 (torchvision/ops/stochastic_depth.py:62)" in text and "and 2 more" in text


@pytest.mark.parametrize("how", ["plain", "no_bias", "weights"])
def test_multihead_attention_without_a_mask_maps_in_torch_export_as_in_torch_fx(how):
    from tests.backends.test_torch_import import Attending

    if how == "weights":  # forward returns the attention weights, [1]: refused by both
        with pytest.raises(importer.ImportFailed) as error:
            importer.import_module(Attending(how), [6, 16], capture="export")
        assert "attn: its output [1] is read" in str(error.value)
        return
    fx = importer.import_module(Attending(how), [6, 16], capture="fx")
    export = importer.import_module(Attending(how), [6, 16], capture="export")
    assert archcalc.analyze(archcalc.loads(export)).to_dict() == archcalc.analyze(archcalc.loads(fx)).to_dict()


class Token(nn.Module):
    """A learned tensor at the top (a class token): listed by its own name, owner and all."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + self.token


def test_a_parameter_of_no_layer_is_named_plainly_by_torch_fx():
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Token(), [4], capture="fx")
    (problem,) = error.value.problems
    assert "reads a parameter or buffer of no layer (token)" in problem.cause and "\0" not in str(problem)


def test_a_parameter_read_by_an_add_is_a_parameter_layer_in_torch_export():
    text = importer.import_module(Token(), [4], capture="export")
    assert 'name = "token"\ntype = "parameter"\nshape = [4]\nbare = true\nexpand = false' in text
    exact(Token(), text, (4,))
