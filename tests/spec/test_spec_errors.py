"""Every kind of bad input refused with one clear error: through the library (SpecError's fields)
and through `archcalc show` (exit status 2, one or two lines on stderr, never a traceback)."""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import SpecError
from archcalc.cli.main import main
from archcalc.core import num

MODEL = "[model]\ninput = [3, 32, 32]\n"  # two lines: a first [[layers]] below it is on line 3
FLAT = "[model]\ninput = [10]\n"


def layer(kind: str, **fields) -> str:
    """One [[layers]] table; values are written as TOML literals (strings quoted by the caller)."""
    return "[[layers]]\n" + f'type = "{kind}"\n' + "".join(f"{key} = {value}\n" for key, value in fields.items())


CONV = {"out_channels": 4, "kernel_size": 3}


@dataclass
class Case:
    id: str
    text: str
    problem: str  # a fragment of the problem
    where: str | None = None
    field: str | None = None
    line: int | None = None
    hint: str | None = None  # a fragment of the hint
    values: dict = dataclasses.field(default_factory=dict)  # analyze(**values), show --set NAME=VALUE


CASES = [
    # the file as a whole
    Case("not TOML", "this is not toml [", "not valid TOML: ", hint="https://toml.io"),
    Case("a bare key", "[model]\ninput = [3]\nlayers", "not valid TOML"),
    Case("empty", "", "empty spec", hint="a spec needs a [model] table"),
    Case("only comments", "# nothing here\n\n", "empty spec"),
    Case("nested too deeply", "[model]\ninput = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    Case("unknown table", MODEL + "[foo]\nx = 1\n" + layer("flatten"), "unknown table 'foo'",
         hint="valid: model, vars, layers, blocks, expect"),
    Case("misspelt table", MODEL + "[varz]\nx = 1\n" + layer("flatten"), "unknown table 'varz'", hint="did you mean 'vars'?"),
    Case("no [model]", layer("flatten"), "missing [model] table"),
    Case("[model] not a table", 'model = "x"\n' + layer("flatten"), "'model' must be a table",
         hint="write [model] on a line of its own"),
    Case("no input", '[model]\nname = "x"\n' + layer("flatten"), "missing 'input'", "[model]", "input",
         hint="input = [3, 224, 224]"),
    Case("input not a list", '[model]\ninput = "3x32"\n' + layer("flatten"), "expected a list of 1 to 4 sizes",
         "[model]", "input"),
    Case("input of five axes", "[model]\ninput = [1, 2, 3, 4, 5]\n" + layer("flatten"), "expected a list of 1 to 4 sizes"),
    Case("input of zero", "[model]\ninput = [3, 0, 32]\n" + layer("flatten"), "must be at least 1, got 0", "[model]", "input"),
    Case("input of a half", "[model]\ninput = [3, 32.5, 32]\n" + layer("flatten"), "must be a whole number, got 65/2",
         "[model]", "input"),
    Case("input of a boolean", "[model]\ninput = [3, true]\n" + layer("flatten"), "got a boolean true", "[model]", "input"),
    Case("unknown model key", "[model]\ninputs = [3]\n" + layer("flatten"), "unknown key 'inputs'", "[model]",
         hint="did you mean 'input'?"),
    Case("model name not a string", "[model]\nname = 3\ninput = [3]\n" + layer("flatten"), "expected a string, got 3",
         "[model]", "name"),
    Case("no layers", MODEL, "no layers", hint="add at least one [[layers]] table"),
    Case("unknown dtype", '[model]\ninput = [3]\ndtype = "float8"\n' + layer("flatten"), "unknown value 'float8'",
         "[model]", "dtype", hint="did you mean 'float64'?"),
    # [vars] and given values (--set)
    Case("vars in a circle", MODEL + '[vars]\na = "b + 1"\nb = "a + 1"\n' + layer("dense", out_features='"a"'),
         "the vars refer to each other in a circle: a -> b -> a", "[vars]", "a"),
    Case("a var that is itself", MODEL + '[vars]\na = "2 * a"\n' + layer("flatten"),
         "in a circle: a -> a", "[vars]", "a"),
    Case("a var that is a boolean", MODEL + "[vars]\na = true\n" + layer("flatten"), "got a boolean true", "[vars]", "a"),
    Case("a var with a bad name", MODEL + '[vars]\n"a b" = 1\n' + layer("flatten"), "'a b' is not a usable name",
         "[vars]", "a b"),
    Case("a var dividing by zero", MODEL + '[vars]\na = "1 / 0"\n' + layer("flatten"), "division by zero", "[vars]", "a"),
    Case("--set of an unknown name", MODEL + layer("flatten"), "the spec has no name 'foo'", "values", "foo",
         hint="its names are B", values={"foo": "3"}),
    Case("--set of something to run", MODEL + layer("conv", out_channels='"n"', kernel_size=3),
         "calling __import__() is not allowed", "values", "n", values={"n": "__import__('os')"}),
    Case("--set of a zero size", MODEL + layer("conv", out_channels='"n"', kernel_size=3),
         "must be at least 1, got 0 (n = 0)", 'layers[1] "conv1" (conv)', "out_channels", 5, values={"n": "0"}),
    Case("a batch of zero", MODEL + layer("flatten"), "must be at least 1, got 0", "values", "B", values={"B": "0"}),
    Case("a batch of a half", MODEL + layer("flatten"), "must be a whole number, got 5/2", "values", "B",
         values={"B": "2.5"}),
    # layer types and fields
    Case("unknown layer type", MODEL + layer("convv"), "unknown layer type 'convv'", "layers[1]", "type", 4,
         hint="did you mean 'conv'?"),
    Case("a layer type that is a number", MODEL + "[[layers]]\ntype = 3\n", "unknown layer type 3", "layers[1]", "type"),
    Case("no layer type", MODEL + "[[layers]]\nout_channels = 4\n", "missing 'type'", "layers[1]", "type", 3,
         hint="one of conv, dense"),
    Case("unknown field", MODEL + layer("conv", out_channels=4, kernel=3), "unknown field 'kernel'",
         'layers[1] "conv1" (conv)', None, 6, hint="did you mean 'kernel_size'?"),
    Case("missing field", MODEL + layer("conv", kernel_size=3), "missing: this field has no default",
         'layers[1] "conv1" (conv)', "out_channels", 3, hint="a conv layer needs out_channels"),
    Case("zero out_channels", MODEL + layer("conv", out_channels=0, kernel_size=3), "must be at least 1, got 0",
         'layers[1] "conv1" (conv)', "out_channels", 5),
    Case("negative kernel", MODEL + layer("conv", out_channels=4, kernel_size=-3), "must be at least 1, got -3",
         'layers[1] "conv1" (conv)', "kernel_size"),
    Case("zero kernel on one axis", MODEL + layer("conv", out_channels=4, kernel_size="[3, 0]"),
         "must be at least 1, got 0", 'layers[1] "conv1" (conv)', "kernel_size"),
    Case("zero stride", MODEL + layer("pool", kernel_size=2, stride=0), "must be at least 1, got 0",
         'layers[1] "pool1" (pool)', "stride"),
    Case("negative stride", MODEL + layer("conv", **CONV, stride=-1), "must be at least 1, got -1",
         'layers[1] "conv1" (conv)', "stride"),
    Case("negative padding", MODEL + layer("conv", **CONV, padding=-1), "must be at least 0, got -1",
         'layers[1] "conv1" (conv)', "padding"),
    Case("zero dilation", MODEL + layer("conv", **CONV, dilation=0), "must be at least 1, got 0",
         'layers[1] "conv1" (conv)', "dilation"),
    Case("zero out_features", FLAT + layer("dense", out_features=0), "must be at least 1, got 0",
         'layers[1] "dense1" (dense)', "out_features"),
    Case("a size of a half", MODEL + layer("conv", out_channels='"7 / 2"', kernel_size=3),
         "must be a whole number, got 7/2", 'layers[1] "conv1" (conv)', "out_channels"),
    Case("a size of 3.5", MODEL + layer("conv", out_channels=3.5, kernel_size=3), "must be a whole number, got 7/2",
         'layers[1] "conv1" (conv)', "out_channels"),
    Case("a boolean for a number", MODEL + layer("conv", out_channels="true", kernel_size=3),
         "expected a number or an expression, got a boolean true", 'layers[1] "conv1" (conv)', "out_channels"),
    Case("a boolean in a list", MODEL + layer("conv", out_channels=4, kernel_size="[3, true]"),
         "got a boolean true", 'layers[1] "conv1" (conv)', "kernel_size"),
    Case("a list for a number", MODEL + layer("conv", out_channels="[4]", kernel_size=3),
         "expected a number or an expression, got a list [4]", 'layers[1] "conv1" (conv)', "out_channels"),
    Case("a table for a number", FLAT + layer("dense", out_features="{ n = 3 }"), "got a table",
         'layers[1] "dense1" (dense)', "out_features"),
    Case("a list for groups", MODEL + layer("conv", **CONV, groups="[1, 3]"), "got a list",
         'layers[1] "conv1" (conv)', "groups"),
    Case("a number for a flag", MODEL + layer("conv", **CONV, bias=1), "expected true or false, got int 1",
         'layers[1] "conv1" (conv)', "bias"),
    Case("a string for a flag", MODEL + layer("pool", kernel_size=2, ceil_mode='"yes"'),
         "expected true or false, got a string 'yes'", 'layers[1] "pool1" (pool)', "ceil_mode"),
    Case("four kernel sizes", MODEL + layer("conv", out_channels=4, kernel_size="[3, 3, 3, 3]"),
         "expected one value per spatial axis (1 to 3), got 4", 'layers[1] "conv1" (conv)', "kernel_size"),
    Case("three kernel sizes on a 2-D input", MODEL + layer("conv", out_channels=4, kernel_size="[3, 3, 3]"),
         "gives 3 values, but the input has 2 spatial axes", 'layers[1] "conv1" (conv)', "kernel_size",
         hint="give one value, or one per axis"),
    Case("a capitalised word", MODEL + layer("conv", **CONV, padding='"Same"'), "unknown value 'Same'",
         'layers[1] "conv1" (conv)', "padding", hint="write 'same'"),
    Case("unknown activation", MODEL + layer("conv", **CONV, activation='"rellu"'), "unknown value 'rellu'",
         'layers[1] "conv1" (conv)', "activation", hint="did you mean 'relu'?"),
    Case("unknown pooling op", MODEL + layer("pool", op='"mean"', kernel_size=2), "unknown value 'mean'",
         'layers[1] "pool1" (pool)', "op"),
    Case("an expression that calls", MODEL + layer("conv", out_channels='"open(\'x\')"', kernel_size=3),
         "calling open() is not allowed", 'layers[1] "conv1" (conv)', "out_channels", 5),
    Case("a tower of powers", MODEL + layer("conv", out_channels='"10**10**10**10"', kernel_size=3),
         "exponents must be whole numbers", 'layers[1] "conv1" (conv)', "out_channels", 5,
         hint="towers of powers are refused"),
    # names
    Case("duplicate names", MODEL + layer("flatten", name='"a"') + layer("flatten", name='"a"'),
         "the name 'a' is already taken by layers[1]", 'layers[2] "a" (flatten)', "name", 8,
         hint="give each layer its own name"),
    Case("a name taken by a default name", MODEL + layer("flatten", name='"conv1"') + layer("conv", **CONV),
         "the name 'conv1' is already taken by layers[1]", 'layers[2] "conv1" (conv)', "name",
         hint="named 'conv1' by default"),
    Case("a name that is not an identifier", MODEL + layer("flatten", name='"1a"'), "'1a' is not a usable name",
         'layers[1] "1a" (flatten)', "name", 5, hint="letters, digits and underscores"),
    Case("a name with a space", MODEL + layer("flatten", name='"fc 1"'), "'fc 1' is not a usable name"),
    Case("a keyword for a name", MODEL + layer("flatten", name='"class"'), "'class' is not a usable name"),
    Case("a function for a name", MODEL + layer("flatten", name='"floor"'), "'floor' is not a usable name"),
    Case("a number for a name", MODEL + layer("flatten", name=3), "3 is not a usable name"),
    # values that only the shapes can refuse
    Case("groups not dividing in_channels", MODEL + layer("conv", **CONV, groups=2),
         "groups = 2 does not divide in_channels = 3", 'layers[1] "conv1" (conv)', "groups", 7,
         hint="must both divide by groups"),
    Case("groups not dividing out_channels", "[model]\ninput = [6, 8, 8]\n" + layer("conv", out_channels=4, kernel_size=3, groups=3),
         "groups = 3 does not divide out_channels = 4", 'layers[1] "conv1" (conv)', "groups"),
    Case("pooling padding over half the kernel", MODEL + layer("pool", kernel_size=3, padding=2),
         "padding 2 is more than half the kernel 3", 'layers[1] "pool1" (pool)', "padding", 6,
         hint="PyTorch allows at most 1 here"),
    Case("pooling padding over half on one axis", MODEL + layer("pool", kernel_size="[4, 2]", padding="[2, 2]"),
         "padding 2 is more than half the kernel 2", 'layers[1] "pool1" (pool)', "padding"),
    Case("dropout p = 1", MODEL + layer("dropout", p=1), "must be in [0, 1), got 1", 'layers[1] "dropout1" (dropout)', "p", 5),
    Case("dropout p = 1.5", MODEL + layer("dropout", p=1.5), "must be in [0, 1), got 1.5", 'layers[1] "dropout1" (dropout)', "p"),
    Case("dropout p < 0", MODEL + layer("dropout", p=-0.1), "must be in [0, 1), got -0.1", 'layers[1] "dropout1" (dropout)', "p"),
    Case("kernel larger than the padded input", "[model]\ninput = [3, 10, 10]\n" + layer("conv", out_channels=4, kernel_size=13, padding=1),
         "kernel 13 is larger than the padded input 12 (input 10, padding 1)", 'layers[1] "conv1" (conv)', "kernel_size", 6,
         hint="the input is 3×10×10"),
    Case("kernel larger than what the previous layer outputs",
         "[model]\ninput = [3, 20, 20]\n" + layer("pool", name='"pool2"', kernel_size=2) + layer("conv", out_channels=4, kernel_size=13, padding=1),
         "kernel 13 is larger than the padded input 12 (input 10, padding 1)", 'layers[2] "conv1" (conv)', "kernel_size", 10,
         hint='the previous layer "pool2" outputs 3×10×10'),
    Case("dilated kernel larger than the input", MODEL + layer("conv", out_channels=4, kernel_size=5, dilation=10),
         "dilated kernel 41 (kernel 5, dilation 10) is larger than the padded input 32", 'layers[1] "conv1" (conv)', "kernel_size"),
    Case("pooling window past a ceil_mode overhang", "[model]\ninput = [3, 2, 2]\n" + layer("pool", kernel_size=5, stride=2, ceil_mode="true"),
         "kernel 5 is larger than the padded input 2 (input 2, padding 0) by more than ceil_mode allows",
         'layers[1] "pool1" (pool)', "kernel_size"),
    Case("dense on a non-flat input", MODEL + layer("dense", out_features=10), "dense needs a flat input, got 3×32×32",
         'layers[1] "dense1" (dense)', None, 3, hint="add a flatten layer before it"),
    Case("conv on a flat input", FLAT + layer("conv", **CONV), "conv needs an input [C, L], [C, H, W] or [C, D, H, W]; got 10",
         'layers[1] "conv1" (conv)', hint="use reshape"),
    Case("padding same with stride 2", MODEL + layer("conv", **CONV, stride=2, padding='"same"'),
         "padding 'same' needs stride 1", 'layers[1] "conv1" (conv)', "padding", 8, hint="give the padding as a number"),
    Case("average pooling with dilation", MODEL + layer("pool", op='"avg"', kernel_size=2, dilation=2),
         "average pooling has no dilation", 'layers[1] "pool1" (pool)', "dilation", hint='use op = "max"'),
    Case("reshape that loses values", MODEL + layer("reshape", shape="[3, 32, 33]"),
         "shape 3×32×33 holds 3,168 values, the input 3×32×32 holds 3,072", 'layers[1] "reshape1" (reshape)', "shape"),
    Case("reshape whose -1 cannot be inferred", MODEL + layer("reshape", shape="[5, -1]"),
         "cannot infer -1: 3,072 values do not divide by 5", 'layers[1] "reshape1" (reshape)', "shape"),
    Case("reshape with two -1", MODEL + layer("reshape", shape="[-1, -1]"), "at most one size may be -1",
         'layers[1] "reshape1" (reshape)', "shape"),
    Case("reshape to an empty shape", MODEL + layer("reshape", shape="[]"), "expected a non-empty list of sizes",
         'layers[1] "reshape1" (reshape)', "shape"),
    Case("upsample with both", MODEL + layer("upsample", scale_factor=2, size="[4, 4]"),
         "give either scale_factor or size", 'layers[1] "upsample1" (upsample)', "scale_factor"),
    Case("upsample with neither", MODEL + layer("upsample"), "give either scale_factor or size",
         'layers[1] "upsample1" (upsample)', "scale_factor"),
    Case("upsample by a negative factor", MODEL + layer("upsample", scale_factor=-1), "must be at least 0, got -1",
         'layers[1] "upsample1" (upsample)', "scale_factor"),
    Case("upsample to nothing", MODEL + layer("upsample", scale_factor=0.01),
         "scale_factor 0.01 leaves no output of an axis of size 32", 'layers[1] "upsample1" (upsample)', "scale_factor"),
    Case("upsample mode for another dimension", MODEL + layer("upsample", scale_factor=2, mode='"trilinear"'),
         "mode 'trilinear' works on 3 spatial axes, the input has 2", 'layers[1] "upsample1" (upsample)', "mode",
         hint="modes for this input: 'nearest', 'bilinear', 'bicubic'"),
]


@pytest.fixture(scope="module", autouse=True)
def sympy_imported():
    num.symbol("warm")  # the first import of sympy (a quarter of a second) is not any one case's time


def refusal(case: Case) -> SpecError:
    start = time.process_time()
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.loads(case.text), **case.values)
    assert time.process_time() - start < 1.0, "a bad spec must be refused quickly"
    return caught.value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_library_names_the_place_and_the_problem(case: Case):
    error = refusal(case)
    assert case.problem in error.problem
    for name in ("where", "field", "line"):
        expected = getattr(case, name)
        if expected is not None:
            assert getattr(error, name) == expected, name
    if case.hint is not None:
        assert case.hint in (error.hint or "")
    text = str(error)
    assert text.count("\n") <= 1 and "Traceback" not in text
    if error.line and error.field and case.where and case.where.startswith("layers"):
        written = case.text.splitlines()[error.line - 1]  # the field's own line, or the header of a layer without it
        assert written.startswith((f"{error.field} =", "[[layers]]")), written


def show(*args: str):
    result = CliRunner().invoke(main, ["show", *args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("archcalc: ")
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_show_exits_2_with_one_or_two_lines(case: Case, tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(case.text, encoding="utf-8")
    sets = [arg for name, value in case.values.items() if name != "B" for arg in ("--set", f"{name}={value}")]
    batch = ["--batch", case.values["B"]] if "B" in case.values else []
    result = show(str(path), *sets, *batch)
    assert_refused(result, case.problem, *([case.hint] if case.hint else []))
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.load(path), **case.values)
    assert result.stderr == f"archcalc: {caught.value}\n"  # the library's message, with the file (and line)
    assert caught.value.path == str(path)
    if case.line:
        assert result.stderr.startswith(f"archcalc: {path}:{case.line}: ")


# The file itself: missing, a directory, not text. (name, how to make it, problem)
FILES = [
    ("missing", lambda p: p, "no such file"),
    ("a directory", lambda p: (p.mkdir(), p)[1], "is a directory, not a spec file"),
    ("not UTF-8", lambda p: (p.write_bytes(b"\xff\xfe[model]\ninput = [3]\n"), p)[1], "not a text file (it is not UTF-8)"),
    ("binary", lambda p: (p.write_bytes(bytes(range(256))), p)[1], "not a text file"),
]


@pytest.mark.parametrize("name, make, problem", FILES, ids=[f[0] for f in FILES])
def test_unreadable_files(name, make, problem, tmp_path):
    path = make(tmp_path / "net.toml")
    with pytest.raises(SpecError) as caught:
        archcalc.load(path)
    assert problem in caught.value.problem
    assert (caught.value.path, caught.value.where) == (str(path), None)
    assert_refused(show(str(path)), f"archcalc: {path}: {problem}")


def test_load_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(MODEL + layer("flatten") + layer("convv"))
    with pytest.raises(SpecError) as caught:
        archcalc.load(path)
    assert (caught.value.path, caught.value.line, caught.value.where) == (str(path), 6, "layers[2]")
    assert str(caught.value).startswith(f"{path}:6: layers[2]: type: unknown layer type 'convv'\n  hint: did you mean 'conv'?")


def test_the_message_reads_as_the_design_shows_it(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text("[model]\ninput = [3, 10, 10]\n" + layer("conv", out_channels=4, kernel_size=13, padding=1))
    result = show(str(path))
    assert result.stderr == (
        f'archcalc: {path}:6: layers[1] "conv1" (conv): kernel_size: kernel 13 is larger than the padded input 12 '
        "(input 10, padding 1)\n  hint: the input is 3×10×10\n"
    )


def test_a_plain_number_is_not_repeated_as_its_own_source():
    error = refusal(CASES[[c.id for c in CASES].index("a size of a half")])
    assert error.problem == "must be a whole number, got 7/2"  # not "got 7/2 (7/2 = 7/2)"


def test_unknown_field_suggests_the_right_one():
    with pytest.raises(SpecError) as caught:
        archcalc.loads(MODEL + layer("conv", out_channels=4, kernel=3))
    assert caught.value.problem == "unknown field 'kernel'"
    assert caught.value.hint.startswith("did you mean 'kernel_size'? valid: type, name, out_channels, kernel_size")


# Bad flags are click's usage errors: exit status 2 and the reason, no traceback.
FLAGS = [
    (["--set", "foo"], "Invalid value for --set: 'foo' is not NAME=VALUE"),
    (["--set", "=3"], "is not NAME=VALUE"),
    (["--set", "n="], "is not NAME=VALUE"),
    (["--dtype", "float8"], "Invalid value for '--dtype'"),
    (["--format", "yaml"], "Invalid value for '--format'"),
    (["--no-such-flag"], "No such option"),
]


@pytest.mark.parametrize("args, message", FLAGS, ids=[" ".join(f[0]) for f in FLAGS])
def test_bad_flags_exit_2(args, message, tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(MODEL + layer("flatten"))
    result = show(str(path), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_analyze_refuses_an_unknown_dtype_override():
    spec = archcalc.loads(MODEL + layer("flatten"))
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(spec, dtype="float8")
    assert (caught.value.where, caught.value.problem) == ("--dtype", "unknown dtype 'float8'")


@pytest.mark.parametrize("bad", [True, "open('x')"])
def test_analyze_refuses_bad_given_values(bad):
    spec = archcalc.loads(FLAT + layer("dense", out_features='"n"'))
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(spec, n=bad)
    assert (caught.value.where, caught.value.field) == ("values", "n")


def test_a_missing_file_is_refused_before_anything_else(tmp_path):
    assert_refused(show(str(tmp_path / "nope.toml"), "--set", "n=3"), "no such file")


def test_nothing_in_a_spec_is_executed(tmp_path):
    """A spec that would leave a file behind if any part of it ran."""
    marker = tmp_path / "ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    texts = [
        MODEL + f'[vars]\nn = "{payload}"\n' + layer("flatten"),
        MODEL + layer("conv", out_channels=f'"{payload}"', kernel_size=3),
        f'[model]\ninput = ["{payload}"]\n' + layer("flatten"),
    ]
    for text in texts:
        with pytest.raises(SpecError, match=re.escape("calls not allowed in an expression")):
            archcalc.analyze(archcalc.loads(text))
    assert not marker.exists()
