"""Exact numbers that may be symbolic: int and Fraction stay plain, sympy comes in with a symbol.

A spec with no unknown sizes never imports sympy (it costs a quarter of a second);
the first free name does. Every formula in archcalc goes through these helpers or
through the operators `+ - * //`, which ints and sympy expressions both honour.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import sympy

Dim = Union[int, "sympy.Expr"]  # a size, possibly a formula in unknown sizes
Value = Union[int, Fraction, "sympy.Expr"]  # what an expression evaluates to
Shape = tuple[Dim, ...]  # one sample's shape; the batch axis is implied


def sym():
    """The sympy module, imported on first use."""
    import sympy

    return sympy


@cache
def symbol(name: str):
    """The free symbol `name`: a positive integer, so that formulas simplify."""
    return sym().Symbol(name, integer=True, positive=True)


def is_concrete(x: object) -> bool:
    return isinstance(x, (int, Fraction))


def normal(x: Value) -> Value:
    """Fractions that are whole become ints; sympy numbers become int or Fraction."""
    if isinstance(x, Fraction):
        return x.numerator if x.denominator == 1 else x
    if isinstance(x, int):
        return int(x)  # bool -> int
    if getattr(x, "is_Integer", False):
        return int(x)
    if getattr(x, "is_Rational", False):
        return Fraction(int(x.p), int(x.q))
    return x  # a formula (or no number at all: a float, a word, None)


def _sympy(x: Value):
    if isinstance(x, Fraction):
        return sym().Rational(x.numerator, x.denominator)
    return x


def div(a: Value, b: Value) -> Value:
    """Exact a / b."""
    if is_concrete(a) and is_concrete(b):
        return normal(Fraction(a) / Fraction(b))
    return normal(_sympy(a) / _sympy(b))


def floor(x: Value) -> Value:
    if isinstance(x, int):
        return x
    if isinstance(x, Fraction):
        return math.floor(x)
    return normal(sym().floor(x))


def ceil(x: Value) -> Value:
    if isinstance(x, int):
        return x
    if isinstance(x, Fraction):
        return math.ceil(x)
    return normal(sym().ceiling(x))


def floordiv(a: Value, b: Value) -> Value:
    """⌊a / b⌋, exactly."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return floor(div(_unnest(a, "floor"), b) if _whole_positive(b) else div(a, b))


def ceildiv(a: Value, b: Value) -> Value:
    """⌈a / b⌉, exactly."""
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return ceil(div(_unnest(a, "ceiling"), b) if _whole_positive(b) else div(a, b))


def _whole_positive(b: Value) -> bool:
    return bool(is_integer(b) and is_positive(b))


def _unnest(a: Value, function: str) -> Value:
    """floor(u) + c -> u + c, for an integer c: ⌊(⌊u⌋ + c)/s⌋ = ⌊(u + c)/s⌋ for whole s > 0 (and so for ceil).

    Without this, every layer nests one more floor: ⌊⌊⌊H/4 − 7/4⌋/2⌋/2⌋ instead of ⌊H/16 − 7/16⌋,
    and formulas grow with depth.
    """
    if is_concrete(a):
        return a
    kind = getattr(sym(), function)
    if isinstance(a, kind):
        return a.args[0]
    if a.is_Add:
        inner = [term for term in a.args if isinstance(term, kind)]
        if len(inner) == 1 and (a - inner[0]).is_integer:
            return inner[0].args[0] + (a - inner[0])
    return a


def minimum(*xs: Value, evaluate: bool = True) -> Value:
    """The smallest of sizes. Over formulas sympy compares every pair, which simplifies a window's
    Min(n, n + 1) to n but takes seconds over many long ones: `evaluate=False` leaves it unevaluated
    (as `maximum` does), with each argument once and the concrete ones folded into their least.

    >>> H = symbol("H")
    >>> minimum(H, H + 1), minimum(H + 1, 7, H + 1, 5, evaluate=False)
    (H, Min(5, H + 1))
    """
    if all(map(is_concrete, xs)):
        return min(xs)
    if evaluate:
        return normal(sym().Min(*dict.fromkeys(map(_sympy, xs))))  # distinct first: Min compares pairwise
    concrete = [x for x in xs if is_concrete(x)]
    terms = [x for x in xs if not is_concrete(x)] + ([_sympy(min(concrete))] if concrete else [])
    distinct = list(dict.fromkeys(terms))
    return distinct[0] if len(distinct) == 1 else sym().Min(*distinct, evaluate=False)


def maximum(*xs: Value) -> Value:
    """The largest of sizes or byte counts (never negative); over formulas, left unevaluated but for multiples
    of one term: sympy would compare every pair of floors, for seconds."""
    if all(map(is_concrete, xs)):
        return max(xs)
    distinct = _largest(xs)
    return distinct[0] if len(distinct) == 1 else sym().Max(*distinct, evaluate=False)


def maximum_json(*xs: Value) -> int | float | str:
    """`to_json(maximum(*xs))`, without making the Max: sympy sorts a new Max's arguments by their size and
    their sort keys, a second each for a deep network's peaks, and its text sorts them again.

    >>> H = symbol("H")
    >>> maximum_json(2 * H + 1, 3, 4 * H + 2, H + 7) == to_json(maximum(2 * H + 1, 3, 4 * H + 2, H + 7))
    True
    """
    if all(map(is_concrete, xs)):
        return to_json(max(xs))
    distinct = _largest(xs)
    if len(distinct) == 1:
        return to_json(distinct[0])
    from .printing import sort_key

    texts = [text(x) for x in sorted(distinct, key=sort_key)]
    if any("." in t for t in texts):  # a Float, whose digits depend on its nesting (no name holds a dot)
        return to_json(maximum(*xs))
    return f"Max({', '.join(texts)})"  # as `text` writes a Max


def _largest(xs) -> list:
    """The distinct arguments of `maximum`'s Max of `xs` (not all concrete)."""
    concrete = [x for x in xs if is_concrete(x)]
    # sizes and byte counts are never negative: of c1·u and c2·u (c > 0), the larger c wins (768·T, 3072·T -> 3072·T)
    scaled: dict = {}
    for x in xs:
        if not is_concrete(x):
            c, rest = x.as_coeff_Mul()
            c, rest = (c, rest) if c > 0 else (1, x)
            scaled[rest] = max(scaled.get(rest, c), c)
    terms = [c * rest for rest, c in scaled.items()] + ([_sympy(max(concrete))] if concrete else [])
    return list(dict.fromkeys(terms))


def mul(xs) -> Value:
    """The product of an iterable (1 when empty)."""
    out: Value = 1
    for x in xs:
        out = out * x
    return normal(out) if not isinstance(out, int) else out


def add(xs) -> Value:
    """The sum of an iterable (0 when empty). Formulas are added in one go: one at a time, sympy
    would flatten and sort the growing sum again at each step, quadratic in a deep network's depth."""
    concrete: Value = 0
    formulas = []
    for x in xs:
        if is_concrete(x):
            concrete += x
        else:
            formulas.append(x)
    if not formulas:
        return normal(concrete)
    return normal(sym().Add(*formulas, _sympy(concrete)))


def is_positive(x: Value) -> bool | None:
    if is_concrete(x):
        return x > 0
    return x.is_positive


def is_nonnegative(x: Value) -> bool | None:
    if is_concrete(x):
        return x >= 0
    return x.is_nonnegative


def is_integer(x: Value) -> bool | None:
    if isinstance(x, int):
        return True
    if isinstance(x, Fraction):
        return x.denominator == 1
    return x.is_integer


def subs(x: Value, values: dict) -> Value:
    """Substitute known names into a symbolic value."""
    if is_concrete(x) or not values:
        return x
    mapping = {symbol(k): _sympy(v) for k, v in values.items()}
    return normal(x.xreplace(mapping))


def free_names(x: Value) -> set[str]:
    if is_concrete(x):
        return set()
    return {s.name for s in x.free_symbols}


@lru_cache(maxsize=4096)
def text(x) -> str:
    """str() of a formula, once: printing sorts terms and is slow, and deep networks repeat them.
    A Max or Min is written as sympy's printer writes it, from its arguments' texts, each once (a phase's
    peak is a Max of formulas that the step's peak repeats); formulas through archcalc/core/printing.py,
    sympy's printer with each part written once."""
    if not type(x).__module__.startswith("sympy"):  # a number (hasattr would walk a formula's tree)
        return str(x)
    from . import printing

    sympy = sym()
    if isinstance(x, (sympy.Max, sympy.Min)) and not x.has(sympy.Float):  # a Float's digits depend on nesting
        return f"{x.func.__name__}({', '.join(text(a) for a in sorted(x.args, key=printing.sort_key))})"
    return printing.text(x)


def shape(s) -> tuple:
    """A shape with each size normal: sympy numbers become int or Fraction."""
    return tuple(normal(d) for d in s)


def to_json(x: Value) -> int | float | str:
    """Concrete integers as ints, other concrete numbers as floats, formulas as sympy's str().

    A sympy number is a concrete number too, never a string:

    >>> import sympy
    >>> [to_json(x) for x in (5, Fraction(1, 2), sympy.Integer(5), sympy.Rational(3, 2), symbol("H") + 1)]
    [5, 0.5, 5, 1.5, 'H + 1']
    """
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, Fraction):
        return float(x)
    x = normal(x)
    return x if isinstance(x, int) else float(x) if isinstance(x, Fraction) else text(x)
