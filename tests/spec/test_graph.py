"""Graph specs: `from`, blocks with variables, repeat, start, index and when, dotted names, and their errors."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import SpecError
from archcalc.core import num

HEAD = '[model]\ninput = [4, 8, 8]\n'

BASIC = '''
[blocks.basic]
[[blocks.basic.layers]]
name = "conv1"
type = "conv"
out_channels = "planes"
kernel_size = 3
stride = "stride"
padding = 1
bias = false
[[blocks.basic.layers]]
name = "bn1"
type = "batchnorm"
activation = "relu"
[[blocks.basic.layers]]
name = "downsample.0"
type = "conv"
from = "input"
when = "downsample"
out_channels = "planes"
kernel_size = 1
stride = "stride"
bias = false
[[blocks.basic.layers]]
name = "add"
type = "add"
from = ["bn1", "downsample.0"]
activation = "relu"
'''


def layer(kind: str, **fields) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    return "[[layers]]\n" + f'type = "{kind}"\n' + "".join(f"{k} = {value(v)}\n" for k, v in fields.items())


def analyze(*layers, blocks: str = BASIC, **values):
    return archcalc.analyze(archcalc.loads(HEAD + blocks + "".join(layers)), **values)


def test_a_repeated_block_has_full_names_inputs_and_uses():
    report = analyze(layer("block", name="layer1", block="basic", repeat=2, planes=8,
                           stride="2 if index == 0 else 1", downsample="index == 0"))
    assert [(row.name, row.inputs) for row in report.rows] == [
        ("layer1.0.conv1", ("input",)), ("layer1.0.bn1", ("layer1.0.conv1",)),
        ("layer1.0.downsample.0", ("input",)), ("layer1.0.add", ("layer1.0.bn1", "layer1.0.downsample.0")),
        ("layer1.1.conv1", ("layer1.0.add",)), ("layer1.1.bn1", ("layer1.1.conv1",)),
        # no downsample in the second use: the add reads the block's input in its place
        ("layer1.1.add", ("layer1.1.bn1", "layer1.0.add")),
    ]
    assert report.output == (8, 4, 4)
    assert [(u.path, u.block, u.first, u.stop, u.repeat) for u in report.uses] == [
        ("layer1.0", "basic", 0, 4, None), ("layer1.1", "basic", 4, 7, None), ("layer1", "basic", 0, 7, 2)]
    assert [row.index for row in report.rows] == list(range(1, 8))


def test_start_shifts_the_indices_and_a_single_use_has_no_index():
    report = analyze(layer("block", name="b", block="basic", planes=4, stride=1, downsample=False),
                     layer("block", name="r", block="basic", repeat=2, start=3, planes=4, stride=1,
                           downsample="index == 3"))
    names = [row.name for row in report.rows]
    assert names[:3] == ["b.conv1", "b.bn1", "b.add"]
    assert "r.3.downsample.0" in names and "r.4.conv1" in names and "r.4.downsample.0" not in names


def test_top_level_from_reads_any_earlier_path_a_use_or_the_input():
    report = analyze(
        layer("block", name="layer1", block="basic", repeat=2, planes=4, stride=1, downsample=False),
        layer("conv", name="side", out_channels=4, kernel_size=1, **{"from": "layer1.0.bn1"}),
        layer("concat", name="cat", **{"from": ["layer1", "side", "input", "layer1.0"]}),
    )
    assert report.row("side").inputs == ("layer1.0.bn1",)
    assert report.row("cat").inputs == ("layer1.1.add", "side", "input", "layer1.0.add")
    assert report.row("cat").output == (16, 8, 8)


def test_shared_names_in_the_same_expression_bind_once_per_value():
    # 200 uses of a block bind its layers once per distinct variable value, not 200 times
    report = analyze(layer("block", name="r", block="basic", repeat=200, planes=4, stride=1, downsample=False))
    assert len(report.rows) == 600
    assert report.rows[3].layer == report.rows[0].layer.__class__(**{**vars(report.rows[0].layer), "name": "r.1.conv1"})


def test_merge_layers_broadcast_and_concat_as_torch():
    report = analyze(
        layer("conv", name="a", out_channels=4, kernel_size=1),
        layer("adaptive_pool", name="g", output_size=1),
        layer("mul", name="gate", **{"from": ["a", "g"]}),
        layer("concat", name="c", dim=1, **{"from": ["gate", "input"]}),
        blocks="",
    )
    assert report.row("gate").output == (4, 8, 8)
    assert report.row("c").output == (4, 16, 8)
    assert report.totals["flops"] == 2 * 4 * 4 * 64  # the conv only: merges count no FLOPs


def test_symbolic_shapes_merge_when_provably_equal():
    spec = archcalc.loads('[model]\ninput = [4, "H", "W"]\n' + BASIC
                          + layer("block", name="b", block="basic", repeat=2, planes=8, stride=2, downsample=True))
    report = archcalc.analyze(spec)  # the add compares the conv path's size with the projection's, as formulas
    for h, w in ((16, 16), (7, 30)):
        concrete = archcalc.analyze(spec, H=h, W=w)
        assert tuple(num.subs(d, {"H": h, "W": w}) for d in report.output) == concrete.output
    assert archcalc.analyze(spec, H=16, W=16).output == (8, 4, 4)


def error(*layers, blocks: str = BASIC, **values) -> SpecError:
    with pytest.raises(SpecError) as caught:
        analyze(*layers, blocks=blocks, **values)
    return caught.value


USE = dict(block="basic", planes=4, stride=1, downsample=False)

ERRORS = {
    "from names a later layer": (
        [layer("conv", name="a", out_channels=2, kernel_size=1, **{"from": "b"}), layer("conv", name="b", out_channels=2, kernel_size=1)],
        "from names 'b', which comes later", 'layers[1] "a" (conv)', "from"),
    "from names itself": (
        [layer("conv", name="a", out_channels=2, kernel_size=1, **{"from": "a"})],
        "from names 'a', this layer itself", 'layers[1] "a" (conv)', "from"),
    "from names a layer that does not exist": (
        [layer("conv", name="a", out_channels=2, kernel_size=1), layer("add", **{"from": ["a", "c"]})],
        "from names 'c', which is no layer before this one", 'layers[2] "add1" (add)', "from"),
    "shapes that cannot merge": (
        [layer("conv", name="a", out_channels=2, kernel_size=1), layer("add", name="s", **{"from": ["a", "input"]})],
        "cannot add 2×8×8 and 4×8×8: axis 0 is 2 in one and 4 in another", 'layers[2] "s" (add)', "from"),
    "concat of different sizes": (
        [layer("pool", name="p", kernel_size=2), layer("concat", name="c", **{"from": ["p", "input"]})],
        "cannot concat 4×4×4 and 4×8×8 along axis 0: axis 1 is 4 in one and 8 in another", 'layers[2] "c" (concat)', "from"),
    "a missing variable": (
        [layer("block", name="b", block="basic", planes=4, stride=1)],
        "block 'basic' needs downsample", 'layers[1] "b" (block)', "downsample"),
    "an unknown variable": (
        [layer("block", name="b", **USE, plane=4)],
        "block 'basic' has no variable 'plane'", 'layers[1] "b" (block)', "plane"),
    "an unknown block": (
        [layer("block", name="b", block="basik")],
        "unknown block 'basik'", 'layers[1] "b" (block)', "block"),
    "repeat = 0": (
        [layer("block", name="b", **USE, repeat=0)],
        "must be at least 1, got 0", 'layers[1] "b" (block)', "repeat"),
    "repeat too large": (
        [layer("block", name="b", **USE, repeat=5000)],
        "must be at most 1000, got 5000", 'layers[1] "b" (block)', "repeat"),
    "when undecidable": (
        [layer("block", name="b", block="basic", planes=4, stride=1, downsample="n > 2")],
        "cannot decide 'n > 2' while n has no value", 'layers[1] "b" (block)', "downsample"),
    "when undecidable in a block": (
        [layer("block", name="b", block="basic", planes=4, stride=1, downsample="n - 1")],
        "'downsample': cannot decide 'downsample' while n has no value",
        'layers[1] "b" (block) > blocks.basic.layers[3] "downsample.0" (conv) at "b.downsample.0"', "when"),
    "a layer in a block that does not fit": (
        [layer("block", name="b", block="basic", planes=4, stride=1, downsample=False, repeat=2),
         layer("dense", name="d", out_features=2, **{"from": "b.1.bn1"})],
        "dense needs a flat input", 'layers[2] "d" (dense)', None),
    "a merge whose shapes differ inside a block": (
        [layer("block", name="b", block="basic", planes=8, stride=1, downsample=False)],
        "cannot add 8×8×8 and 4×8×8", 'layers[1] "b" (block) > blocks.basic.layers[4] "add" (add) at "b.add"', "from"),
    "a one-input layer given two": (
        [layer("conv", name="a", out_channels=2, kernel_size=1, **{"from": ["input", "input"]})],
        "a conv layer reads one tensor, but from names 2", 'layers[1] "a" (conv)', "from"),
    "a full path taken twice": (
        [layer("block", name="b", **USE), layer("flatten", name="b.conv1")],
        "the full name 'b.conv1' is taken twice", 'layers[2] "b.conv1" (flatten)', "name"),
    "mul of three": (
        [layer("mul", name="m", **{"from": ["input", "input", "input"]})],
        "mul takes two inputs, got 3", 'layers[1] "m" (mul)', "from"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_graph_errors_name_the_place(case):
    layers, problem, where, field = ERRORS[case]
    caught = error(*layers)
    assert problem in caught.problem
    assert caught.where == where
    assert caught.field == field
    assert caught.line is not None


def test_a_merge_error_names_both_input_layers():
    caught = error(layer("conv", name="a", out_channels=2, kernel_size=1), layer("add", name="s", **{"from": ["a", "input"]}))
    assert caught.hint.startswith("""its inputs: "a" outputs 2×8×8; the model's input is 4×8×8; broadcasting""")


def test_unprovable_formulas_do_not_merge():
    spec = archcalc.loads('[model]\ninput = [4, "H", "W"]\n' + layer("pool", name="p", kernel_size=2)
                          + layer("add", name="s", **{"from": ["p", "input"]}))
    with pytest.raises(SpecError, match=r"cannot add .*\(they cannot be proved equal\)"):
        archcalc.analyze(spec)


LOAD_ERRORS = {
    "a block using itself": ('[blocks.a]\n[[blocks.a.layers]]\ntype = "block"\nblock = "a"\n' + layer("flatten"),
                             "blocks use each other in a circle: a -> a"),
    "a block with no layers": ("[blocks.a]\n" + layer("flatten"), "a block needs layers"),
    "from of the wrong type": (layer("flatten", **{"from": 3}), "expected a layer's name or a list of them"),
    "a name with a bad segment": (layer("flatten", name="a..b"), "'a..b' is not a usable name"),
    "the name input": (layer("flatten", name="input"), "'input' is not a usable name"),
    "a use without a block": (layer("block", name="b"), "missing 'block'"),
}


@pytest.mark.parametrize("case", LOAD_ERRORS, ids=list(LOAD_ERRORS))
def test_load_errors(case):
    text, problem = LOAD_ERRORS[case]
    with pytest.raises(SpecError, match=problem.replace("(", r"\(")):
        archcalc.loads(HEAD + text)


def test_the_cli_prints_one_clear_message(tmp_path):
    from click.testing import CliRunner

    from archcalc.cli.main import main

    path = tmp_path / "net.toml"
    path.write_text(HEAD + BASIC + layer("block", name="b", block="basic", planes=4, stride=1))
    result = CliRunner().invoke(main, ["show", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f'{path}:' in result.stderr and "block 'basic' needs downsample" in result.stderr


NET = HEAD + BASIC + layer("conv", name="stem", out_channels=4, kernel_size=1) + layer(
    "block", name="layer1", block="basic", repeat=2, planes=8, stride="2 if index == 0 else 1", downsample="index == 0")


def test_claims_by_path_prefix_and_block():
    report = archcalc.analyze(archcalc.loads(NET))
    under = lambda prefix: [row for row in report.rows if row.name.startswith(prefix + ".")]
    values = {
        "layer1.params": sum(row.params for row in under("layer1")),
        "layer1.0.params": sum(row.params for row in under("layer1.0")),
        "layer1.0.downsample.flops": sum(row.flops for row in under("layer1.0.downsample")),
        "basic.macs": sum(row.macs for row in under("layer1")),  # the block's name: every use of it
        "layer1.0.conv1.output": [8, 4, 4],
        "layer1.0.downsample.0.params": 32,
        "layer1.output": [8, 4, 4],
    }
    assert values["layer1.params"] > values["layer1.0.params"] > 0
    spec = archcalc.loads(NET + "[expect]\n" + "".join(f'"{k}" = {v}\n' for k, v in values.items()))
    results = archcalc.check(spec)
    assert [(r.key, r.ok) for r in results] == [(k, True) for k in values], [r.explanation for r in results if not r.ok]
    wrong = archcalc.loads(NET + '[expect]\n"layer1.params" = 1\n"layer9.params" = 1\n')
    with pytest.raises(SpecError, match="no layer, path prefix, block or layer type named 'layer9'"):
        archcalc.check(wrong)


def test_show_depth_folds_blocks_into_rows_with_their_totals():
    from archcalc.render import report as render

    report = archcalc.analyze(archcalc.loads(NET))
    names = lambda depth: [line.name for line in render.outline(report, depth)]
    assert names(1) == ["stem", "layer1"]
    assert names(2) == ["stem", "layer1", "layer1.0", "layer1.1"]
    assert names(3)[:6] == ["stem", "layer1", "layer1.0", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.downsample"]
    assert len(names(None)) == 2 + 2 + len(report.rows) - 1 + 1  # every layer, and a line per group
    folded = render.outline(report, 1)[1]
    assert folded.kind == "basic ×2" and folded.rows == report.rows[1:]
    markdown = render.markdown(report, depth=1)
    total = f"{sum(row.params for row in report.rows[1:]):,}"
    assert f"| layer1 | basic ×2 | {len(report.rows) - 1} layers | 8×4×4 |" in markdown and total in markdown
    data = report.to_dict()
    assert data["blocks"][-1] | {} == data["blocks"][-1] and data["blocks"][-1]["path"] == "layer1"
    assert data["blocks"][-1]["params"] == sum(row.params for row in report.rows[1:])
    assert data["layers"][-1]["inputs"] == ["layer1.1.bn1", "layer1.0.add"]


def test_explain_gives_the_merge_rule():
    from archcalc.teaching import explain_row

    report = archcalc.analyze(archcalc.loads(NET))
    text = " ".join(line for _, line in explain_row.lines(report, report.row("layer1.0.add")))
    assert "8×4×4 and 8×4×4 → 8×4×4: element-wise sum" in text


def test_blocks_use_blocks_and_checkpoint_and_when_are_kept():
    blocks = BASIC + '''
[blocks.stage]
[[blocks.stage.layers]]
name = "first"
type = "block"
block = "basic"
planes = "width"
stride = 2
downsample = true
[[blocks.stage.layers]]
name = "rest"
type = "block"
block = "basic"
repeat = "count"
start = 1
planes = "width"
stride = 1
downsample = false
'''
    spec = archcalc.loads(HEAD + blocks + layer("block", name="s", block="stage", width=8, count=2, checkpoint=True)
                          + layer("conv", name="skipped", out_channels=3, kernel_size=1, when="0")
                          + layer("activation", name="act", function="relu"))
    assert dict(spec.blocks)["stage"].variables == ("count", "width")  # free names of its uses' fields
    report = archcalc.analyze(spec)
    names = [row.name for row in report.rows]
    assert names[:5] == ["s.first.conv1", "s.first.bn1", "s.first.downsample.0", "s.first.add", "s.rest.1.conv1"]
    assert "skipped" not in names and report.row("act").inputs == ("s.rest.2.add",)  # an absent layer passes its input on
    assert [(use.path, use.checkpoint) for use in report.uses][-1] == ("s", True)
    assert report.row("s.rest.2.add").output == (8, 4, 4)


def test_errors_in_inline_block_layers_give_their_line(tmp_path):
    text = HEAD + '''[blocks.pair]
layers = [
    { name = "a", type = "conv", out_channels = 2, kernel_size = 1 },
    { name = "b", type = "conv", out_channels = 2, kernel_size = 99 },
]
''' + layer("block", name="p", block="pair", repeat=2)
    path = tmp_path / "inline.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.load(path))
    assert caught.value.line == text.splitlines().index('    { name = "b", type = "conv", out_channels = 2, kernel_size = 99 },') + 1
    assert caught.value.where == 'layers[1] "p" (block) > blocks.pair.layers[2] "b" (conv) at "p.0.b"'
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
