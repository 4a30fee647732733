"""A running total of byte counts, numbers or formulas, that adds and subtracts in a dict.

The timeline (archcalc/memory/timeline/) adds and frees a thousand tensors a step; with sizes in T, each
`+` of sympy expressions flattens, sorts and derives assumptions anew (a tenth of a second for
GPT-2). A Tally keeps the sum as {term: coefficient} and makes a formula only when asked, once per
distinct value: the same canonical sum sympy's `+` gives (sympy collects like terms the same way).

>>> from archcalc.core import num
>>> t = Tally()
>>> t.add(768 * num.symbol("T")); t.add(5); t.add(-768 * num.symbol("T"))
>>> t.key(), value(t.key())  # a formula that cancelled: its number, but not concrete (as sympy's Integer(5))
(Cancelled(5), 5)
>>> t.add(2 * num.symbol("T") ** 2); value(t.key())
2*T**2 + 5
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from . import num


@lru_cache(maxsize=4096)
def _terms(x) -> tuple:
    """A formula's (term, coefficient) pairs, coefficients as int or Fraction; the constant's term is 1."""
    return tuple((1 if term == 1 else term, num.normal(coefficient)) for term, coefficient in x.as_coefficients_dict().items())


class Tally:
    __slots__ = ("_key", "symbolic", "terms")

    def __init__(self) -> None:
        self.terms: dict = {}
        self.symbolic = False  # a formula was added: the sum is a sympy value from then on, as with `+`
        self._key = 0

    def add(self, x, sign: int = 1) -> None:
        """Add `sign`·x (x an int, a Fraction or a sympy value)."""
        if isinstance(x, (int, Fraction)):
            if not x:
                return
            pairs: tuple = ((1, x),)
        else:
            self.symbolic = True
            pairs = _terms(x)
        terms = self.terms
        for term, coefficient in pairs:
            total = terms.get(term, 0) + sign * coefficient
            if total:
                terms[term] = total
            else:
                terms.pop(term, None)
        self._key = None

    def key(self):
        """The sum as a hashable value, equal where the sums are: a number while no formula was added,
        a Cancelled number where the formulas cancelled, else the frozenset of its terms (see `value`)."""
        if self._key is None:
            constant = self.terms.get(1, 0)
            if not self.symbolic:
                self._key = constant
            elif len(self.terms) <= (1 in self.terms):
                self._key = Cancelled(constant)
            else:
                self._key = frozenset(self.terms.items())
        return self._key


class Cancelled:
    """The key of a sum whose formulas cancelled: equal to its number, as sympy's Integer(5) is after
    T - T + 5, and like it not a concrete int (compared with a formula's key without sympy, which would
    make a set of the frozenset)."""

    __slots__ = ("number",)

    def __init__(self, number) -> None:
        self.number = number

    def __eq__(self, other) -> bool:
        if isinstance(other, Cancelled):
            return self.number == other.number
        return self.number == other if isinstance(other, (int, Fraction)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.number)

    def __repr__(self) -> str:
        return f"Cancelled({self.number!r})"


def value(key):
    """The number or formula a Tally's key stands for (made normal: sympy numbers become int or Fraction)."""
    if isinstance(key, Cancelled):
        return num.normal(key.number)
    if isinstance(key, frozenset):
        return num.normal(num.sym().Add(*(num._sympy(c) * t for t, c in key)))
    return num.normal(key)
