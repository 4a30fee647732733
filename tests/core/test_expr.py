"""The whitelist parser of spec expressions: exact values, symbols, and everything it refuses, quickly."""

from __future__ import annotations

import operator
import re
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from archcalc import ExprError, SpecError
from archcalc.core import expr, num
from tests.conftest import ROOT


def value(text: str, **env):
    return expr.parse(text).evaluate(env)


# (text, names given, exact value): ints and Fractions, never floats
EXACT = [
    ("42", {}, 42),
    ("0.5", {}, Fraction(1, 2)),
    ("0.1 + 0.2", {}, Fraction(3, 10)),
    ("1_000", {}, 1000),
    ("2 * n + 1", {"n": 5}, 11),
    ("(k - 1) / 2", {"k": 5}, 2),
    ("(k - 1) / 2", {"k": 4}, Fraction(3, 2)),
    ("7 // 2", {}, 3),
    ("-7 // 2", {}, -4),  # floor division rounds down, as in Python
    ("7 % 3", {}, 1),
    ("-7 % 3", {}, 2),
    ("2 ** 10", {}, 1024),
    ("2 ** -2", {}, Fraction(1, 4)),
    ("-3", {}, -3),
    ("+3", {}, 3),
    ("((((3))))", {}, 3),
    ("floor(7 / 2)", {}, 3),
    ("ceil(7 / 2)", {}, 4),
    ("floor(-7 / 2)", {}, -4),
    ("min(3, 1, 2)", {}, 1),
    ("max(3, 1, 2)", {}, 3),
    ("max(n, 2 * n)", {"n": 3}, 6),
    ("classes", {"classes": 1000}, 1000),
    ("4097 * classes", {"classes": 10}, 40970),
    ("1.5 * 2", {}, 3),
    # conditions (blocks: `stride = "2 if index == 0 else 1"`): True and False act as 1 and 0
    ("True", {}, 1),
    ("False + 1", {}, 1),
    ("1 < 2", {}, 1),
    ("1 < 2 < 2", {}, 0),  # chained as in Python
    ("index == 0", {"index": 0}, 1),
    ("index != 0", {"index": 0}, 0),
    ("2 if index == 0 else 1", {"index": 0}, 2),
    ("2 if index == 0 else 1", {"index": 3}, 1),
    ("1 and 2", {}, 1),
    ("0 or 0", {}, 0),
    ("not 0", {}, 1),
    ("not n", {}, 0),  # an unknown size is at least 1
    ("n >= 1", {}, 1),  # decided for unknown sizes too: they are positive integers
    ("n == n", {}, 1),
    ("1 if n > 0 else 1 // 0", {}, 1),  # only the branch taken is evaluated
]


@pytest.mark.parametrize("text, env, expected", EXACT, ids=[c[0] for c in EXACT])
def test_exact_values(text, env, expected):
    out = value(text, **env)
    assert out == expected
    assert type(out) is type(expected)  # whole results are ints, the rest Fractions: never floats


# (text, sympy str() of the result): unknown names stay symbols, positive integers, so formulas simplify
SYMBOLIC = [
    ("2 * n + 1", "2*n + 1"),
    ("(k - 1) / 2", "k/2 - 1/2"),
    ("classes", "classes"),
    ("floor(n / 2)", "floor(n/2)"),
    ("n // 4", "floor(n/4)"),
    ("(n // 2) // 2", "floor(n/4)"),  # nested floors fold: ⌊⌊n/2⌋/2⌋ = ⌊n/4⌋
    ("ceil(n / 2)", "ceiling(n/2)"),
    ("n ** 2", "n**2"),
    ("min(n, 0)", "0"),  # n is positive
    ("max(n, n)", "n"),
    ("max(3, 5, n)", "Max(5, n)"),  # over formulas max stays unevaluated: sympy would compare every pair
    ("abs_ + 1", "abs_ + 1"),
]


@pytest.mark.parametrize("text, expected", SYMBOLIC, ids=[c[0] for c in SYMBOLIC])
def test_unknown_names_stay_symbols(text, expected):
    assert str(value(text)) == expected


def test_symbols_are_positive_integers():
    n = value("n")
    assert n.is_integer and n.is_positive
    assert value("n - n") == 0
    assert value("n / n") == 1
    assert num.floor(value("n / 1")) == n


def test_names_are_collected():
    assert expr.parse("2 * n + k // s - floor(n / 2)").names == {"n", "k", "s"}
    assert expr.parse("3").names == frozenset()


OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod}


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6).filter(bool))
@settings(max_examples=60, deadline=None)
def test_integer_arithmetic_agrees_with_python(a, b):
    for op, python in OPERATORS.items():
        assert value(f"a {op} b", a=a, b=b) == python(a, b)
    assert value("a / b", a=a, b=b) == Fraction(a, b)


@given(st.integers(1, 10**4), st.integers(1, 50))
@settings(max_examples=60, deadline=None)
def test_symbolic_then_substituted_equals_concrete(n, d):
    for text in ("(n + 2 * 3 - 11) // d + 1", "ceil((n - 1) / d) + 1", "n % d", "max(n // d, 1)"):
        formula = value(text, d=d)
        assert num.subs(formula, {"n": n}) == value(text, n=n, d=d), text


# (text, a fragment of the message): everything outside the whitelist, each with its own reason
REFUSED = [
    ("__import__('os')", "calling __import__() is not allowed"),
    ("open('x')", "calling open() is not allowed"),
    ("exec('1')", "calling exec() is not allowed"),
    ("f(1)", "calling f() is not allowed"),
    ("floor(n=1)", "calling floor() is not allowed"),  # keywords: not the whitelisted form
    ("().__class__", "attribute access not allowed"),
    ("n.real", "attribute access not allowed"),
    ("(1).__class__.__bases__[0].__subclasses__()", "calls not allowed"),
    ("lambda: 1", "lambdas not allowed"),
    ("(lambda x: x)(1)", "calls not allowed"),
    ("a[0]", "subscripts not allowed"),
    ("n == 1", "cannot decide 'n == 1' while n has no value"),  # a condition must be decidable
    ("1 if n > 2 else 2", "cannot decide 'n > 2' while n has no value"),
    ("(n - 1) and 2", "cannot decide 'n - 1' while n has no value"),
    ("a < b", "cannot decide 'a < b' while a, b have no value"),
    ("n is 1", "that operator not allowed"),
    ("n in 1", "that operator not allowed"),
    ("'x'", "'x' is not a number"),
    ("f'{1}'", "strings not allowed"),
    ("1j", "1j is not a number"),
    ("[1, 2]", "lists not allowed"),
    ("(1, 2)", "tuples not allowed"),
    ("{1: 2}", "dicts not allowed"),
    ("{1}", "sets not allowed"),
    ("[x for x in y]", "comprehensions not allowed"),
    ("(n := 1)", "assignments not allowed"),
    ("not n - 1", "cannot decide 'n - 1' while n has no value"),
    ("~n", "that operator not allowed"),
    ("1 << 2", "that operator not allowed"),
    ("1 & 2", "that operator not allowed"),
    ("1 @ 2", "that operator not allowed"),
    ("floor", "floor is a function"),
    ("floor(1, 2)", "floor() takes 1 argument, got 2"),
    ("max()", "max() takes from 1 to 8 arguments, got 0"),
    ("1 +", "cannot read '1 +' as a formula"),
    ("import os", "cannot read"),
    ("1; 2", "cannot read"),
    ("", "empty expression"),
    ("   ", "empty expression"),
    ("1e999", "number out of range"),
    ("1 / 0", "division by zero"),
    ("1 // 0", "division by zero"),
    ("1 % 0", "division by zero"),
    ("n / (2 - 2)", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("n ** 0.5", "exponents must be whole numbers from -64 to 64, got 1/2"),
    ("2 ** n", "exponents must be whole numbers from -64 to 64, got n"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=[c[0] or "empty" for c in REFUSED])
def test_refused(text, message):
    with pytest.raises(ExprError, match=re.escape(message)) as caught:
        value(text)
    assert isinstance(caught.value, SpecError)  # the CLI turns it into exit status 2


def test_refusals_say_what_is_allowed():
    with pytest.raises(ExprError) as caught:
        value("n.real")
    assert caught.value.hint == f"allowed: {expr.ALLOWED}"
    with pytest.raises(ExprError) as caught:
        value("open('x')")
    assert caught.value.hint == "the only functions are floor, ceil, min, max"


# Inputs built to take forever (or all the memory) if evaluated naively: each refused, fast.
HOSTILE = [
    ("10**10**10**10", "exponents must be whole numbers"),
    ("9**9**9", "exponents must be whole numbers from -64 to 64, got 387420489"),
    ("2**10000", "exponents must be whole numbers from -64 to 64, got 10000"),
    ("(2**64)**64", "a value grows past 1024 bits"),
    ("(10**64)**5 * 10**64", "a value grows past 1024 bits"),
    ("9" * 400, "a value grows past 1024 bits"),
    ("1e308 * 10", "a value grows past 1024 bits"),
    ("1.0000001 ** 64", "a value grows past 1024 bits"),
    ("9" * 600, "expression is 600 characters long; the limit is 500"),
    ("1+" * 300 + "1", "expression is 601 characters long"),
    ("-" * 200 + "1", "nested more than 60 levels deep"),
    ("(" * 250 + "1" + ")" * 250, "characters long"),
    ("(" * 210 + "1" + ")" * 210, "cannot read"),  # Python's parser stops at 200 nested parentheses
    ("floor(" * 70 + "n" + ")" * 70, "nested more than 60 levels deep"),
    ("x%2%3%5%7%11%13%17%19%23%29%31%37%41%43%47%53%59%61%67%71%73%79%83%89%97", "grows past 1000 terms"),
    ("%".join(f"x{i}" for i in range(40)), "grows past 1000 terms"),
    ("max(" + ",".join(f"x%{i}" for i in range(2, 34)) + ")", "max() takes from 1 to 8 arguments, got 32"),
    ("max(" + ",".join("max(" + ",".join(f"x%{8 * j + i + 2}" for i in range(8)) + ")" for j in range(5)) + ")",
     "min() and max() take at most 8 arguments in all, got 45"),
    # sympy took 12 s to compare these two, and 41 s to decide the sign of the next one
    ("max((((y*y)/(2)**62))**20, (((3//7)-(y)**64)+((3-2)%(3*2))))", "a number in the formula grows past 64 bits"),
    ("y**3/(2**50)**20 + y**16 - 1", "a number in the formula grows past 64 bits"),
    ("max(y**40/7, 1 - y**64)", "y**40 is a power above 16 of an unknown size"),
    ("y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y", "y**17 is a power above 16"),
]


@pytest.mark.parametrize("text, message", HOSTILE, ids=[c[0][:30] for c in HOSTILE])
def test_hostile_inputs_are_refused_in_well_under_a_second(text, message):
    num.symbol("warm")  # sympy's first import is not the parser's time
    start = time.process_time()
    with pytest.raises(ExprError, match=re.escape(message)):
        value(text)
    assert time.process_time() - start < 1.0


# Allowed, but the worst the limits let through that we found: sympy must still decide them quickly.
SLOW_BUT_ALLOWED = [
    "max(" + ",".join(f"floor(x/{i})" for i in range(2, 10)) + ")",
    "max(" + ",".join(f"x%{i}" for i in range(2, 10)) + ")",
    "min(" + ",".join(f"(x+{i})**16" for i in range(8)) + ")",
    "y**3/2**60 + y**16 - 1",
    "x%2%3%5%7%11%13%17",
    "floor(" * 30 + "x" + "/y)" * 30,
    "max(((2*z)*(3%y)),((((7%z))**8)**2-(max((x//x),(1-3))%((z+2)%(1+3)))))",
]


@pytest.mark.parametrize("text", SLOW_BUT_ALLOWED, ids=[c[:30] for c in SLOW_BUT_ALLOWED])
def test_the_slowest_allowed_formulas_stay_fast(text):
    num.symbol("warm")
    start = time.process_time()
    formula = value(text)
    str(formula), formula.is_positive, formula.is_integer  # what the engine asks of a size
    assert time.process_time() - start < 1.0


def test_errors_are_located_by_the_spec_reader():
    import archcalc

    with pytest.raises(ExprError) as caught:
        archcalc.loads('[model]\ninput = [3]\n[[layers]]\ntype = "dense"\nout_features = "__import__(\'os\')"\n')
    error = caught.value
    assert (error.where, error.field, error.path, error.line) == ('layers[1] "dense1" (dense)', "out_features", "<spec>", 5)


PATTERN = re.compile(r"\b(eval|exec)\(|sympify\(|parse_expr\(")


def test_nothing_in_the_package_can_run_spec_text():
    """Spec text must never reach a Python evaluator: the before-stop hook greps for the same."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "archcalc").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PATTERN.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == []
