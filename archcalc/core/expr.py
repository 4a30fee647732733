"""The whitelist parser for expressions in specs: `"classes"`, `"(k - 1) / 2"`, `"2 * n + 1"`.

Spec text comes from students and strangers, and sympy's parsers run Python, so
spec text never meets eval, exec, sympify or parse_expr. Python's own *parser*
(`ast.parse`, which builds a tree and runs nothing) reads the text, and only the
nodes below are accepted: numbers, names, + - * / // % **, parentheses, the
functions floor, ceil, min, max, and conditions: comparisons, `and`, `or`, `not`,
`a if c else b` (True and False act as 1 and 0). Evaluation is exact (int, Fraction)
and becomes symbolic (sympy) only where a name is still unknown; a condition must be
decidable, else an ExprError says which names it needs.

>>> parse("(k - 1) / 2").evaluate({"k": 5})
2
>>> str(parse("2 * n + 1").evaluate({}))
'2*n + 1'
>>> parse("2 if index == 0 else 1").evaluate({"index": 0})
2
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from . import num, untrusted
from .errors import ExprError
from .num import Value

MAX_LENGTH = 500
MAX_DEPTH = 60
MAX_EXPONENT = 64  # k**2 and 2**10 are fine; 10**10**10 is an attack
MAX_BITS = 1024  # no concrete value may outgrow this many bits
MAX_CHOICES = 8  # arguments of min() and max() in all: sympy compares every pair of symbolic ones
# Formulas (values with unknown names) are bounded too: sympy decides their signs, and that time grows
# sharply with their size ("x % 2 % 3 % 5 ..." doubles at each %), their powers and their coefficients' digits.
MAX_NODES = 1000
MAX_POWER = 16
MAX_COEFFICIENT_BITS = 64

ALLOWED = "numbers, names, + - * / // % **, parentheses, floor(), ceil(), min(), max(), comparisons, and, or, not, a if c else b"

FUNCTIONS = {
    "floor": (1, 1, lambda args: num.floor(args[0])),
    "ceil": (1, 1, lambda args: num.ceil(args[0])),
    "min": (1, MAX_CHOICES, lambda args: num.minimum(*args)),
    "max": (1, MAX_CHOICES, lambda args: num.maximum(*args)),
}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_NOT_ALLOWED = {
    ast.Call: "calls",  # of anything but a whitelisted function's name
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignments",
    ast.Starred: "starred arguments",
    ast.JoinedStr: "strings",
}


@dataclass(frozen=True)
class Expr:
    """A parsed, checked expression; `evaluate` gives its exact value."""

    text: str
    names: frozenset[str]
    tree: ast.expr = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, Value]) -> Value:
        """The value, with names from `env`; the rest become positive integer symbols."""
        return _evaluate(self.tree, env, self.text)

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Expr:
    """Parse and check `text`, or raise ExprError saying what is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise ExprError("empty expression", "write a number or a formula such as \"2 * n + 1\"")
    if problem := untrusted.styled_problem(text):
        raise ExprError(f"{text!r}: {problem}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExprError(f"cannot read {text!r} as a formula", f"allowed: {ALLOWED}") from None
    names: set[str] = set()
    _check(tree, text, names, 0)
    choices = sum(len(node.args) for node in ast.walk(tree) if isinstance(node, ast.Call) and node.func.id in ("min", "max"))
    if choices > MAX_CHOICES:
        raise ExprError(
            f"{text!r}: min() and max() take at most {MAX_CHOICES} arguments in all, got {choices}",
            "comparing formulas costs time for every pair of them",
        )
    return Expr(text=text, names=frozenset(names), tree=tree)


def _check(node: ast.AST, text: str, names: set[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ExprError(f"{text!r} is nested more than {MAX_DEPTH} levels deep")
    match node:
        case ast.Constant(value=bool()):
            pass  # True and False act as 1 and 0
        case ast.Constant(value=complex()) | ast.Constant(value=str()):
            raise ExprError(f"{text!r}: {node.value!r} is not a number", f"allowed: {ALLOWED}")
        case ast.Constant(value=int() | float()):
            if isinstance(node.value, float) and not math.isfinite(node.value):
                raise ExprError(f"{text!r}: number out of range")
        case ast.Name(id=name):
            if name in FUNCTIONS:
                raise ExprError(f"{text!r}: {name} is a function", f"write {name}(...)")
            names.add(name)
        case ast.UnaryOp(op=ast.USub() | ast.UAdd() | ast.Not(), operand=operand):
            _check(operand, text, names, depth + 1)
        case ast.Compare(left=left, ops=ops, comparators=rest) if all(type(op) in _COMPARE for op in ops):
            for part in (left, *rest):
                _check(part, text, names, depth + 1)
        case ast.BoolOp(values=values):
            for part in values:
                _check(part, text, names, depth + 1)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            for part in (test, body, orelse):
                _check(part, text, names, depth + 1)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            _check(left, text, names, depth + 1)
            _check(right, text, names, depth + 1)
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            low, high, _ = FUNCTIONS[name]
            if not low <= len(args) <= high:
                count = f"{low} argument" if low == high else f"from {low} to {high} arguments"
                raise ExprError(f"{text!r}: {name}() takes {count}, got {len(args)}")
            for arg in args:
                _check(arg, text, names, depth + 1)
        case ast.Call(func=ast.Name(id=name)):
            raise ExprError(
                f"{text!r}: calling {name}() is not allowed", f"the only functions are {', '.join(FUNCTIONS)}"
            )
        case _:
            what = _NOT_ALLOWED.get(type(node)) or type(node).__name__.lower()
            if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare)):
                what = "that operator"
            raise ExprError(f"{text!r}: {what} not allowed in an expression", f"allowed: {ALLOWED}")


def _evaluate(node: ast.expr, env: Mapping[str, Value], text: str) -> Value:
    match node:
        case ast.Constant(value=bool() as value):
            return int(value)
        case ast.Constant(value=int() as value):
            return _bounded(value, text)
        case ast.Constant(value=float() as value):
            return num.normal(Fraction(repr(value)))
        case ast.Name(id=name):
            return env[name] if name in env else num.symbol(name)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return int(not truth(_evaluate(operand, env, text), text, operand))
        case ast.UnaryOp(op=op, operand=operand):
            x = _evaluate(operand, env, text)
            return -x if isinstance(op, ast.USub) else x
        case ast.Compare(left=left, ops=ops, comparators=rest):
            a = _evaluate(left, env, text)
            for op, right in zip(ops, rest):  # chained as Python does: a < b < c is a < b and b < c
                b = _evaluate(right, env, text)
                if not _compare(type(op), a, b, text, node):
                    return 0
                a = b
            return 1
        case ast.BoolOp(op=op, values=values):
            want = isinstance(op, ast.Or)  # `or` stops at the first true part, `and` at the first false one
            for part in values:
                if truth(_evaluate(part, env, text), text, part) == want:
                    return int(want)
            return int(not want)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _evaluate(body if truth(_evaluate(test, env, text), text, test) else orelse, env, text)
        case ast.Call(func=ast.Name(id=name), args=args):
            return _bounded(FUNCTIONS[name][2]([_evaluate(a, env, text) for a in args]), text)
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _evaluate(left, env, text), _evaluate(right, env, text)
            return _bounded(_binary(type(op), a, b, text), text)
    raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


def truth(x: Value, text: str, node: ast.AST | None = None) -> bool:
    """Whether a value is non-zero, or an ExprError when that depends on sizes still unknown."""
    if num.is_concrete(x):
        return x != 0
    if x.is_zero is not None:
        return not x.is_zero
    _undecidable(x, text, node)


def _compare(op: type, a: Value, b: Value, text: str, node: ast.AST) -> bool:
    if num.is_concrete(a) and num.is_concrete(b):
        difference = a - b
    else:
        difference = num.normal(a - b)
    if num.is_concrete(difference):
        sign = (difference > 0) - (difference < 0)
    elif difference.is_zero:
        sign = 0
    elif difference.is_positive:
        sign = 1
    elif difference.is_negative:
        sign = -1
    else:
        if op in (ast.Eq, ast.NotEq) and difference.is_zero is False:
            return op is ast.NotEq
        if (op is ast.GtE and difference.is_nonnegative) or (op is ast.LtE and difference.is_nonpositive):
            return True
        if (op is ast.Lt and difference.is_nonnegative) or (op is ast.Gt and difference.is_nonpositive):
            return False
        _undecidable(difference, text, node)
    return {ast.Eq: sign == 0, ast.NotEq: sign != 0, ast.Lt: sign < 0, ast.LtE: sign <= 0,
            ast.Gt: sign > 0, ast.GtE: sign >= 0}[op]


def _undecidable(x: Value, text: str, node: ast.AST | None) -> None:
    names = ", ".join(sorted(num.free_names(x)))
    part = ast.get_source_segment(text.strip(), node) if node is not None else text
    raise ExprError(
        f"{text!r}: cannot decide {part or 'the condition'!r} while {names} {'has' if ',' not in names else 'have'} no value",
        f"give {names} a value ([vars] or --set): a condition must be true or false",
    )


def _binary(op: type, a: Value, b: Value, text: str) -> Value:
    if op in (ast.Div, ast.FloorDiv, ast.Mod) and num.is_concrete(b) and b == 0:
        raise ExprError(f"{text!r}: division by zero")
    if op is ast.Add:
        return num.normal(a + b)
    if op is ast.Sub:
        return num.normal(a - b)
    if op is ast.Mult:
        return num.normal(a * b)
    if op is ast.Div:
        return num.div(a, b)
    if op is ast.FloorDiv:
        return num.floordiv(a, b)
    if op is ast.Mod:
        return num.normal(a - b * num.floordiv(a, b))
    return _power(a, b, text)


def _power(a: Value, b: Value, text: str) -> Value:
    if not (isinstance(b, int) and abs(b) <= MAX_EXPONENT):
        raise ExprError(
            f"{text!r}: exponents must be whole numbers from -{MAX_EXPONENT} to {MAX_EXPONENT}, got {b}",
            "towers of powers are refused: they could take forever to compute",
        )
    if num.is_concrete(a):
        if a == 0 and b < 0:
            raise ExprError(f"{text!r}: division by zero")
        return num.normal(Fraction(a) ** b)
    return num.normal(a**b)


def _bounded(x: Value, text: str) -> Value:
    """Refuse values too big to be sizes, and formulas that would make sympy's sign checks crawl."""
    if num.is_concrete(x):
        if _bits(x) > MAX_BITS:
            raise ExprError(f"{text!r}: a value grows past {MAX_BITS} bits", "sizes in a network are far smaller")
        return x
    for count, node in enumerate(num.sym().preorder_traversal(x)):
        if count == MAX_NODES:
            raise ExprError(f"{text!r}: the formula grows past {MAX_NODES} terms", _SHORTER)
        if node.is_Pow and node.exp.is_Number and abs(node.exp) > MAX_POWER:
            raise ExprError(f"{text!r}: {node} is a power above {MAX_POWER} of an unknown size", _SHORTER)
        if node.is_Rational and _bits(num.normal(node)) > MAX_COEFFICIENT_BITS:
            raise ExprError(f"{text!r}: a number in the formula grows past {MAX_COEFFICIENT_BITS} bits", _SHORTER)
    return x


_SHORTER = "sizes in a network have far shorter formulas"


def _bits(x: int | Fraction) -> int:
    return x.bit_length() if isinstance(x, int) else max(x.numerator.bit_length(), x.denominator.bit_length())
