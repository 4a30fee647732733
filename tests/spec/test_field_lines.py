"""Issue 19: a spec error is placed at the field's own line (not the [[layers]] header's), names the
layer, and suggests archcalc's word for a type or field written as PyTorch or Keras write it."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import SpecError
from archcalc.cli.main import main
from archcalc.spec import positions

MODEL = "[model]\ninput = [3, 32, 32]\n"


def refused(text: str, **values) -> SpecError:
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.loads(text, path="net.toml"), **values)
    return caught.value


def line_of(text: str, fragment: str) -> int:
    """The line that holds `fragment`, counted from 1 (the one line that does)."""
    [number] = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return number


# (id, spec text, the fragment on the line the error must name, the field)
AT_THE_FIELD = [
    ("a size of zero, read when analysed", MODEL + '[[layers]]\ntype = "conv"\nkernel_size = 3\n\n# the channels\nout_channels = 0\n',
     "out_channels = 0", "out_channels"),
    ("a malformed formula, read when loaded", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = "3 +"\n',
     'kernel_size = "3 +"', "kernel_size"),
    ("a quoted key", MODEL + '[[layers]]\ntype = "conv"\n"out_channels" = 4\n\'stride\' = 0\nkernel_size = 3\n',
     "'stride' = 0", "stride"),
    ("after an array over several lines", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = [\n  3,\n  3,\n]\n'
     "padding = -1\n", "padding = -1", "padding"),
    ("after a multi-line string that looks like keys", '[model]\nname = """c\n[[layers]]\nstride = 5\n"""\ninput = [3, 8, 8]\n'
     '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 3\nstride = 0\n', "stride = 0", "stride"),
    ("the second layer", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 3\n'
     '[[layers]]\ntype = "pool"\nkernel_size = 2\npadding = 2\n', "padding = 2", "padding"),
    ("a shape error, placed at the field it names", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 33\n',
     "kernel_size = 33", "kernel_size"),
    ("an unknown field", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 3\nfilters = 4\n',
     "filters = 4", None),
    ("an unknown type", MODEL + '[[layers]]\nname = "fc1"\n\ntype = "linear"\nout_features = 3\n', 'type = "linear"', "type"),
    ("a bad name", MODEL + '[[layers]]\ntype = "flatten"\nname = "1a"\n', 'name = "1a"', "name"),
    ("from an unknown layer (found when the graph is expanded)", MODEL + '[[layers]]\ntype = "flatten"\n'
     '[[layers]]\ntype = "dense"\nout_features = 2\nfrom = "nowhere"\n', 'from = "nowhere"', "from"),
    ("the model's input", '[model]\nname = "x"\n\ninput = [3, 0, 32]\n[[layers]]\ntype = "flatten"\n', "input = [3, 0, 32]", "input"),
    ("the model's dtype", '[model]\ninput = [3]\ndtype = "float8"\n[[layers]]\ntype = "flatten"\n', 'dtype = "float8"', "dtype"),
    ("a var", MODEL + '[vars]\na = 1\nb = "1 +"\n[[layers]]\ntype = "flatten"\n', 'b = "1 +"', "b"),
    ("a block's layer", MODEL + '[blocks.b]\n[[blocks.b.layers]]\ntype = "conv"\nkernel_size = 3\nout_channels = "c"\n'
     '[[blocks.b.layers]]\ntype = "conv"\nkernel_size = 3\nstride = 0\nout_channels = 4\n'
     '[[layers]]\ntype = "block"\nblock = "b"\nc = 4\n', "stride = 0", "stride"),
    ("a block use's variable", MODEL + '[blocks.b]\n[[blocks.b.layers]]\ntype = "conv"\nkernel_size = 3\nout_channels = "c"\n'
     '[[layers]]\ntype = "block"\nblock = "b"\n\nc = "2 +"\n', 'c = "2 +"', "c"),
    ("a block use's repeat", MODEL + '[blocks.b]\n[[blocks.b.layers]]\ntype = "flatten"\n'
     '[[layers]]\ntype = "block"\nblock = "b"\nname = "x"\nrepeat = 0\n', "repeat = 0", "repeat"),
]


@pytest.mark.parametrize("text, fragment, field", [c[1:] for c in AT_THE_FIELD], ids=[c[0] for c in AT_THE_FIELD])
def test_an_error_is_placed_at_the_fields_own_line(text, fragment, field):
    error = refused(text)
    assert error.line == line_of(text, fragment), str(error)
    if field is not None:
        assert error.field == field
    assert str(error).startswith(f"net.toml:{error.line}: ")


def test_show_prints_the_fields_line(tmp_path):
    path = tmp_path / "net.toml"
    text = MODEL + '[[layers]]\nname = "fc1"\ntype = "dense"\n# a comment\nout_features = 0\n'
    path.write_text(text)
    result = CliRunner().invoke(main, ["show", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f'archcalc: {path}:7: layers[1] "fc1" (dense): out_features: must be at least 1')


# Written as PyTorch or Keras write it -> a fragment of the hint.
TYPES = [
    ("linear", "did you mean 'dense'"),
    ("Linear", "did you mean 'dense'"),
    ("nn.Linear", "did you mean 'dense'"),
    ("Dense", "did you mean 'dense'"),
    ("Conv2d", "did you mean 'conv'"),
    ("Conv2D", "did you mean 'conv'"),
    ("Conv1d", "did you mean 'conv'"),
    ("ConvTranspose2d", "did you mean 'conv_transpose'"),
    ("Conv2DTranspose", "did you mean 'conv_transpose'"),
    ("MaxPool2d", "'pool' with op = \"max\""),
    ("MaxPooling2D", "'pool' with op = \"max\""),
    ("avgpool", "'adaptive_pool' with op = \"avg\""),
    ("AvgPool2d", "or 'pool' with op = \"avg\""),
    ("AdaptiveAvgPool2d", "'adaptive_pool' with op = \"avg\""),
    ("GlobalAveragePooling2D", "output_size = 1"),
    ("BatchNorm2d", "did you mean 'batchnorm'"),
    ("BatchNormalization", "did you mean 'batchnorm'"),
    ("ReLU", "'activation' with function = \"relu\""),
    ("LeakyReLU", "function = \"leaky_relu\""),
    ("GELU", "function = \"gelu\""),
    ("Dropout", "did you mean 'dropout'"),
    ("Flatten", "did you mean 'flatten'"),
    ("LayerNorm", "did you mean 'layernorm'"),
    ("MultiheadAttention", "did you mean 'attention'"),
    ("Embedding", "did you mean 'embedding'"),
    ("LSTM", "did you mean 'lstm'"),
    ("UpSampling2D", "did you mean 'upsample'"),
    ("Sequential", "did you mean 'block'"),
    ("Input", "no layer: the input is [model]'s input"),
    ("convv", "did you mean 'conv'"),
]


@pytest.mark.parametrize("written, says", TYPES, ids=[t[0] for t in TYPES])
def test_a_torch_or_keras_type_gets_archcalcs_word(written, says):
    error = refused(MODEL + f'[[layers]]\ntype = "flatten"\n[[layers]]\nname = "head"\ntype = "{written}"\n')
    assert error.problem == f"unknown layer type {written!r}"
    assert says in error.hint
    assert (error.where, error.field, error.line) == ('layers[2] "head"', "type", 7)  # the layer, by index and name


def test_an_unknown_type_without_a_name_names_its_index_and_lists_the_types():
    error = refused(MODEL + '[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "zzzz"\n')
    assert error.where == "layers[2]" and error.hint.startswith("types: conv, dense")


# (layer type, other fields, the unknown field, a fragment of the hint)
FIELDS = [
    ("conv", "out_channels = 4", "kernel = 3", "did you mean 'kernel_size'?"),
    ("conv", "kernel_size = 3", "filters = 4", "did you mean 'out_channels'? (Keras's filters)"),
    ("conv", "out_channels = 4\nkernel_size = 3", "strides = 2", "did you mean 'stride'?"),
    ("conv", "out_channels = 4\nkernel_size = 3", "in_channels = 3", "archcalc takes in_channels from the input's shape"),
    ("conv", "out_channels = 4", "kernelSize = 3", "did you mean 'kernel_size'?"),
    ("pool", "", "pool_size = 2", "did you mean 'kernel_size'? (Keras's pool_size)"),
    ("dense", "", "units = 10", "did you mean 'out_features'? (Keras's units)"),
    ("dense", "", "in_features = 10", "archcalc takes in_features from the input's shape"),
    ("dropout", "", "rate = 0.5", "did you mean 'p'?"),
    ("activation", "", 'activation = "relu"', "valid: type, name, function,"),
    ("groupnorm", "", "groups = 2", "did you mean 'num_groups'?"),
]


@pytest.mark.parametrize("kind, others, written, says", FIELDS, ids=[f"{f[0]} {f[2]}" for f in FIELDS])
def test_a_torch_or_keras_field_gets_archcalcs_word(kind, others, written, says):
    text = MODEL + f'[[layers]]\ntype = "{kind}"\n{others}\n{written}\n'
    error = refused(text)
    assert error.problem == f"unknown field {written.split(' =')[0]!r}"
    assert says in error.hint
    assert error.line == line_of(text, written)


# The line finder reads hostile text in time linear in its length.
HOSTILE_TEXTS = [
    ("a 4 MiB line of spaces in brackets", "[" + " " * (4 * 2**20 - 2) + "\n"),
    ("spaces and a key that never ends", (" " * 9000 + "a" * 900 + "\n") * 400),
    ("headers that never close", ("[[" + "a." * 4000 + "\n") * 400),
    ("strings that never close", ('"' + "\\\\" * 4000 + "\n") * 400),
    ("triple quotes on every line", ('"""' * 3000 + "\n") * 400),
    ("brackets a million deep", "x = " + "[" * 10**6 + "\n"),
    ("200,000 keys", "a = 1\n" * 200_000),
]


@pytest.mark.parametrize("text", [t[1] for t in HOSTILE_TEXTS], ids=[t[0] for t in HOSTILE_TEXTS])
def test_finding_lines_is_linear_on_hostile_text(text):
    start = time.process_time()
    positions.scan(text)
    assert time.process_time() - start < 2.0  # CPU seconds; about 0.1 s each


def test_a_hostile_spec_is_still_refused_quickly():
    text = MODEL + '[expect]\n"params" = """' + ("x = 1\n[[layers]]\n" * 9_000) + '"""\n[[layers]]\ntype = "conv"\nkernel = 3\n'
    start = time.process_time()
    error = refused(text)
    assert time.process_time() - start < 5.0
    assert "unknown field 'kernel'" in error.problem and error.line == text.count("\n")
