"""Recompute the arithmetic written in a derivation: every clause `a + b·c = d = ...` whose sides are numbers.

A line is cut into clauses at ": ", "; " and ", " (digits are grouped with a comma and no space); a clause into
sides at " = ". Words and parenthesised remarks ("(621.23 MiB)", "(float32)") are dropped from a side; what is
left must read as arithmetic on numbers (+ − · × / ⌊⌋ ⌈⌉ ² ³ and parentheses), or the side is not a number and
is not compared. Consecutive sides that are numbers must be equal, within half a unit of the last digit written
where a side has decimals (a percentage is read in %).
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from fractions import Fraction

_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9']*")
_REMARK = re.compile(r"\([^()]*[A-Za-z][^()]*\)")  # a parenthesised remark: it has a word in it
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_SUPERSCRIPT = {"²": "**2", "³": "**3"}


def clauses(line: str) -> list[str]:
    return [c for c in re.split(r": |; |, ", line) if " = " in c]


def value(side: str) -> tuple[Fraction, Fraction] | None:
    """(the side's value, how far off its rounding may be), or None when it is not arithmetic on numbers."""
    text = side
    while _REMARK.search(text):
        text = _REMARK.sub(" ", text)
    percent = "%" in text
    text = _WORD.sub(" ", text.replace("%", " "))
    if not re.search(r"\d", text):
        return None
    decimals = max((len(m.group().split(".")[1]) for m in _NUMBER.finditer(text) if "." in m.group()), default=None)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    for a, b in (("·", "*"), ("×", "*"), ("−", "-"), ("⌊", "floor("), ("⌋", ")"), ("⌈", "ceil("), ("⌉", ")"),
                 *_SUPERSCRIPT.items()):
        text = text.replace(a, b)
    text = text.strip().rstrip(".")
    if not re.fullmatch(r"[\d\s.+\-*/()]*(?:(?:floor|ceil)[\d\s.+\-*/()]*)*", text) or re.search(r"\d\s+\d", text):
        return None
    try:
        result = _evaluate(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None
    slack = Fraction(0) if decimals is None else Fraction(1, 2 * 10**decimals)
    if percent:
        result, slack = result / 100, slack / 100
    return result, slack


def _evaluate(node) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp):
        a, b = _evaluate(node.left), _evaluate(node.right)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
               ast.Pow: lambda: a ** int(b)}
        if type(node.op) in ops:
            return ops[type(node.op)]()
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        inner = _evaluate(node.args[0])
        return Fraction({"floor": math.floor, "ceil": math.ceil}[node.func.id](inner))
    raise ValueError(ast.dump(node))


def wrong(derivation: str) -> list[str]:
    """The clauses of `derivation` whose arithmetic is false, each with the two sides that differ."""
    out = []
    for line in derivation.splitlines():
        for clause in clauses(line):
            sides = [(side, value(side)) for side in clause.split(" = ")]
            numbers = [(side, v) for side, v in sides if v is not None]
            for (a, (x, dx)), (b, (y, dy)) in itertools.pairwise(numbers):
                if abs(x - y) > dx + dy:
                    out.append(f"{clause!r}: {a.strip()} = {float(x):,} but {b.strip()} = {float(y):,}")
    return out


def checked(derivation: str) -> int:
    """How many equalities between numbers `derivation` writes (to make sure the test reads some)."""
    count = 0
    for line in derivation.splitlines():
        for clause in clauses(line):
            count += max(0, sum(value(side) is not None for side in clause.split(" = ")) - 1)
    return count
