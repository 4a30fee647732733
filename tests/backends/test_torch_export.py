"""export: readable nn.Module source that rebuilds the same network as build(), round-tripped through a file: every
shipped spec, one network per registered kind (archcalc's own modules written into the file), fine-tuned ones."""

import ast
import importlib.util
import itertools
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.build import sample  # noqa: E402
from archcalc.backends.export import source  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from archcalc.layers import LAYERS  # noqa: E402
from tests.backends.test_torch_build import STACKS, VALUES  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.layers.test_layers_oracle import spec  # noqa: E402
from tests.oracle.torch_nets import networks  # noqa: E402

FILES = itertools.count()


def load_class(path, name: str):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def round_trip(report, tmp_path, name="Net"):
    """Export, import the file, and compare with build(): parameters (which train), buffers, output shape and values."""
    # a new file each time: hypothesis reuses tmp_path, and a file rewritten within a second with the same
    # size would be loaded from its stale bytecode in __pycache__
    path = tmp_path / f"{name.lower()}_{next(FILES)}.py"
    path.write_text(source(report, name))
    exported = load_class(path, name)()
    built = archcalc.torch.build(report).float()
    assert sum(p.numel() for p in exported.parameters()) == report.totals["params"]
    shapes = lambda m: [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert shapes(exported) == shapes(built)
    exported.load_state_dict(built.state_dict(), strict=True)  # same names, so build's weights fit; then the same function
    trains = lambda m: [(k, p.requires_grad) for k, p in m.named_parameters()]
    assert trains(exported) == trains(built)  # frozen layers, peft's adapters
    x = sample(report, 2, torch.float32)  # token ids where the network embeds them
    with torch.no_grad():
        out, expected = exported.eval()(x), built.eval()(x)
    assert tuple(out.shape) == (2, *report.output)
    # a max-pooling window that covers only padding gives -inf in both, and NaN after it: the same function
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    return path.read_text()


# export writes each layer as an attribute: a stack named by dotted paths (torchvision's "features.0") is not exportable yet
EXPORTABLE = [n for n in STACKS if not any(".0" in line for line in (SPECS / n).read_text().splitlines() if line.startswith("name"))]


@pytest.mark.parametrize("name", [n for n in EXPORTABLE if n != "alexnet_symbolic.toml" or n in VALUES])
def test_every_shipped_spec_round_trips(name, tmp_path):
    report = archcalc.analyze(archcalc.load(SPECS / name), **VALUES.get(name, {}))
    round_trip(report, tmp_path)


# the sequence models at small sizes (tests/analysis/test_graph_specs.py exports the torchvision graphs)
SEQUENCES = {"gpt2.toml": dict(T=8, vocab=100, n_ctx=16, d=32, heads=4, n_layer=2),
             "vit_b_16.toml": dict(H=32, W=32, d=32, heads=4, mlp=64, n_layer=2, classes=10),
             "lstm_lm.toml": dict(T=8, ntoken=100, emsize=16, nhid=16)}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_the_sequence_specs_round_trip(name, tmp_path):
    text = round_trip(archcalc.analyze(archcalc.load(SPECS / name), **SEQUENCES[name]), tmp_path)
    assert "import archcalc" not in text and "archcalc." not in text.split('"""', 2)[2].split("# archcalc's own")[-1]


def test_gpt2_exports_from_the_command_line(tmp_path):
    """The command that once ended in a traceback: GPT-2's attention is archcalc's SelfAttention, written into the file."""
    path = tmp_path / "gpt2.py"
    result = CliRunner().invoke(main, ["export", str(SPECS / "gpt2.toml"), "--set", "T=8", "--set", "d=48", "--set", "n_layer=1",
                                       "--set", "vocab=50", "-o", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "class SelfAttention(nn.Module):" in text and "self.lm_head.weight = self.wte.weight  # tied" in text
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch.Size([2,", "8,", "50])", str(archcalc.analyze(archcalc.load(SPECS / "gpt2.toml"),
                                   T=8, d=48, n_layer=1, vocab=50).totals["params"])]


LORA = '\n[finetune]\nfreeze = ["emb"]\nlora = { rank = 2, alpha = 4, dropout = 0.0, targets = ["fc", "in_proj", "out"] }\n'
KIND_CASES = {  # small networks that hold every registered kind between them, and their modules' variants
    "conv and friends": spec((3, 8, 8), [
        dict(type="conv", out_channels=4, kernel_size=3, padding=1, activation="relu"),
        dict(type="batchnorm"), dict(type="conv_transpose", out_channels=4, kernel_size=2, stride=2),
        dict(type="instancenorm", affine=True), dict(type="groupnorm", num_groups=2), dict(type="lrn", size=3),
        dict(type="prelu", num_parameters=4), dict(type="upsample", scale_factor=2), dict(type="pool", op="max", kernel_size=2),
        dict(type="adaptive_pool", output_size=3), dict(type="identity"), dict(type="dropout", p=0.1),
        dict(type="stochastic_depth", p=0.2), dict(type="mean", dims=[1, 2], keepdim=True),
        dict(type="flatten"), dict(type="dense", out_features=6, activation="gelu"), dict(type="reshape", shape=[2, 3]),
        dict(type="activation", function="softmax", dim=-1), dict(type="quick_gelu"), dict(type="gelu_new")]),
    "sequence": spec((5,), [
        dict(name="emb", type="embedding", num_embeddings=11, embedding_dim=8),
        dict(type="lstm", hidden_size=6), dict(type="gru", hidden_size=8, bidirectional=True),
        dict(type="layernorm"), dict(type="rmsnorm"), dict(type="narrow", dim=0, start=1, length=3),
        dict(type="permute", dims=[1, 0]), dict(type="select", dim=1, index=0)]),
    "merges and parameters": spec((4, 8), [
        dict(name="pos", type="parameter", shape=[6, 8], length=4, **{"from": "input"}),
        dict(name="scale", type="parameter", shape=[1, 8], bare=True, expand=False, **{"from": "input"}),
        dict(name="cls", type="parameter", shape=[1, 8], **{"from": "input"}),
        dict(name="sum", type="add", **{"from": ["input", "pos"]}), dict(name="mul", type="mul", **{"from": ["sum", "scale"]}),
        dict(name="cat", type="concat", dim=0, **{"from": ["cls", "mul"]})]),
    "attention": spec((6, 16), [
        dict(name="a", type="attention", num_heads=4, use_cache=True),
        dict(name="b", type="attention", num_heads=4, kv_heads=2, causal=True, kernel="math"),
        dict(name="c", type="attention", num_heads=2, module="multihead"),
        dict(name="d", type="attention", num_heads=4, bias=False, causal=True, window=3)]),
    "t5": spec((6, 16), [
        dict(name="bias", type="relative_bias", num_heads=4, num_buckets=8, max_distance=20),
        dict(name="attn", type="attention", num_heads=4, bias=False, kernel="math", position_bias=True, **{"from": ["input", "bias"]})]),
    "llama": spec((6, 16), [
        dict(name="norm", type="rmsnorm", module="llama"), dict(name="rope", type="rotary", head_dim=4, **{"from": "input"}),
        dict(name="attn", type="attention", num_heads=4, kv_heads=2, module="llama", rotary=True, causal=True, out_bias=False,
             bias=True, **{"from": ["norm", "rope"]})]),
    "swin": spec((5, 7, 8), [dict(type="window_attention", num_heads=2, window_size=[3, 2], shift_size=[1, 1]),
                             dict(type="window_attention", num_heads=2, window_size=3, shift_size=1, cosine=True)]),
    "maxvit": spec((2, 4, 8), [dict(type="window_attention", module="maxvit", num_heads=2, window_size=2)]),
    "gpt2's conv1d": spec((4, 6), [dict(name="c", type="dense", out_features=5, transposed=True)]),
    "lora and frozen": spec((5,), [dict(name="emb", type="embedding", num_embeddings=11, embedding_dim=8),
                                   dict(name="attn", type="attention", num_heads=2, causal=True),
                                   dict(name="fc", type="dense", out_features=4),
                                   dict(name="out", type="dense", out_features=3, transposed=True)]) + LORA,
}


@pytest.mark.parametrize("case", KIND_CASES)
def test_every_kind_round_trips(case, tmp_path):
    text = round_trip(archcalc.analyze(archcalc.loads(KIND_CASES[case])), tmp_path)
    imported = [a.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom)]
    assert all(name in ("torch", "math") or name.startswith("torch.") for name in imported)  # standalone


def test_the_cases_hold_every_registered_kind():
    kinds = {row.kind for text in KIND_CASES.values() for row in archcalc.analyze(archcalc.loads(text)).rows}
    assert kinds == set(LAYERS)


def test_lora_reads_as_peft_builds_it():
    text = source(archcalc.analyze(archcalc.loads(KIND_CASES["lora and frozen"])))
    assert "self.attn = adapted(SelfAttention(8, 2, 2, causal=True), in_proj=LoraLinear(nn.Linear(8, 24), 2, 4.0))" in text
    assert "self.out = LoraLinear(Conv1D(4, 3), 2, 4.0)" in text and "freeze(self.emb)  # frozen (fine-tuning)" in text


def test_a_module_that_does_not_keep_its_arguments_is_refused(monkeypatch):
    """A module class whose constructor's argument export cannot read back: one SpecError naming the layer (exit 2)."""
    from archcalc.backends import modules

    original = modules.RotaryTables.__init__

    def forgetful(self, head_dim, theta=10000.0):
        original(self, head_dim, theta)
        del self.theta

    monkeypatch.setattr(modules.RotaryTables, "__init__", forgetful)
    with pytest.raises(archcalc.SpecError, match="keeps no 'theta'") as error:
        source(archcalc.analyze(archcalc.loads(KIND_CASES["llama"])))
    assert error.value.where == 'layer "rope" (rotary)'


def test_a_class_name_of_the_library_is_refused_or_avoided():
    report = archcalc.analyze(archcalc.loads(KIND_CASES["gpt2's conv1d"]))
    with pytest.raises(archcalc.SpecError, match="module class the exported file holds"):
        source(report, "Conv1D")
    named = archcalc.analyze(archcalc.loads(KIND_CASES["gpt2's conv1d"].replace("[model]", '[model]\nname = "Conv1D"')))
    assert "class Conv1DModel(nn.Module):" in source(named)


def test_alexnet_reads_like_the_course(tmp_path):
    text = round_trip(archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")), tmp_path, "AlexNet")
    assert "class AlexNet(nn.Module):" in text
    assert "self.conv1 = nn.Conv2d(3, 96, 11, stride=4, padding=2)" in text
    assert "x = torch.flatten(x, 1)" in text and "# B×9216" in text
    assert "x = F.relu(self.fc1(x))" in text and "self.drop1 = nn.Dropout(p=0.5)" in text
    assert "62,378,344 parameters" in text


def test_the_source_imports_only_torch_and_comments_every_line():
    text = source(archcalc.analyze(archcalc.load(SPECS / "lenet5.toml")))
    tree = ast.parse(text)
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and all(name == "torch" or name.startswith("torch.") for name in imported)  # math only where needed
    body = text.split("super().__init__()")[1].split("return x")[0]
    code = [line for line in body.splitlines() if line.strip() and not line.strip().startswith(("def ", "#"))]
    assert code and all("  # " in line for line in code)


def test_the_class_is_named_after_the_model():
    report = archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"), H=64, W=64, classes=10)
    assert "class AlexNetSymbolic(nn.Module):" in source(report)
    assert "class LeNet5(nn.Module):" in source(archcalc.analyze(archcalc.load(SPECS / "lenet5.toml")))


def test_the_exported_file_runs_as_a_script(tmp_path):
    path = tmp_path / "lenet.py"
    result = CliRunner().invoke(main, ["export", str(SPECS / "lenet5.toml"), "-o", str(path)])
    assert result.exit_code == 0, result.output
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch.Size([2,", "10])", "61706"]


def test_export_writes_to_stdout_with_dash():
    result = CliRunner().invoke(main, ["export", str(SPECS / "mlp_quiz.toml"), "-o", "-", "--class-name", "Quiz"])
    assert result.exit_code == 0
    assert "class Quiz(nn.Module):" in result.output and "nn.Linear(10, 200, bias=False)" in result.output


def test_a_bad_class_name_is_refused():
    result = CliRunner().invoke(main, ["export", str(SPECS / "mlp_quiz.toml"), "--class-name", "not a name"])
    assert result.exit_code == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(networks())
def test_drawn_networks_round_trip(tmp_path, text):
    round_trip(archcalc.analyze(archcalc.loads(text)), tmp_path)


def test_spec_text_cannot_escape_the_docstring():
    # specs come from strangers: a model name that closes the docstring must stay inside it
    text = '[model]\nname = "x\\"\\"\\"\\nimport os\\nos.remove(\\"f\\") #\\\\"\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n'
    exported = source(archcalc.analyze(archcalc.loads(text)))
    tree = ast.parse(exported)
    assert [type(n).__name__ for n in tree.body] == ["Expr", "Import", "Import", "ImportFrom", "ClassDef", "If"]
    assert 'import os\nos.remove("f")' in ast.get_docstring(tree).replace("\\n", "\n").replace('\\"', '"')
    assert not any(isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "remove" for n in ast.walk(tree))



ISSUE_10 = """[model]
input = [4, 6, 6]
[[layers]]
type = "conv"
out_channels = 6
kernel_size = 3
padding = 1
padding_mode = "reflect"
[[layers]]
type = "conv_transpose"
out_channels = 4
kernel_size = 2
stride = 2
[[layers]]
type = "groupnorm"
num_groups = 2
[[layers]]
type = "lrn"
size = 3
[[layers]]
type = "prelu"
num_parameters = 4
[[layers]]
type = "flatten"
start_dim = 1
[[layers]]
type = "permute"
dims = [1, 0]
[[layers]]
type = "layernorm"
[[layers]]
type = "gru"
hidden_size = 5
bidirectional = true
[[layers]]
type = "rmsnorm"
[[layers]]
type = "activation"
function = "leaky_relu"
negative_slope = 0.2
[[layers]]
type = "dense"
out_features = 3
activation = "gelu"
[[layers]]
type = "activation"
function = "softmax"
dim = -1
"""


def test_issue_10_kinds_round_trip(tmp_path):
    text = round_trip(archcalc.analyze(archcalc.loads(ISSUE_10)), tmp_path)
    for call in ("x.permute(0, 2, 1)", "nn.GRU(4, 5, batch_first=True, bidirectional=True)", "(x)[0]",
                 "F.leaky_relu(x, negative_slope=0.2)", "F.softmax(x, dim=-1)", "torch.flatten(x, 2)"):
        assert call in text


def test_a_spec_with_torch_names_loads_builds_state_dict(tmp_path):
    """[names]: the exported attributes are the spec's names (layer0), and build()'s state_dict, keyed by torch's
    paths (0.weight), loads strictly into them."""
    text = spec((4,), [dict(name="layer0", type="dense", out_features=3), dict(name="fc", type="dense", out_features=2)])
    report = archcalc.analyze(archcalc.loads(text + '[names]\n"layer0" = "0"\n'))
    path = tmp_path / "named.py"
    path.write_text(source(report, "Named"))
    exported, built = load_class(path, "Named")(), archcalc.torch.build(report)
    assert list(exported.state_dict()) == ["layer0.weight", "layer0.bias", "fc.weight", "fc.bias"]
    exported.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(2, 4)
    torch.testing.assert_close(exported(x), built(x))
