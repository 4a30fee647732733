"""archcalc/core/printing.py writes and orders formulas as sympy does, character for character, only faster."""

import json

import pytest
import sympy
from hypothesis import given, settings, strategies as st
from sympy.core.sorting import default_sort_key

import archcalc
from archcalc.core import num, printing
from tests.conftest import SPECS

H, W, T, B = (num.symbol(name) for name in "HWTB")
leaves = st.one_of(st.sampled_from([H, W, T, B]), st.integers(-40, 4000).map(sympy.Integer),
                   st.fractions(min_value=-5, max_value=5, max_denominator=7).map(lambda f: sympy.Rational(f.numerator, f.denominator)))


def grow(children):
    pairs = st.tuples(children, children)
    return st.one_of(
        pairs.map(lambda p: p[0] + p[1]),
        pairs.map(lambda p: p[0] * p[1]),
        pairs.map(lambda p: p[0] - p[1]),
        st.tuples(children, st.integers(2, 9), st.integers(-3, 3)).map(lambda p: sympy.floor(p[0] / p[1] + sympy.Rational(p[2], 2))),
        st.tuples(children, st.integers(2, 9)).map(lambda p: sympy.ceiling(p[0] / p[1])),
        children.map(lambda x: x**2),
        children.map(lambda x: 1 / x if x != 0 else x),
        pairs.map(lambda p: sympy.Max(*p, evaluate=False) if p[0] != p[1] else p[0]),
        pairs.map(lambda p: sympy.Min(*p)),
    )


formulas = st.recursive(leaves, grow, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(formulas)
def test_text_and_sort_key_are_sympys(x):
    assert printing.text(x) == str(x)
    assert printing.sort_key(x) == default_sort_key(x)


@settings(max_examples=100, deadline=None)
@given(st.lists(formulas, min_size=1, max_size=6), st.integers(0, 10**9), st.lists(st.integers(1, 10**6), max_size=3))
def test_a_peak_is_written_as_sympy_writes_its_max(xs, fixed, concrete):
    """num.maximum_json writes maximum's Max without making it; byte counts fixed + per_sample·B included."""
    lines = [num.normal(fixed + x * B) for x in xs] + concrete
    assert num.maximum_json(*lines) == num.to_json(num.maximum(*lines))
    value = num.maximum(*lines)
    assert num.maximum_json(*lines) == (str(value) if isinstance(value, sympy.Basic) and not value.is_Number else num.to_json(value))


# a stack in 16×H×W whose sizes change every few layers (benchmarks/deep_stack.py's, shorter): peaks of many pieces
DEEP = "[model]\ninput = [16, \"H\", \"W\"]\n" + "".join(
    '[[layers]]\ntype = "conv"\nout_channels = 16\nkernel_size = 3\nstride = 2\npadding = 1\nactivation = "relu"\n'
    '[[layers]]\ntype = "conv"\nout_channels = 16\nkernel_size = 3\npadding = "same"\n'
    '[[layers]]\ntype = "upsample"\nscale_factor = 2\n'
    '[[layers]]\ntype = "pool"\nop = "avg"\nkernel_size = 3\nstride = 1\npadding = 1\nceil_mode = true\n' for _ in range(10))


@pytest.mark.parametrize("name, values", [("alexnet_symbolic.toml", {}), ("resnet18_symbolic.toml", {}), ("gpt2.toml", {}),
                                          ("alexnet_symbolic.toml", {"batch": 4}), ("deep", {})])
def test_every_formula_of_a_report_is_written_as_sympy_writes_it(name, values):
    spec = archcalc.loads(DEEP) if name == "deep" else archcalc.load(SPECS / name)
    report = archcalc.analyze(spec, **values)
    memory = report.memory
    formulas = [d for row in report.rows for d in (*row.output, row.params, row.macs)]
    formulas += [q.at(values.get("batch")) for q in memory.quantities().values()]
    for x in formulas:
        if not num.is_concrete(x):
            assert num.to_json(x) == str(x)
    data = json.loads(json.dumps(report.to_dict()))
    for key, value in memory.quantities().items():
        if key in data["memory"] and not num.is_concrete(value.at(values.get("batch"))):
            assert data["memory"][key] == str(value.at(values.get("batch"))), key
