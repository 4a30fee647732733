"""import: a torch module traced into a spec, equal in every number; what cannot be mapped is listed, never counted as 0."""

import pytest

torch = pytest.importorskip("torch")

import json  # noqa: E402
from collections import OrderedDict  # noqa: E402

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends import importer  # noqa: E402
from archcalc.backends.export import source  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.conftest import ROOT, SPECS  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes  # noqa: E402

MODULES = ROOT / "tests" / "oracle" / "modules"
COURSE_ALEXNET = f"{MODULES / 'course_alexnet.py'}:AlexNet"


def numbers(report) -> dict:
    """Everything a report says about the network, its name and given values aside."""
    data = report.to_dict()
    return {key: data[key] for key in ("input", "output", "layers", "totals", "by_type", "memory")}


def imported(target: str, shape: list, **values):
    text = importer.import_module(importer.load_target(target), shape)
    return archcalc.analyze(archcalc.loads(text), **values), text


def test_the_notes_alexnet_class_is_specs_alexnet_in_every_number():
    report, text = imported(COURSE_ALEXNET, [3, 224, 224])
    assert numbers(report) == numbers(archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")))
    assert 'name = "fc3"' in text and "activation" not in text.split('name = "fc3"')[1]


def test_symbolic_input_gives_formulas_in_h_and_w():
    report, _ = imported(COURSE_ALEXNET, [3, "H", "W"])
    assert str(report.rows[0].output[1]) == "floor(H/4 - 7/4) + 1"
    assert report.totals["params"] != 62378344  # fc1's weights depend on H and W
    assert numbers(archcalc.analyze(report_spec := archcalc.loads(importer.import_module(
        importer.load_target(COURSE_ALEXNET), [3, "H", "W"])), H=224, W=224)) == numbers(
        archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")))
    assert report_spec.input[1].names == {"H"}


@pytest.mark.parametrize("name", ["lenet5.toml", "alexnet.toml", "mlp_quiz_biases.toml"])
def test_export_then_import_gives_the_same_numbers(name, tmp_path):
    report = archcalc.analyze(archcalc.load(SPECS / name))
    path = tmp_path / "net.py"
    path.write_text(source(report, "Net"))
    again, _ = imported(f"{path}:Net", list(report.input))
    assert numbers(again) == numbers(report)


class Unmappable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.odd = torch.nn.PixelShuffle(2)

    def forward(self, x):
        x = self.conv(x)
        x = torch.sort(x, dim=1).values
        x = self.odd(x * 2)
        return x


@pytest.mark.parametrize("capture, listed", [
    ("fx", ["sort()", ".values", "mul with a constant", "odd: PixelShuffle has no archcalc layer kind"]),
    ("export", ["aten.sort", "aten.mul with a constant", "odd: aten.pixel_shuffle"]),  # .values is no operation there
    ("auto", ["aten.sort", "aten.mul with a constant", "odd: aten.pixel_shuffle"]),  # the shorter list
])
def test_every_unmapped_operation_is_listed_with_its_line(capture, listed):
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Unmappable(), [3, 32, 32], capture=capture)
    text = str(error.value)
    assert len(error.value.problems) == len(listed), text
    assert all(item in text for item in listed), text
    assert text.count("test_torch_import.py:6") == len(listed)  # the source line of each (lines 66, 67)


def test_cli_writes_the_spec_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "alexnet.toml"
    runner = CliRunner()
    done = runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert archcalc.analyze(archcalc.load(out)).totals["params"] == 62378344
    again = runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out), "--force"]).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["nowhere.py:Net", "--input", "3,8,8"], "no such file"),
    ([COURSE_ALEXNET.replace(":AlexNet", ":Nope"), "--input", "3,8,8"], "has no 'Nope'"),
    ([COURSE_ALEXNET, "--input", "3,x y,8"], "cannot read 'x y' as a size"),
    ([COURSE_ALEXNET, "--input", "3,224,224", "--args", "{bad"], "not JSON"),
    ([COURSE_ALEXNET, "--input", "3,224,224", "--args", '{"width": 3}'], "building it failed"),
    (["Net", "--input", "3,8,8"], "FILE.py:NAME"),
])
def test_bad_targets_exit_2_with_one_message(args, message):
    done = CliRunner().invoke(main, ["import", *args])
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output


# --- graphs: module paths, from, merges, adaptive pooling ------------------------------------------

from tests.oracle import reference_nets  # noqa: E402


def strict_twin(module, text: str, shape: tuple):
    """build(spec) loads the module's state_dict with strict=True and computes the same outputs."""
    import archcalc.torch

    built = archcalc.torch.build(archcalc.loads(text))
    built.load_state_dict(module.state_dict(), strict=True)
    module.train(False)
    built.train(False)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(built(x), module(x))


def test_resnet18_imports_equal_to_specs_resnet18_and_loads_its_weights_strictly():
    module = reference_nets.resnet18()
    text = importer.import_module(module, [3, 224, 224])
    report = archcalc.analyze(archcalc.loads(text))
    assert numbers(report) == numbers(archcalc.analyze(archcalc.load(SPECS / "resnet18.toml")))
    # the BasicBlocks recovered: one block for the plain ones (layer1 twice in a row: a repeat), one with the projection
    assert text.count("\n[blocks.") == 2 and 'block = "basicblock"\nrepeat = 2' in text
    assert 'name = "layer2.0"\ntype = "block"\nblock = "basicblock_2"' in text
    strict_twin(module, text, (3, 64, 64))
    flat = importer.import_module(module, [3, 224, 224], blocks=False)
    assert "[blocks." not in flat and 'name = "layer2.0.downsample.0"' in flat
    assert numbers(archcalc.analyze(archcalc.loads(flat))) == numbers(report)


def test_resnet18_with_symbols_is_specs_resnet18_at_224():
    text = importer.import_module(reference_nets.resnet18(), [3, "H", "W"])
    spec = archcalc.loads(text)
    assert spec.input[1].names == {"H"}
    assert numbers(archcalc.analyze(spec, H=224, W=224)) == numbers(archcalc.analyze(archcalc.load(SPECS / "resnet18.toml")))


def test_imported_resnet18_verifies_green_against_torch():
    import archcalc.torch

    text = importer.import_module(reference_nets.resnet18(), [3, 32, 32])
    checks = archcalc.torch.verify(archcalc.analyze(archcalc.loads(text), B=2))
    assert checks and [c for c in checks if not c.ok] == []


def test_unet_with_concat_skips_imports_equal_to_specs_unet():
    module = reference_nets.unet()
    ours = archcalc.analyze(archcalc.load(SPECS / "unet.toml"))
    text = importer.import_module(module, list(ours.input))
    report = archcalc.analyze(archcalc.loads(text))
    assert report.totals == ours.totals
    # the same layers in the same order and wiring; only layers without state may be named otherwise (cat)
    shapes = lambda r: [(row.layer.kind, row.input, row.output) for row in r.rows]
    assert shapes(report) == shapes(ours)
    assert [row.name for row in report.rows if row.params] == [row.name for row in ours.rows if row.params]
    strict_twin(module, text, (3, 64, 64))


class Functional(torch.nn.Module):
    """Functional calls beside modules: a shared ReLU called three times, in-place adds, cat, mul."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU(inplace=True)
        self.left = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.right = torch.nn.Conv2d(8, 8, 1)
        self.gate = torch.nn.Conv2d(16, 16, 1)
        self.head = torch.nn.Linear(16 * 4, 10)

    def forward(self, x):
        x = self.relu(self.stem(x))
        skip = x
        x = self.relu(self.left(x))  # folds into left
        x += skip  # in place: an add
        y = self.right(skip)
        both = torch.cat([x, y], dim=1)
        gated = both * torch.sigmoid(self.gate(F.adaptive_avg_pool2d(both, 1)))
        out = self.relu(F.max_pool2d(gated, 2))  # the relu after a pool cannot fold: its own layer
        out = F.avg_pool2d(out, kernel_size=3, stride=2, padding=1)
        out = F.adaptive_avg_pool2d(out, (2, 2))
        out = out.view(out.size(0), -1)
        return self.head(F.dropout(out, 0.25, self.training))


F = torch.nn.functional


def test_functional_calls_map_like_their_modules():
    from torch.utils.flop_counter import FlopCounterMode

    module = Functional()
    text = importer.import_module(module, [3, 16, 16])
    report = archcalc.analyze(archcalc.loads(text), B=2)
    kinds = [row.layer.kind for row in report.rows]
    assert kinds.count("add") == 1 and kinds.count("concat") == 1 and kinds.count("mul") == 1
    assert kinds.count("adaptive_pool") == 2 and kinds.count("pool") == 2 and "dropout" in kinds
    names = [row.name for row in report.rows]
    assert len(set(names)) == len(names) and "relu_2" in names  # the shared relu: two calls folded, the third its own
    assert [row.layer.activation for row in report.rows[:2]] == ["relu", "relu"]
    assert report.totals["params"] == sum(p.numel() for p in module.parameters())
    x = torch.randn(2, 3, 16, 16)
    with FlopCounterMode(display=False) as counter:
        module(x)
    assert report.totals["flops"] * 2 == counter.get_total_flops()
    strict_twin(module, text, (3, 16, 16))


class SharedWeights(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x)), x


def test_shared_weights_and_two_outputs_are_listed():
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(SharedWeights(), [4, 8, 8])
    assert "2× called 2 times with the same weights" in str(error.value) and "at conv (" in str(error.value)


GPT_BLOCK = f"{MODULES / 'gpt_block.py'}:Block"  # attention as explicit matmuls (nanoGPT's layout)
GPT_MHA_BLOCK = f"{MODULES / 'gpt_mha_block.py'}:Block"  # nn.MultiheadAttention, nn.LayerNorm, nn.Linear, nn.GELU


def test_a_gpt2_block_with_explicit_matmuls_is_one_attention_layer():
    """nanoGPT's attention written out (split, views, q @ kᵀ, the scale, masked_fill of a causal buffer, softmax, @ v,
    the heads merged, c_proj): one attention layer, kernel "math", causal read from the buffer's values. Exact but for
    masked_fill's bool mask [T, T] (once for the batch), which archcalc's additive causal mask does not keep."""
    module = importer.load_target(GPT_BLOCK)
    spec = archcalc.loads(importer.import_module(module, [16, 64]))
    attention = next(row for row in archcalc.analyze(spec).rows if row.layer.kind == "attention")
    assert (attention.layer.num_heads, attention.layer.kernel, attention.layer.causal) == (4, "math", True)
    for batch in (1, 2):
        report, x = archcalc.analyze(spec, B=batch), torch.randn(batch, 16, 64)
        assert report.totals["params"] == sum(p.numel() for p in module.parameters())
        assert report.totals["flops"] * batch == flops(module, x)
        assert report.memory.saved.at(batch) + 16 * 16 == saved_bytes(module, x)


def test_attention_with_a_mask_that_is_not_causal_is_listed(tmp_path):
    path = tmp_path / "banded.py"
    path.write_text((MODULES / "gpt_block.py").read_text().replace("torch.tril(torch.ones(context, context))",
                                                                   "torch.ones(context, context).triu(-2).tril()"))
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(importer.load_target(f"{path}:Block"), [16, 64])
    assert "neither causal nor empty" in str(error.value)


def gpt_mha(**options):
    return importer.load_target(GPT_MHA_BLOCK, json.dumps(options))


def test_a_gpt2_block_with_multihead_attention_imports_as_attention():
    module = gpt_mha()
    text = importer.import_module(module, ["T", 64])
    assert 'name = "attn"\ntype = "attention"\nnum_heads = 4\ncausal = true\n' in text  # need_weights=False: flash
    report = archcalc.analyze(archcalc.loads(text))
    assert [row.layer.kind for row in report.rows] == ["layernorm", "attention", "add", "layernorm", "dense", "dense", "add"]
    assert report.rows[4].layer.activation == "gelu"
    assert report.totals["params"] == sum(p.numel() for p in module.parameters())  # T-free
    assert [str(row.output) for row in report.rows] == ["(T, 64)"] * 4 + ["(T, 256)", "(T, 64)", "(T, 64)"]
    at = archcalc.analyze(archcalc.loads(importer.import_module(module, [16, 64])))
    assert numbers(archcalc.analyze(archcalc.loads(text), T=16)) == numbers(at)
    strict_twin(module, text.replace('"T"', "16"), (16, 64))  # in_proj_weight, in_proj_bias, out_proj.*: strict


@pytest.mark.parametrize("need_weights", [True, False])
def test_a_gpt2_block_with_multihead_attention_has_torchs_flops_per_row(need_weights):
    """need_weights (torch's default): MultiheadAttention computes the weights with bmm, counted, and the spec's
    kernel is math. need_weights=False: scaled_dot_product_attention, which FlopCounterMode counts as 0 on the
    CPU: QKᵀ and AV (2·T²·d MACs, 2 FLOPs each) are added to its count, as attention.py counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    b, t, d = 2, 12, 64
    module = gpt_mha(need_weights=need_weights)
    text = importer.import_module(module, [t, d])
    assert ('kernel = "math"' in text) == need_weights
    report = archcalc.analyze(archcalc.loads(text), B=b)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.train()(torch.randn(b, t, d))  # training: the path that counts (eval's fused one is missed); p = 0
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    missed = 0 if need_weights else 2 * 2 * t * t * d
    assert counts["Block.attn"] + b * missed == b * report.rows[1].flops
    for row in report.rows:
        if row.layer.kind == "dense":
            assert counts[f"Block.{row.name}"] == b * row.flops
    assert counts["Global"] + b * missed == b * report.totals["flops"]


@pytest.mark.parametrize("options", [{}, {"need_weights": True}, {"dropout": 0.1}])
def test_a_gpt2_block_imports_and_verifies(options):
    import archcalc.torch

    text = importer.import_module(gpt_mha(**options), [8, 64])
    checks = archcalc.torch.verify(archcalc.analyze(archcalc.loads(text), B=2))
    assert checks and [c for c in checks if not c.ok] == []


def test_a_stack_of_gpt2_blocks_reads_each_mask_at_its_own_place_and_becomes_one_block():
    block = type(gpt_mha())
    module = torch.nn.Sequential(OrderedDict(h0=block(), h1=block()))  # named: the state_dict keys are the spec's
    text = importer.import_module(module, [8, 64])
    assert text.count("\n[blocks.") == 1 and text.count('type = "attention"\nnum_heads = 4\ncausal = true') == 1
    strict_twin(module, text, (8, 64))


class Attending(torch.nn.Module):
    """One nn.MultiheadAttention called in a way given by `how`."""

    def __init__(self, how: str, context: int = 6):
        super().__init__()
        self.how = how
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=how != "seq_first", bias=how != "no_bias")
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).triu(1), persistent=False)  # not in state_dict

    def forward(self, x):
        if self.how == "buffer":
            return self.attn(x, x, x, attn_mask=self.mask, need_weights=False)[0]
        if self.how == "is_causal":
            return self.attn(x, x, x, attn_mask=self.mask, is_causal=True, need_weights=False)[0]
        if self.how == "backwards":  # the mask of the future only: not causal
            return self.attn(x, x, x, attn_mask=self.mask.T.triu(1).T, need_weights=False)[0]
        if self.how == "cross":
            return self.attn(x, x * 2, x, need_weights=False)[0]
        if self.how == "weights":
            return self.attn(x, x, x)[1]
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("how, fields", [
    ("plain", {"num_heads": 2}), ("no_bias", {"num_heads": 2, "bias": False}),
    ("buffer", {"num_heads": 2, "causal": True}), ("is_causal", {"num_heads": 2, "causal": True}),
])
def test_multihead_attention_fields_from_the_module_and_the_call(how, fields):
    module = Attending(how)
    text = importer.import_module(module, [6, 16])
    layer = archcalc.analyze(archcalc.loads(text)).rows[0].layer
    assert layer.kind == "attention" and {f: getattr(layer, f) for f in fields} == fields
    assert layer.causal == fields.get("causal", False)
    strict_twin(module, text, (6, 16))


@pytest.mark.parametrize("how, shape, message", [
    ("seq_first", [6, 16], "MultiheadAttention(batch_first=False) reads [T, B, d]"),
    ("cross", [6, 16], "not one tensor (cross-attention)"),
    ("backwards", [6, 16], "attn_mask is not the causal mask"),
    ("buffer", [5, 16], "attn_mask of shape [6, 6] for T = 5"),
    ("buffer", ["T", 16], "a fixed-size buffer needs T given as its size"),
    ("weights", [6, 16], "attn: its output [1]: archcalc's attention gives its output [0]"),
])
def test_multihead_attention_that_is_not_causal_self_attention_is_refused(how, shape, message):
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Attending(how), shape)
    assert message in str(error.value) and "test_torch_import.py:" in str(error.value)


def rows(report) -> list:
    """Each row's numbers and wiring by position; layers without state may carry other names after a round trip."""
    return [(row.layer.kind, row.input, row.output, row.params, row.macs, row.name if row.params else None)
            for row in report.rows]


@pytest.mark.parametrize("name", ["resnet18.toml", "unet.toml", "mobilenet_v2.toml"])
def test_graph_spec_export_then_import_gives_the_same_numbers(name, tmp_path):
    import archcalc.torch

    report = archcalc.analyze(archcalc.load(SPECS / name))
    path = tmp_path / "net.py"
    path.write_text(source(report, "Net"))
    exported = importer.load_target(f"{path}:Net")
    exported.load_state_dict(archcalc.torch.build(report).state_dict(), strict=True)  # export keeps the paths
    again, text = imported(f"{path}:Net", list(report.input))
    assert again.totals == report.totals and again.memory.to_dict() == report.memory.to_dict()
    assert rows(again) == rows(report)
    strict_twin(exported, text, (3, 32, 32))


def test_cli_imports_a_factory_function_with_blocks_or_flat(tmp_path):
    target = f"{ROOT / 'tests' / 'oracle' / 'reference_nets.py'}:resnet18"
    runner = CliRunner()
    folded, flat = tmp_path / "r.toml", tmp_path / "flat.toml"
    assert runner.invoke(main, ["import", target, "--input", "3,224,224", "-o", str(folded)]).exit_code == 0
    assert runner.invoke(main, ["import", target, "--input", "3,224,224", "-o", str(flat), "--flat"]).exit_code == 0
    assert "[blocks." in folded.read_text() and "[blocks." not in flat.read_text()
    assert numbers(archcalc.analyze(archcalc.load(folded))) == numbers(archcalc.analyze(archcalc.load(flat)))
    done = runner.invoke(main, ["import", target, "--input", "3,224,224", "--args", "[10]"])
    assert done.exit_code == 2 and "building it failed" in done.output


class Options(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x):
        x = F.gelu(self.fc2(F.leaky_relu(self.fc1(x), 0.2)), approximate="tanh")
        return F.softmax(F.elu(x), dim=-1)


def test_functional_activation_options_are_kept_never_dropped():
    text = importer.import_module(Options(), [8])
    assert "negative_slope = 0.2" in text and 'approximate = "tanh"' in text and "dim = -1" in text
    strict_twin(Options(), text, (8,))


class Pair(torch.nn.Module):
    def __init__(self, cin: int, cout: int, act=torch.nn.ReLU):
        super().__init__()
        self.conv, self.bn, self.act = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), act()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Stages(torch.nn.Module):
    """Pairs in a row (a repeat, the first wider), one wider (a variable), one with GELU (another field: not the same block)."""

    def __init__(self):
        super().__init__()
        self.stage = torch.nn.Sequential(Pair(3, 16), Pair(16, 8), Pair(8, 8))
        self.wide = Pair(8, 16)
        self.other = Pair(16, 16, torch.nn.GELU)

    def forward(self, x):
        return self.other(self.wide(self.stage(x)))


def test_blocks_only_where_layers_wiring_and_fields_agree():
    text = importer.import_module(Stages(), [3, 16, 16])
    assert text.count("\n[blocks.") == 1 and "[blocks.pair]  # variables: conv_out_channels" in text
    assert 'name = "stage"\ntype = "block"\nblock = "pair"\nrepeat = 3\nconv_out_channels = "16 if index == 0 else 8"' in text
    assert 'name = "wide"\ntype = "block"\nblock = "pair"\nconv_out_channels = 16' in text
    assert 'name = "other.bn"\ntype = "batchnorm"\nactivation = "gelu"' in text  # flat: no other instance like it
    flat = importer.import_module(Stages(), [3, 16, 16], blocks=False)
    assert numbers(archcalc.analyze(archcalc.loads(text))) == numbers(archcalc.analyze(archcalc.loads(flat)))
    strict_twin(Stages(), text, (3, 16, 16))


def test_unet_up_reads_two_tensors_so_only_its_double_convolutions_are_blocks():
    text = importer.import_module(reference_nets.unet(), [3, 64, 64])
    assert text.count("\n[blocks.") == 1 and "[blocks.doubleconv]" in text
    assert 'name = "up1.cat"' in text  # Up reads x and the skip: flat layers around a doubleconv use


def test_activation_modules_with_torch_defaults_fold_and_others_keep_their_options():
    import archcalc.torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 4), torch.nn.LeakyReLU(0.2))
    text = importer.import_module(module, [4])
    report = archcalc.analyze(archcalc.loads(text))
    assert [row.layer.kind for row in report.rows] == ["dense", "dense", "activation"]
    assert report.rows[0].layer.activation == "gelu" and float(report.rows[2].layer.negative_slope) == 0.2
    assert [row.name for row in report.rows] == ["layer0", "layer2", "layer3"]  # torch's 0, 2, 3: a name starts with a letter
    assert '[names]' in text and '"layer0" = "0"' in text  # and build names the modules by torch's paths again
    built = archcalc.torch.build(archcalc.loads(text))
    built.load_state_dict(module.state_dict(), strict=True)
    x = torch.randn(3, 4)
    torch.testing.assert_close(built(x), module(x))


class Options2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3, track_running_stats=False, eps=1e-3)
        self.pool = torch.nn.AvgPool2d(2, count_include_pad=False, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)

    def forward(self, x):
        return self.up(self.pool(self.bn(x)))


def test_torch_options_a_layer_kind_lacks_are_listed_never_dropped():
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Options2(), [3, 8, 8])
    text = str(error.value)
    assert "bn: BatchNorm2d(track_running_stats=False): archcalc's batchnorm has no track_running_stats" in text
    assert "pool: AvgPool2d(count_include_pad=False)" in text
    assert "up: Upsample" not in text  # upsample has align_corners (issue 18)
    assert "eps" not in text  # eps changes no number archcalc gives


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "densenet121"])
def test_reference_nets_import_with_the_shipped_specs_numbers(name):
    module = getattr(reference_nets, name)()
    ours = archcalc.analyze(archcalc.load(SPECS / f"{name}.toml"))
    text = importer.import_module(module, list(ours.input))
    report = archcalc.analyze(archcalc.loads(text))
    assert report.totals == ours.totals and report.memory.to_dict() == ours.memory.to_dict()
    assert rows(report) == rows(ours)  # stateless merge layers and pools may be named otherwise (cat, pool)
    strict_twin(module, text, (3, 64, 64))


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x, mask=None):
        return self.fc(x)  # an argument for the interface, unused


def test_a_second_argument_is_listed_only_where_it_is_read():
    text = importer.import_module(TwoInputs(), [4])
    assert archcalc.analyze(archcalc.loads(text)).totals["params"] == 20
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Reads2(), [4])
    assert "add() reads forward's argument 'y'" in str(error.value)


class Reads2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x, y):
        return self.fc(x) + y
