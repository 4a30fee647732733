"""What `show` does to be fast changes nothing it prints: the table's plain rows are what rich draws,
the timeline's running sums are sympy's sums, and `import archcalc` defers checking claims but keeps
every public name."""

from __future__ import annotations

import io

import pytest
import sympy
from hypothesis import given, settings, strategies as st
from rich.console import Console
from rich.table import Table

import archcalc
from archcalc.core import num, tally
from archcalc.render import report as render
from tests.backends.test_torch_optional import run
from tests.conftest import SPECS


def drawn(renderable, width: int, color: bool) -> str:
    """What a console `width` columns wide writes, with its escape codes when `color`."""
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=color, color_system="truecolor" if color else None,
            legacy_windows=False).print(renderable)
    return out.getvalue()


CASES = [("alexnet", {}), ("alexnet_symbolic", {}), ("gpt2", {}), ("gpt2", {"T": 64}), ("resnet18", {}), ("unet", {}),
         ("lenet5", {})]


@pytest.mark.parametrize("name, values", CASES)
def test_the_plain_rows_are_what_rich_draws(name, values):
    report = archcalc.analyze(archcalc.load(SPECS / f"{name}.toml"), **values)
    plain = 0
    for width in (60, 80, 100, 160, 220, 400):
        for depth in (None, 1):
            first = render.table(report, width=width, depth=depth).renderables[0]
            if not isinstance(first, render._Rows):
                assert isinstance(first, Table)
                continue
            plain += 1
            for console_width in (width, width - 30):  # a console narrower than the table: rich's own table
                for color in (False, True):
                    assert drawn(first, console_width, color) == drawn(first.table(), console_width, color), (width, depth)
    assert plain, "no width drew plain rows"


def test_cells_rich_would_draw_otherwise_go_to_rich():
    """A layer named in wide characters (two terminal columns each) is laid out by rich itself."""
    spec = archcalc.loads('[model]\nname = "n"\ninput = [4]\n[[layers]]\nname = "層1"\ntype = "dense"\nout_features = 2\n')
    first = render.table(archcalc.analyze(spec), width=100).renderables[0]
    assert isinstance(first, Table)
    assert "層1" in drawn(first, 100, False)


TERMS = [sympy.Integer(1), num.symbol("T"), num.symbol("T") ** 2, num.symbol("H") * num.symbol("W"),
         sympy.floor(num.symbol("H") / 4 - sympy.Rational(7, 4))]
sizes = st.one_of(
    st.integers(-10**6, 10**6),
    st.lists(st.tuples(st.sampled_from(TERMS), st.integers(-50, 50)), min_size=1, max_size=3).map(
        lambda pairs: sympy.Add(*(c * t for t, c in pairs))),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(sizes, st.sampled_from([1, -1])), max_size=12))
def test_a_tally_is_the_sum_sympy_makes(steps):
    t, total, seen = tally.Tally(), 0, []
    for x, sign in steps:
        t.add(x, sign)
        total = total + x if sign == 1 else total - x
        key = t.key()
        assert num.is_concrete(key) == num.is_concrete(total)  # a formula that cancelled stays a sympy number
        assert tally.value(key) == num.normal(total)
        assert type(tally.value(key)) is type(num.normal(total))
        for other_key, other_total in seen:  # keys are equal where the sums are (the timeline's repeated candidates)
            assert (key == other_key) == bool(total == other_total) == (other_key == key)
        seen.append((key, total))


def test_a_formula_that_cancels_is_its_number_but_not_concrete():
    t, T = tally.Tally(), num.symbol("T")
    t.add(5)
    before = t.key()
    t.add(768 * T)
    t.add(768 * T, -1)
    assert before == 5 and t.key() == before and not num.is_concrete(t.key()) and not num.is_concrete(5 + T - T)
    assert tally.value(t.key()) == 5 and t.key() != tally.Tally().key()


def test_import_archcalc_leaves_checking_claims_to_first_use():
    done = run(
        "import sys, archcalc, archcalc.cli.main\n"
        "late = {'archcalc.teaching.check', 'archcalc.teaching.claim_keys', 'archcalc.teaching.claim_values',"
        " 'archcalc.teaching.quiz', 'archcalc.teaching.mistakes'}\n"
        "assert not late & set(sys.modules), late & set(sys.modules)\n"
        "names = {name: getattr(archcalc, name) for name in archcalc.__all__}\n"
        "import archcalc.teaching.check\n"  # the submodule does not take the function's name
        "assert archcalc.check is names['check'] and callable(archcalc.check)\n"
        "print('ok')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_public_name_is_there():
    for name in archcalc.__all__:
        assert getattr(archcalc, name) is not None
    assert archcalc.check.__module__ == "archcalc.teaching.check" and callable(archcalc.check)
    with pytest.raises(AttributeError):
        archcalc.no_such_name  # noqa: B018


@settings(max_examples=40, deadline=None)
@given(st.lists(sizes, min_size=2, max_size=6), st.sampled_from(["Max", "Min"]), st.booleans())
def test_a_max_is_written_as_sympy_writes_it(xs, name, evaluate):
    formula = getattr(sympy, name)(*xs, evaluate=evaluate)
    num.text.cache_clear()
    assert num.text(formula) == str(formula)
