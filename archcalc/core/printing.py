"""sympy's str() and sort keys of archcalc's formulas, character for character, each part worked out once.

A deep network's peak over B is a Max of a thousand sums fixed + per_sample·B that share most of their parts.
sympy's printer orders every sum by decomposing each of its terms again (Expr.as_terms: every coefficient
through evalf), orders every product by its factors' sort keys (which order sums the same way), and its
caches keep the last 1,000 results. Here each part is written once, each term decomposed once and each sort
key made once (until PARTS of them, then afresh); the steps are sympy's own, copied where they were slow
(tests/core/test_printing.py holds them to sympy's text and keys). Imported with the first formula printed.
"""

from __future__ import annotations

import sympy
from sympy.core.exprtools import decompose_power
from sympy.core.sorting import default_sort_key
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

PARTS = 50_000  # remembered texts, terms and keys, at most (a long-lived process prints many networks)
_NUMERIC = (sympy.Number, sympy.NumberSymbol)


class _Printer(StrPrinter):
    def __init__(self):
        super().__init__()
        self.written: dict = {}  # a part -> its text: a part is written the same wherever it sits (see text)
        self.terms: dict = {}  # a term of a sum -> what Expr.as_terms makes of it
        self.keys: dict = {}  # a formula -> its sort key

    def forget_if_full(self) -> None:
        if len(self.written) + len(self.terms) + len(self.keys) >= PARTS:
            self.written.clear()
            self.terms.clear()
            self.keys.clear()

    def _print(self, expr, **kwargs):
        if kwargs or not getattr(expr, "args", None):  # atoms: a Float's digits depend on its nesting
            return super()._print(expr, **kwargs)
        found = self.written.get(expr)
        if found is None:
            found = self.written[expr] = super()._print(expr)
        return found

    def _as_ordered_terms(self, expr, order=None):
        if (order or self.order) is not None or not expr.is_Add:
            return super()._as_ordered_terms(expr, order)
        return ordered_terms(expr)

    def _print_Add(self, expr, order=None):
        # number + term, the shape of every byte count (fixed + per_sample·B): the term, then the number
        if order is None and self.order is None and len(expr.args) == 2 and _term_then_number(*expr.args):
            number, term = expr.args
            return f"{self._print(term)} {'+' if number > 0 else '-'} {abs(number)}"
        # StrPrinter._print_Add, but for a product's precedence (sympy negates the product to find its sign)
        terms = self._as_ordered_terms(expr, order=order)
        out = []
        for term in terms:
            t = self._print(term)
            sign = "-" if t.startswith("-") and not term.is_Add else "+"
            t = t[1:] if sign == "-" else t
            out += [sign, f"({t})" if _precedence(term) < PRECEDENCE["Add"] or term.is_Add else t]
        sign = out.pop(0)
        return ("" if sign == "+" else sign) + " ".join(out)

    def _print_Mul(self, expr):
        # a positive whole coefficient (or none) times factors that are neither numbers nor powers: sympy writes
        # the coefficient, then the factors by their sort keys, a sum among them in parentheses
        args = expr.args
        number = args[0] if args[0].is_Number else None
        factors = args[1:] if number is not None else args
        if self.order is None and (number is None or (number.is_Integer and number > 1)) and \
                all(a.is_commutative and not a.is_Number and not a.is_Pow for a in factors):
            parts = [self.parenthesize(f, PRECEDENCE["Mul"]) for f in sorted(factors, key=sort_key)]
            return "*".join(([str(number)] if number is not None else []) + parts)
        return super()._print_Mul(expr)


_PRINTER = _Printer()


def text(x) -> str:
    """str(x), for a sympy object."""
    _PRINTER.forget_if_full()
    return _PRINTER.doprint(x)


def sort_key(x):
    """sympy's default_sort_key(x), each part's made once: Expr.sort_key's steps, a sum's terms ordered by
    `ordered_terms`; any other kind of formula is sympy's own."""
    keys = _PRINTER.keys
    found = keys.get(x)
    if found is None:
        found = keys[x] = _sort_key(x)
    return found


_ONE = sympy.S.One.sort_key()


def _sort_key(x):
    if not isinstance(x, sympy.Expr) or x.is_Atom or not (x.is_Add or x.is_Mul or x.is_Function):
        return default_sort_key(x)
    coeff, expr = x.as_coeff_Mul()
    if expr.is_Pow or expr.is_Atom or expr.is_Dummy:
        return default_sort_key(x)
    if expr.is_Add:
        args = ordered_terms(expr)
    elif expr.is_Mul:
        commutative, other = expr.args_cnc()
        if other:
            return default_sort_key(x)
        args = sorted(commutative, key=sort_key)
    else:
        args = expr.args
    keys = tuple(sort_key(a) for a in args)
    return expr.class_key(), (len(keys), keys), _ONE, coeff


def ordered_terms(expr) -> list:
    """`expr.as_ordered_terms()` (lex order), each term decomposed once (Expr.as_terms redoes it for every sum)."""
    args = sympy.Add.make_args(expr)
    first = sorted(args, key=lambda x: not isinstance(x, _NUMERIC))
    if len(first) == 2 and isinstance(first[0], _NUMERIC) and isinstance(first[1], sympy.Mul):  # "1 - x", as sympy does
        factors = sorted(sympy.Mul.make_args(first[1]), key=lambda x: not isinstance(x, _NUMERIC))
        if len(factors) == 2 and isinstance(factors[0], sympy.Number) and first[0].is_positive and factors[0].is_negative:
            return first
    memo = _PRINTER.terms
    parts = []
    for term in args:
        part = memo.get(term)
        if part is None:
            part = memo[term] = _decomposed(term)
        parts.append(part)
    if any(other for _, _, other in parts) or any(term.is_Order for term in args):
        return expr.as_ordered_terms()
    gens = sorted({base for _, powers, _ in parts for base in powers}, key=sort_key)
    index = {g: i for i, g in enumerate(gens)}

    def key(item):
        (re, im), powers, _ = item[1]
        monom = [0] * len(gens)
        for base, power in powers.items():
            monom[index[base]] = power
        return tuple(-m for m in monom), (), ((bool(im), im), (re, im))

    return [term for term, _ in sorted(zip(args, parts), key=key)]


def _decomposed(term) -> tuple:
    """What Expr.as_terms makes of one term: its coefficient as a complex number, its powers, its other factors."""
    coeff, rest = term.as_coeff_Mul()
    coeff = complex(coeff)
    powers, other = {}, []
    if rest is not sympy.S.One:
        for factor in sympy.Mul.make_args(rest):
            if factor.is_number:
                try:
                    coeff *= complex(factor)
                except (TypeError, ValueError):
                    pass
                else:
                    continue
            if factor.is_commutative:
                base, power = decompose_power(factor)
                powers[base] = power
            else:
                other.append(factor)
    return (coeff.real, coeff.imag), powers, tuple(other)


def _precedence(x) -> int:
    """sympy's precedence(x); of a product without a negative number first, without negating it (precedence_Mul:
    only a product whose sign can be taken out, a negative number first, is a sum's)."""
    if x.is_Mul and not hasattr(x, "precedence"):
        first = x.args[0]
        if first.is_Number and first.is_extended_negative:
            return precedence(x)  # sympy's own steps, negation and all
        return PRECEDENCE["Mul"]
    return precedence(x)


def _term_then_number(number, term) -> bool:
    """Whether sympy writes the sum `number + term` as the term, then the number: an integer, and a term with a
    positive coefficient whose every other factor is a positive whole power (its monomial above the number's)."""
    if not number.is_Integer or term.is_number or term.is_Add:
        return False
    coefficient, rest = term.as_coeff_Mul()
    if not coefficient.is_positive:
        return False
    factors = [f for f in sympy.Mul.make_args(rest) if not f.is_number]
    return bool(factors) and all(f.is_commutative and decompose_power(f)[1] > 0 for f in factors)
