"""The arguments of archcalc's public functions, checked at the door.

A grading script passes what it has: a float from a CSV, None, a numpy number, a list. A wrong type
is one TypeError and a wrong value one SpecError, each naming the argument and what it may be, never
an AttributeError or a Fraction's ValueError from deep inside.

>>> number(2.5, "H", "analyze")
Fraction(5, 2)
>>> number(None, "H", "analyze")
Traceback (most recent call last):
...
TypeError: analyze(H=None): H must be a number (int, Fraction, finite float), a formula as text ("2 * n") or a sympy expression, got NoneType
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from fractions import Fraction

from . import expr, num, untrusted
from .errors import SpecError
from .num import Value

ALLOWED = 'a number (int, Fraction, finite float), a formula as text ("2 * n") or a sympy expression'


def _shown(value: object) -> str:
    return untrusted.one_line(repr(value)[:60])


def number(value: object, name: str, call: str, field: str | None = None) -> Value:
    """A value given for a name (analyze(spec, H=224), --set H=224), as archcalc computes with it; `field`: the
    name its errors give (B for analyze's batch)."""
    field = field or name
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{call}({name}={_shown(value)}): {name} must be {ALLOWED}, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):  # int, and numpy's integers
        return int(value)
    if isinstance(value, numbers.Rational):  # Fraction
        return num.normal(Fraction(int(value.numerator), int(value.denominator)))
    if isinstance(value, numbers.Real) and not type(value).__module__.startswith("sympy"):  # float, numpy's floats
        value = float(value)
        if not math.isfinite(value):
            raise SpecError(f"expected a finite number, got {value}", f"{name} is a size: a whole number, or a formula as text",
                            field, "values")
        return num.normal(Fraction(repr(value)))
    if isinstance(value, str):
        try:
            return expr.parse(value).evaluate({})
        except SpecError as error:
            raise error.at(field=field, where="values") from None
    if type(value).__module__.startswith("sympy") and isinstance(value, num.sym().Expr):
        if value.is_extended_real is False or value.is_finite is False:
            raise SpecError(f"expected a real, finite number, got {_shown(value)}", None, field, "values")
        return num.normal(value)  # a sympy expression from a script
    raise TypeError(f"{call}({name}=...): {name} must be {ALLOWED}, got {type(value).__name__} {_shown(value)}")


def batch(value: object, call: str) -> Value | None:
    """A batch given to a byte count's `at(batch)`: None (a formula in B), a whole number >= 1, or a formula."""
    if value is None:
        return None
    where = f"{call}()"
    if isinstance(value, bool):
        raise TypeError(f"{call}(batch={value}): batch must be a whole number >= 1, a formula or None (a formula in B)")
    try:
        value = number(value, "batch", call)
    except SpecError as error:
        raise dataclasses.replace(error, where=where) from None
    if num.is_concrete(value) and (value != int(value) or value < 1):
        raise SpecError(f"{value} is not a batch: a batch is a whole number >= 1", None, "batch", where)
    if num.is_concrete(value) and (problem := untrusted.problem_of_size(value)):
        raise SpecError(problem, None, "batch", where)
    return value
