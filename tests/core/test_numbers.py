"""Numbers are made normal at the boundaries (a Row, a PerBatch, JSON, text), never left to callers:
a concrete number is an int (or a float where it is a share), never a string, whatever made it."""

import json
import re
from dataclasses import dataclass

import pytest
import sympy

import archcalc
from archcalc.core import fmt, num
from archcalc.layers import Layer
from archcalc.layers.base import register, unregister
from archcalc.memory.perbatch import PerBatch
from archcalc.render import check as render_check, report as render
from tests.conftest import SPECS

NUMBER = re.compile(r"-?\d+(\.\d+)?")
CONCRETE = [("alexnet.toml", {}), ("lenet5.toml", {}), ("mlp_quiz.toml", {}), ("mlp_quiz_biases.toml", {}),
            ("alexnet_symbolic.toml", {"H": 224, "W": 224, "classes": 1000})]
COUNTS = {"input", "output", "weights", "biases", "params", "macs", "flops", "training_flops"}


def leaves(data, path=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from leaves(value, (*path, i))
    else:
        yield path, data


def counted(path) -> bool:
    """Whether a JSON leaf is a count or a size (an int when concrete): not a share, a name or a time."""
    keys = [k for k in path if isinstance(k, str)]
    return bool(keys) and (keys[-1] in COUNTS or keys[-1].endswith("_bytes"))


def documents(name: str, values: dict) -> list[tuple[dict, bool]]:
    """The JSON documents of a network: (document, whether the batch size is known in it)."""
    spec = archcalc.load(SPECS / name)
    report = archcalc.analyze(spec, **values)
    out = [(json.loads(render.json(report, explained=True)), False),
           (json.loads(render.json(archcalc.analyze(spec, batch=32, **values))), True)]
    if spec.expect:
        out.append((json.loads(render_check.json(archcalc.grade(spec, report=report), report)), False))
    return out


@pytest.mark.parametrize(("name", "values"), CONCRETE, ids=[name for name, _ in CONCRETE])
def test_every_number_of_a_concrete_network_is_a_json_number(name, values):
    for document, batch in documents(name, values):
        for path, value in leaves(document):
            assert not (isinstance(value, str) and NUMBER.fullmatch(value)), (path, value)
            if counted(path) and value is not None and (batch or not isinstance(value, str) or "B" not in value):
                assert type(value) is int, (path, value)  # bytes stay formulas in B until B is known


def test_a_symbolic_network_writes_its_formulas_as_text():
    data = json.loads(render.json(archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"))))
    formulas = [value for path, value in leaves(data) if isinstance(value, str) and counted(path)]
    assert formulas and not any(NUMBER.fullmatch(f) for f in formulas)
    assert "H" in data["layers"][0]["output"][1]


@pytest.fixture
def sympy_kind():
    """A kind whose formulas give sympy numbers, as a formula that simplifies to a number does."""

    @dataclass(frozen=True, kw_only=True)
    class Sympy(Layer):
        kind = "sympy_for_test"

        def output(self, x):
            return (sympy.Integer(x[0]), *x[1:])

        def weights(self, x):
            return sympy.Integer(34848)

        def biases(self, x):
            return sympy.Rational(96, 2)

    register(Sympy)
    yield Sympy
    unregister(Sympy)


def test_a_sympy_number_is_made_normal_where_it_becomes_a_row(sympy_kind):
    spec = archcalc.loads('[model]\ninput = [3, 4, 4]\n[[layers]]\ntype = "sympy_for_test"\n')
    report = archcalc.analyze(spec)
    row = report.rows[0]
    assert (type(row.weights), type(row.biases), type(row.output[0])) == (int, int, int)
    layer = json.loads(render.json(report))["layers"][0]
    assert (layer["weights"], layer["biases"], layer["params"], layer["output"]) == (34848, 48, 34896, [3, 4, 4])
    assert "34,896" in render.markdown(report)


def test_the_text_and_json_boundaries_take_sympy_numbers():
    assert [num.to_json(x) for x in (sympy.Integer(5), sympy.Rational(1, 2))] == [5, 0.5]
    assert (fmt.group(sympy.Integer(34848)), fmt.short(sympy.Integer(62378344)), fmt.term(sympy.Integer(7))) == ("34,848", "62.4M", "7")
    assert fmt.size_bytes(sympy.Integer(1536)) == "1.50 KiB"
    part = PerBatch(sympy.Integer(8), sympy.Rational(4, 2))
    assert (type(part.fixed), type(part.per_sample), part.at(3)) == (int, int, 14)


def test_minimum_unevaluated_keeps_each_bound_once():
    """num.minimum(..., evaluate=False): sympy's Min would compare every pair of long formulas (minutes for
    largest_batch on a symbolic GPT-2); each argument once, concrete ones folded, nothing compared."""
    h, w = num.symbol("H"), num.symbol("W")
    bounds = [sympy.floor((10**9 - 7 * h * w) / (3 * h + 1)), sympy.floor(10**9 / (h * w)), 12, 9]
    least = num.minimum(*bounds, *bounds, evaluate=False)
    assert isinstance(least, sympy.Min) and len(least.args) == 3 and sympy.Integer(9) in least.args
    assert num.minimum(h, h, 4, evaluate=False) == sympy.Min(h, 4, evaluate=False)
    assert num.minimum(h + 1, h + 1, evaluate=False) == h + 1  # one distinct argument is itself
    assert num.minimum(3, 2, evaluate=False) == 2
    assert num.minimum(h, h + 1) == h  # evaluated (the default, for shapes): a window's Min(n, n + 1) is n
    for value in ((5, 7), (100, 3)):
        point = dict(zip((h, w), value))
        assert least.xreplace(point) == min(b.xreplace(point) if isinstance(b, sympy.Basic) else b for b in bounds)
