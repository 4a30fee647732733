"""What `show` prints: golden files for every format, and the invariants a table must keep."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sympy
from rich.console import Console

import archcalc
from archcalc.core import num
from archcalc.render import report as render
from tests.conftest import SPECS

NAMES = ["alexnet", "lenet5", "alexnet_symbolic"]
WIDTHS = [100, 80]


def report(name: str, **values):
    return archcalc.analyze(archcalc.load(SPECS / f"{name}.toml"), **values)


def printed(renderable, width: int) -> str:
    """What a terminal `width` columns wide shows (trailing blanks dropped, so editors keep goldens intact)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    return "".join(line.rstrip() + "\n" for line in console.export_text().splitlines())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", NAMES)
def test_table(name, width, golden):
    golden(f"{name}.table{width}.txt", printed(render.table(report(name), width=width), width))


@pytest.mark.parametrize("name", NAMES)
def test_explain(name, golden):
    golden(f"{name}.explain.txt", printed(render.table(report(name), width=100, explained=True), 100))


@pytest.mark.parametrize("form", ["markdown", "csv", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_formats(name, form, golden):
    extension = {"markdown": "md", "csv": "csv", "json": "json"}[form]
    golden(f"{name}.{extension}", getattr(render, form)(report(name)))


# Invariants (torchinfo checks that columns add up; so do we, for every format)

SPECS_AND_VALUES = [(name, {}) for name in NAMES] + [("alexnet_symbolic", {"H": 227, "W": 300, "classes": 10})]


def same(a, b) -> bool:
    return a == b if num.is_concrete(a) and num.is_concrete(b) else sympy.expand(sympy.sympify(a) - b) == 0


@pytest.mark.parametrize("name, values", SPECS_AND_VALUES)
def test_rows_add_up_to_the_totals(name, values):
    r = report(name, **values)
    for row in r.rows:
        assert same(row.weights + row.biases, row.params), row.name
        assert same(2 * row.macs, row.flops), row.name
    for quantity in ("weights", "biases", "params", "macs", "flops"):
        assert same(sum(getattr(row, quantity) for row in r.rows), r.totals[quantity]), quantity
    assert same(sum(r.by_type.values()), r.totals["params"])


@pytest.mark.parametrize("name", ["alexnet", "lenet5", "mlp_quiz"])
def test_shares_add_up_to_100(name):
    data = report(name).to_dict()
    assert sum(layer["share"] for layer in data["layers"]) == pytest.approx(100)
    assert sum(kind["share"] for kind in data["by_type"].values()) == pytest.approx(100)
    rows = list(csv.DictReader(io.StringIO(render.csv(report(name)))))
    assert sum(float(row["share"]) for row in rows) == pytest.approx(100, abs=0.01)


LAYER_KEYS = {"name", "type", "output", "weights", "biases", "params", "macs", "flops"}
TOTAL_KEYS = {"params", "weights", "biases", "macs", "flops"}
MEMORY_KEYS = {"batch", "dtype", "params_bytes", "saved_for_backward_bytes", "gradients_bytes", "optimizer_bytes", "training_bytes"}


@pytest.mark.parametrize("name", NAMES)
def test_json_has_the_keys_of_the_contract(name):
    r = report(name)
    data = json.loads(render.json(r))
    assert data == json.loads(json.dumps(r.to_dict()))  # the library's to_dict() is the same data
    assert {"model", "input", "layers", "totals", "memory"} <= set(data)
    assert all(set(layer) >= LAYER_KEYS for layer in data["layers"])
    assert set(data["totals"]) >= TOTAL_KEYS
    assert set(data["memory"]) >= MEMORY_KEYS
    assert [layer["name"] for layer in data["layers"]] == [row.name for row in r.rows]
    assert data["model"] == r.model


def test_concrete_numbers_are_json_integers():
    data = json.loads(render.json(report("alexnet", batch=32)))
    assert data["input"] == [3, 224, 224]
    numbers = [*data["input"], *data["totals"].values()]
    for layer in data["layers"]:
        numbers += [*layer["output"], *(layer[key] for key in LAYER_KEYS - {"name", "type", "output"})]
    numbers += [data["memory"][key] for key in MEMORY_KEYS - {"dtype"}]
    assert all(type(n) is int for n in numbers)  # not floats, not bools, not strings
    assert data["layers"][0]["params"] == 34944
    assert data["totals"]["params"] == 62378344
    assert data["memory"]["batch"] == 32


def test_symbolic_numbers_are_sympy_strings():
    r = report("alexnet_symbolic")
    data = json.loads(render.json(r))
    for layer, row in zip(data["layers"], r.rows):
        for key in ("weights", "biases", "params", "macs", "flops"):
            value = getattr(row, key)
            assert layer[key] == (value if num.is_concrete(value) else str(value)), (row.name, key)
        assert layer["output"] == [d if num.is_concrete(d) else str(d) for d in row.output]
    assert data["input"] == [3, "H", "W"]
    assert data["layers"][-1]["params"] == "4097*classes"
    assert data["layers"][0]["output"][1] == "floor(H/4 - 7/4) + 1"
    assert data["totals"]["params"] == str(r.totals["params"])
    assert data["memory"]["batch"] == "B"


@pytest.mark.parametrize("name", ["alexnet", "lenet5", "mlp_quiz", "alexnet_symbolic"])
def test_csv_and_markdown_have_a_line_per_layer(name):
    r = report(name)
    rows = list(csv.DictReader(io.StringIO(render.csv(r))))
    assert [row["name"] for row in rows] == [row.name for row in r.rows]
    if num.is_concrete(r.totals["params"]):
        assert sum(int(row["params"]) for row in rows) == r.totals["params"]
    lines = render.markdown(r).splitlines()
    start = lines.index("| " + " | ".join(render.HEADERS) + " |")
    layers = lines[start + 2: start + 2 + len(r.rows)]  # after the header and the |---| line
    assert [line.split(" | ")[0] for line in layers] == [f"| {row.name}" for row in r.rows]
    assert lines[start + 2 + len(r.rows)].startswith("| **total** |")


@pytest.mark.parametrize("width", [80, 100, 120, 160])
@pytest.mark.parametrize("name", ["alexnet", "lenet5", "mlp_quiz", "alexnet_symbolic"])
def test_the_table_fits_the_terminal_and_keeps_every_column(name, width):
    """Rich crops what does not fit: a table wider than the terminal loses its right-hand columns."""
    text = printed(render.table(report(name), width=width), width)
    assert max(map(len, text.splitlines())) <= width
    header = next(i for i, line in enumerate(text.splitlines()) if line.lstrip().startswith("layer"))
    heading = " ".join(text.splitlines()[header - 1: header + 1])  # a folded header takes two lines
    expected = render.HEADERS if "MACs" in heading else render.COMPACT if "weights" in heading else render.NARROW
    for column in expected:
        assert f" {column} " in f" {heading} ", (column, heading)  # every header whole
    assert "share" in heading


def test_the_course_can_be_read_off_the_table():
    text = printed(render.table(report("alexnet"), width=120), 120)
    assert "62,378,344 (62.4M)" in text
    assert "dense 58,631,144 (94.0%)" in text  # the fully connected layers hold 94%
    assert "fc1: 37,752,832 (60.5%)" in text  # fc1 alone 60%
    assert " conv1    conv     11×11/4, p2, relu  96×55×55       34,848      96      34,944   0.1%   105M   211M" in text


EXPLAINED = [
    ("alexnet", "H_out = W_out = ⌊(224 + 2·2 − 11)/4⌋ + 1 = ⌊217/4⌋ + 1 = 55"),
    ("alexnet", "note: ⌊217/4⌋ drops a remainder of 1: the kernel never reaches the last 1 pixel of the padded input along this axis"),
    ("alexnet", "weights = C_out·C_in·kernel = 96·3·11² = 34,848"),
    ("alexnet", "biases = C_out = 96 (one per filter)"),
    ("alexnet", "params = 34,848 + 96 = 34,944"),
    ("alexnet", "H_out = W_out = ⌊(27 + 2·2 − 5)/1⌋ + 1 = ⌊26/1⌋ + 1 = 27"),  # conv2: 2·2, not the notes' 2^2
    ("alexnet", "H_out = W_out = ⌊(55 − 3)/2⌋ + 1 = ⌊52/2⌋ + 1 = 27"),  # pool1
    ("alexnet", "features = 256·6·6 = 9,216"),
    ("alexnet", "weights = out_features·in_features = 4,096·9,216 = 37,748,736"),
    ("lenet5", "H_out = W_out = ⌊(32 − 5)/1⌋ + 1 = ⌊27/1⌋ + 1 = 28"),
    ("lenet5", "weights = C_out·C_in·kernel = 6·1·5² = 150"),
    ("alexnet_symbolic", "H_out = ⌊(H + 2·2 − 11)/4⌋ + 1 = floor(H/4 - 7/4) + 1"),
    ("alexnet_symbolic", "weights = out_features·in_features = classes·4,096 = 4096*classes"),
]


@pytest.mark.parametrize("name, line", EXPLAINED)
def test_explain_derives_each_number(name, line):
    r = report(name)
    assert line in printed(render.table(r, width=200, explained=True), 200)
    assert line in render.markdown(r, explained=True)
    assert any(line in step for layer in json.loads(render.json(r, explained=True))["layers"] for step in layer["explain"])


def test_a_floor_that_drops_nothing_says_nothing():
    r = archcalc.analyze(archcalc.loads('[model]\ninput = [3, 224, 224]\n[[layers]]\ntype = "conv"\n'
                                        "out_channels = 8\nkernel_size = 3\npadding = 1\n"))
    assert "note:" not in printed(render.explanation(r), 100)


def test_rendering_does_not_print(capsys):
    r = report("alexnet")
    render.table(r, explained=True), render.markdown(r), render.csv(r), render.json(r)
    assert capsys.readouterr() == ("", "")
