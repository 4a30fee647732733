"""What a claimed value says (docs/claims.md): 34944, "62.4M", "60%", "about 60k", "27²×96", "4096*classes".

A value is read once, by rules, into one of four forms, each of which can say whether
it holds for a true value:

    Exact    an integer or a formula, equal or not: 34944, "9,216", "4096*classes + classes"
    Approx   a number and the precision it states: "62.4M" (± 0.05M), "94%" (± 0.5), "60%" (± 5)
    Bounds   a range or an inequality: "200k..1M", "< 100k"
    Dims     a shape: [96, 27, 27], "96×27×27", "27²×96" (the course's spatial²×channels)

The precision of an approximate number is half a unit of its last significant digit;
trailing zeros of a number written without a decimal point are not significant
("60%" is 60 ± 5, "60.0%" is 60 ± 0.05). Formulas go through archcalc's whitelist
parser (expr.py), never eval or sympify: answer files come from students.

>>> read("62.4M", "count").holds(62378344, {})
True
>>> read("60%", "share").reading()
'60% ± 5'
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction

from ..core import expr, fmt, num, untrusted
from ..core.errors import SpecError
from ..core.num import Value

MAX_LENGTH = 500  # characters in a claimed value (a formula's limit too)
MAX_EXPONENT = 30  # in 6.24e7: the largest claim below has 25 digits
MAX_CLAIMED = 10**24  # FLOPs of a whole batch may pass the 10^18 that bounds sizes
KINDS = ("count", "share", "bytes", "shape", "axes")  # what a quantity is; it decides which forms a value may take

SCALES = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
BYTE_UNITS = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
MARKER = re.compile(r"^(?:about|approx\.?|approximately|around|roughly|environ|~|≈|≃|∼)\s*", re.IGNORECASE)
_SEP = "[,_ \u00a0\u2009\u202f]"  # digit grouping: comma, underscore, space, no-break and thin spaces
NUMBER = re.compile(
    rf"^(?P<sign>[+-]?)(?P<int>\d(?:\d|{_SEP}(?=\d))*)?(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?\s*(?P<unit>[A-Za-z%]*)$"
)
_TOLERANCE = re.compile(r"\s*(?:±|\+/-|\+-)\s*")
_BOUND = re.compile(r"^(?P<op><=|>=|≤|≥|<|>)\s*(?P<rest>.+)$")
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_POWER = re.compile(rf"^(?P<base>.+?)\s*(?:\^\s*(?P<e1>\d+)|\*\*\s*(?P<e2>\d+)|(?P<e3>[{_SUPERSCRIPTS}]+))$")


class ClaimError(SpecError):
    """A claim archcalc cannot read: an unknown key or a malformed value (exit status 2)."""


def _hint(kind: str) -> str:
    return {
        "count": 'an integer (34944, "34,944"), a formula ("4096*classes + classes"), or an approximation ("62.4M", "about 60k")',
        "share": 'a percentage of all parameters: "94%", 60.5, "60% ± 1"',
        "bytes": 'a number of bytes (249513376), or with a unit: "238 MiB", "0.25 GB", "about 1.2 GiB"',
        "axes": 'a number for every spatial axis (195), or one per axis ([195, 195], "195×195")',
        "shape": 'a shape, channels first ([96, 27, 27], "96×27×27", "27²×96"), or its number of values (69984)',
    }[kind]


def equal(a: Value, b: Value) -> bool:
    """Exact equality; formulas are equal when sympy simplifies their difference to 0."""
    if num.is_concrete(a) and num.is_concrete(b):
        return a == b
    difference = num._sympy(a) - num._sympy(b)
    if difference == 0:
        return True
    # Formulas that differ at some point differ: a cheap proof, before sympy's slow simplify.
    names = sorted(difference.free_symbols, key=str)
    for start in (1009, 2003):
        point = {name: start + 7 * i for i, name in enumerate(names)}
        if difference.xreplace(point) != 0:
            return False
    return num.sym().simplify(difference) == 0


@dataclass(frozen=True)
class Tolerance:
    """How far from the true value the instructor lets an answer be: exact, relative ("1%") or absolute.

    It bounds the distance between the value a student wrote and the true value; the precision the
    student states ("62.4M" is ± 0.05M) may only narrow it: an answer holds when the true value is
    within what it states *and* what it states is within this tolerance of the true value.
    """

    relative: Fraction = Fraction(0)  # of the true value's size
    absolute: Fraction = Fraction(0)  # in the quantity's own unit (a share: percentage points)
    text: str = "exact"

    @property
    def exact(self) -> bool:
        return self.relative == 0 and self.absolute == 0

    def allows(self, written: Fraction, actual: Fraction) -> bool:
        """Whether `written` is within this tolerance of the true value `actual`."""
        return abs(written - actual) <= max(self.absolute, self.relative * abs(actual))

    def describe(self) -> str:
        """'exact', 'within 1% of the true value', 'within 0.5'."""
        if self.exact:
            return "exactly"
        return f"within {self.text} of the true value"


EXACT = Tolerance()
TOLERANCE_FORMS = 'a tolerance is "exact", relative to the true value ("1%", "0.5%"), or absolute in the quantity\'s unit ' \
                  '("0.5" points of a share, "1 MiB", "1k")'


def read_tolerance(raw: object, kind: str | None = None) -> Tolerance:
    """An instructor's tolerance: "exact" (or 0), "1%" (relative), or, for one key of `kind`, "1 MiB" or 0.5 (absolute).

    >>> read_tolerance("1%").allows(Fraction(101), Fraction(100))
    True
    """
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ClaimError(f"expected a tolerance, got {_short(str(raw))}", TOLERANCE_FORMS)
    text = " ".join(str(raw).split())
    if text.lower() in ("exact", "exactly", "0", "0%", "0.0"):
        return EXACT
    if isinstance(raw, float) and (raw != raw or raw in (float("inf"), float("-inf"))):
        raise ClaimError(f"expected a tolerance, got {raw}", TOLERANCE_FORMS)
    if text.endswith("%"):
        size, _, _ = _number(text[:-1].strip(), "count", text)
        if not 0 <= size <= 100:
            raise ClaimError(f"a tolerance of {text}: it is between 0% and 100%", TOLERANCE_FORMS)
        return Tolerance(relative=size / 100, text=f"{_plain(size)}%")
    if kind is None or kind == "shape":
        raise ClaimError(f"{_short(text)}: an absolute tolerance needs a quantity to be in the unit of",
                         "for a whole file, give a relative tolerance: \"1%\", or \"exact\"")
    size, _, _ = _number(text, "count" if kind == "axes" else kind, text)
    if size < 0:
        raise ClaimError(f"a tolerance of {text}: it is 0 or more", TOLERANCE_FORMS)
    return Tolerance(absolute=size, text=text + (" points" if kind == "share" else ""))


def _count(actual) -> Value:
    """A shape claimed as a number: its number of values."""
    return num.mul(actual) if isinstance(actual, tuple) else actual


@dataclass(frozen=True)
class Exact:
    """An integer or a formula, compared exactly (formulas symbolically)."""

    value: int | expr.Expr
    text: str

    def evaluate(self, env) -> Value:
        return self.value.evaluate(env) if isinstance(self.value, expr.Expr) else self.value

    def holds(self, actual, env, within: Tolerance | None = None) -> bool | None:
        return equal(self.evaluate(env), _count(actual))

    def reading(self, env=None) -> str:
        if isinstance(self.value, int):
            return f"exactly {fmt.group(self.value)}"
        value = self.evaluate(env or {})
        return f"exactly {self.text} = {fmt.group(value)}" if num.is_concrete(value) else f"exactly {self.text}"


@dataclass(frozen=True)
class Approx:
    """A number within a tolerance: what "62.4M" or "60% ± 1" states."""

    center: Fraction
    tolerance: Fraction
    text: str
    unit: str = ""  # "%" for shares, for the reading only

    def holds(self, actual, env, within: Tolerance | None = None) -> bool | None:
        actual = _count(actual)
        if not num.is_concrete(actual):
            return None  # a formula: give its names values to compare a number with it
        actual = Fraction(actual)
        return abs(actual - self.center) <= self.tolerance and (within is None or within.allows(self.center, actual))

    def reading(self, env=None) -> str:
        return f"{_plain(self.center)}{self.unit} ± {_plain(self.tolerance)}"


@dataclass(frozen=True)
class Bounds:
    """A range "200k..1M" (both ends included) or an inequality "< 100k"."""

    low: Fraction | None
    high: Fraction | None
    text: str
    low_open: bool = False
    high_open: bool = False

    def holds(self, actual, env, within: Tolerance | None = None) -> bool | None:
        actual = _count(actual)
        if not num.is_concrete(actual):
            return None
        above = self.low is None or (actual > self.low if self.low_open else actual >= self.low)
        below = self.high is None or (actual < self.high if self.high_open else actual <= self.high)
        if within is not None:  # every value the range accepts must be within the instructor's tolerance
            ends = [end for end in (self.low, self.high) if end is not None]
            if len(ends) < 2 or not all(within.allows(end, Fraction(actual)) for end in ends):
                return False
        return above and below

    def reading(self, env=None) -> str:
        if self.low is not None and self.high is not None:
            return f"from {_plain(self.low)} to {_plain(self.high)}"
        if self.low is not None:
            return f"{'more than' if self.low_open else 'at least'} {_plain(self.low)}"
        return f"{'less than' if self.high_open else 'at most'} {_plain(self.high)}"


@dataclass(frozen=True)
class Dims:
    """A shape, one sample's. `either_order`: a list or a product with no power may be channels last too
    ([55, 55, 96] and "55×55×96" for [96, 55, 55]); the course's "55²×96" says which factor is the channels."""

    dims: tuple[int | expr.Expr, ...]
    text: str
    either_order: bool = False

    def evaluate(self, env) -> tuple[Value, ...]:
        return tuple(d.evaluate(env) if isinstance(d, expr.Expr) else d for d in self.dims)

    def order(self, actual, env) -> str | None:
        """Which reading matches `actual`: "channels first", "channels last", or None."""
        dims = self.evaluate(env)
        if _same_shape(dims, actual):
            return "channels first"
        if self.either_order and len(dims) > 1 and _same_shape((dims[-1], *dims[:-1]), actual):
            return "channels last"
        return None

    def holds(self, actual, env, within: Tolerance | None = None) -> bool | None:
        return self.order(actual, env) is not None

    def reading(self, env=None) -> str:
        shown = "[" + ", ".join(fmt.group(d) if isinstance(d, int) else d.text for d in self.dims) + "]"
        return f"{shown}, or channels last" if self.either_order and len(self.dims) > 1 else shown


def _same_shape(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))


def _plain(x: Fraction) -> str:
    """A Fraction as a short decimal: 62400000 -> '62,400,000', 0.05 -> '0.05'."""
    if x.denominator == 1:
        return fmt.group(int(x))
    return f"{float(x):,.10g}"


@dataclass(frozen=True)
class EveryAxis:
    """One value claimed for every spatial axis: "pool3.receptive_field" = 195."""

    value: Exact | Approx | Bounds

    def holds(self, actual, env, within: Tolerance | None = None) -> bool | None:
        verdicts = [self.value.holds(a, env, within) for a in actual]
        return None if None in verdicts else all(verdicts)

    def reading(self, env=None) -> str:
        return f"{self.value.reading(env)} on every axis"


Claimed = Exact | Approx | Bounds | Dims | EveryAxis


def unpinned(value: Claimed) -> str | None:
    """Why a value does not pin its quantity, as an answers file's claim must (docs/claims.md), or None.

    Exact values, formulas and shapes pin it. A range pins it to an order of magnitude when its ends
    have one sign and the larger is at most 10 times the smaller ("200k..1M"); an approximation
    c ± t is the range c−t..c+t ("about 1M" is 500k..1.5M); 0 may be approximate to half a unit.
    An open bound ("> 0") pins nothing.
    """
    if isinstance(value, Bounds):
        if value.low is None or value.high is None:
            return ("an open bound (such as > 0) holds for countless values: give the value, "
                    'or an approximation such as "about 60M"')
        low, high, what = value.low, value.high, f"the range {_plain(value.low)}..{_plain(value.high)}"
    elif isinstance(value, Approx):
        low, high = value.center - value.tolerance, value.center + value.tolerance
        what = f"{_plain(value.center)}{value.unit} ± {_plain(value.tolerance)}"
        if value.center == 0 and value.tolerance <= Fraction(1, 2):
            return None
    else:
        return None
    low, high = (low, high) if low >= 0 else (-high, -low)
    if low > 0 and high <= 10 * low:
        return None
    return (f"{what} does not pin the value: an answer gives it to an order of magnitude at least "
            "(ends of one sign, the larger at most 10 times the smaller)")


def read(raw: object, kind: str) -> Claimed:
    """A claimed value, as TOML gives it, for a quantity of `kind` (see KINDS); ClaimError if malformed."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, list)):
        what = {bool: "true/false", dict: "a table"}.get(type(raw), type(raw).__name__)
        raise ClaimError(f"expected a value, got {what}", _hint(kind))
    if kind == "axes":
        if isinstance(raw, list) or (isinstance(raw, str) and _looks_like_shape(raw.strip())):
            dims = read(raw, "shape")
            return dataclasses.replace(dims, either_order=False) if isinstance(dims, Dims) else dims
        return EveryAxis(read(raw, "count"))
    if isinstance(raw, list):
        if kind != "shape":
            raise ClaimError(f"a list is a shape, but this quantity is a number: got {raw!r}", _hint(kind))
        return _list(raw)
    if isinstance(raw, int):
        _magnitude(raw, str(raw)[:40])
        return _approx(str(raw), kind) if kind == "share" else Exact(raw, str(raw))
    if isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise ClaimError(f"expected a number, got {raw}", _hint(kind))
        return _approx(repr(raw), kind)  # a float states its decimals: 60.5 is 60.5 ± 0.05
    if len(raw) > MAX_LENGTH:
        raise ClaimError(f"a value of {len(raw):,} characters: the limit is {MAX_LENGTH}", _hint(kind))
    text = " ".join(raw.split()) if raw.strip() else ""
    if not text:
        raise ClaimError("empty value", _hint(kind))
    if kind == "shape" and _looks_like_shape(text):
        return _shape(text)
    return _scalar(text, kind)


def _scalar(text: str, kind: str) -> Claimed:
    if ".." in text:
        low, _, high = text.partition("..")
        return Bounds(_bound(low, kind, text), _bound(high, kind, text), text)
    if bound := _BOUND.match(text):
        op, value = bound.group("op"), _bound(bound.group("rest"), kind, text)
        if op in ("<", "<=", "≤"):
            return Bounds(None, value, text, high_open=op == "<")
        return Bounds(value, None, text, low_open=op == ">")
    marker = MARKER.match(text)
    body = text[marker.end():] if marker else text
    parts = _TOLERANCE.split(body)
    if len(parts) == 2:
        return _with_tolerance(parts[0], parts[1], kind, text)
    if len(parts) > 2:
        raise ClaimError(f"{text!r}: more than one ±", _hint(kind))
    number = NUMBER.match(body)
    if number and (number.group("int") or number.group("frac") is not None):
        if marker or kind == "share" or number.group("unit") or number.group("frac") is not None or number.group("exp"):
            return _approx(body, kind, text)
        value = _integer(body, number)
        _magnitude(value, text)
        return Exact(value, text)
    if marker:
        raise ClaimError(f"{text!r}: 'about' needs a number, such as \"about 60M\"", _hint(kind))
    return Exact(_formula(body, kind, text), text)


def _approx(body: str, kind: str, text: str | None = None) -> Approx:
    """A number and the precision it states: half a unit of its last significant digit."""
    value, _, scale = _number(body, kind, text or body)
    return Approx(value, _precision(NUMBER.match(body)) * scale, text or body, "%" if kind == "share" else "")


def _precision(number: re.Match) -> Fraction:  # after _number: the exponent is bounded
    digits = re.sub(_SEP, "", number.group("int") or "")
    if number.group("frac") is not None:
        unit = Fraction(1, 10 ** len(number.group("frac")))
    else:
        significant = digits.rstrip("0")
        unit = Fraction(10 ** (len(digits) - len(significant))) if significant else Fraction(1)
    return unit * Fraction(10) ** int(number.group("exp") or 0) / 2


def _exponent(number: re.Match, text: str) -> int:
    """The exponent of '6.24e7', refused beyond ±MAX_EXPONENT before anything is raised to it."""
    exponent = number.group("exp") or "0"
    if len(exponent.lstrip("+-0")) > 3 or abs(int(exponent)) > MAX_EXPONENT:
        raise ClaimError(f"{_short(text)}: the exponent is beyond ±{MAX_EXPONENT}",
                         "no quantity of a network needs it: 6.24e7 is 62,400,000")
    return int(exponent)


def _number(body: str, kind: str, text: str) -> tuple[Fraction, str, int]:
    """(value, unit, the unit's scale) of a written number such as '62.4M' or '34 944'."""
    number = NUMBER.match(body.strip())
    if not number or not (number.group("int") or number.group("frac")):
        raise ClaimError(f"cannot read {_short(text)} as a number", _hint(kind))
    digits = _grouped(number.group("int") or "0", text)
    if len(digits) + len(number.group("frac") or "") > untrusted.MAX_DIGITS:
        raise ClaimError(f"{_short(text)}: more than {untrusted.MAX_DIGITS} digits", "no quantity of a network has that many")
    value = Fraction(f"{digits}.{number.group('frac') or 0}") * Fraction(10) ** _exponent(number, text)
    unit = number.group("unit")
    scale = _scale(unit, kind, text)
    value = (-value if number.group("sign") == "-" else value) * scale
    _magnitude(value, text)
    return value, unit, scale


def _magnitude(value, text: str) -> None:
    if abs(value) > MAX_CLAIMED:
        raise ClaimError(f"{_short(text)} is larger than any quantity of a real network (claims stop at 10^24)",
                         "check the exponent and the unit")


def _short(text: str) -> str:
    """A value as a message quotes it: repr, one line, at most 60 characters."""
    shown = untrusted.one_line(repr(text))
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _grouped(digits: str, text: str) -> str:
    """'34,944' -> '34944', checking that the digits are grouped by three."""
    groups = re.split(_SEP, digits)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])):
        hint = "digits are grouped by three: 34,944 or 34 944"
        if "," in digits and len(groups) == 2 and len(groups[1]) < 3:
            hint = "the decimal separator is '.', and ',' groups digits by three: write 62.4M, not 62,4M"
        raise ClaimError(f"cannot read {text!r} as a number", hint)
    return "".join(groups)


def _integer(body: str, number: re.Match) -> int:
    digits = _grouped(number.group("int"), body)
    if len(digits) > untrusted.MAX_DIGITS:
        raise ClaimError(f"{_short(body)}: more than {untrusted.MAX_DIGITS} digits", "no quantity of a network has that many")
    value = int(digits)
    return -value if number.group("sign") == "-" else value


def _scale(unit: str, kind: str, text: str) -> int:
    if not unit:
        return 1
    if unit == "%":
        if kind != "share":
            raise ClaimError(f"{text!r}: a percentage is only for a share of the parameters", _hint(kind))
        return 1
    units = dict(SCALES) | (BYTE_UNITS if kind == "bytes" else {})
    if kind == "share" or unit not in units:
        allowed = "%" if kind == "share" else ", ".join(units)
        raise ClaimError(f"{text!r}: unknown unit {unit!r}", f"units here: {allowed}")
    return units[unit]


def _with_tolerance(value: str, tolerance: str, kind: str, text: str) -> Approx:
    """'62.4M ± 0.1M', '62.4M ± 0.1' (the value's unit), '60M ± 10%' (relative; for a share, points)."""
    center, _, scale = _number(value, kind, text)
    number = NUMBER.match(tolerance.strip())
    if not number or not (number.group("int") or number.group("frac")):
        raise ClaimError(f"{text!r}: cannot read the tolerance {tolerance!r}", "write it like 62.4M ± 0.1M or 60M ± 10%")
    if number.group("unit") == "%" and kind != "share":
        size, _, _ = _number(tolerance[: tolerance.rindex("%")], kind, text)
        return Approx(center, abs(center) * size / 100, text)
    size, tolerance_unit, _ = _number(tolerance, kind, text)
    if not tolerance_unit:
        size *= scale  # '62.4M ± 0.1' is ± 0.1M
    return Approx(center, abs(size), text, "%" if kind == "share" else "")


def _bound(part: str, kind: str, text: str) -> Fraction:
    if not part.strip():
        raise ClaimError(f"{text!r}: a range needs both ends, such as 200k..1M", _hint(kind))
    value, _, _ = _number(part.strip(), kind, text)
    return value


def normalize(text: str) -> str:
    """The course's way of writing formulas, as the whitelist parser reads them: 96×3×11² -> 96*3*11**2."""
    for a, b in (("×", "*"), ("·", "*"), ("⋅", "*"), ("−", "-"), ("÷", "/"), ("^", "**")):
        text = text.replace(a, b)
    text = re.sub(f"[{_SUPERSCRIPTS}]+", lambda m: "**" + m.group().translate(str.maketrans(_SUPERSCRIPTS, "0123456789")), text)
    return re.sub(r"(?<=\d)[ \u00a0\u2009\u202f](?=\d{3}(?!\d))", "", text)  # 4 096 -> 4096


def _formula(text: str, kind: str, shown: str) -> expr.Expr:
    try:
        return expr.parse(normalize(text))
    except SpecError as error:
        raise ClaimError(error.problem if shown in error.problem else f"{shown!r}: {error.problem}", _hint(kind)) from None


# Shapes: a TOML list, "(96, 27, 27)", "[96, 27, 27]", "96×27×27" (or 96x27x27), "27²×96".
def _looks_like_shape(text: str) -> bool:
    if text.startswith("["):
        return True
    if text.startswith("(") and text.endswith(")") and len(_top_level(text[1:-1], ",")) > 1:
        return True
    return len(_factors(text)) > 1


def _top_level(text: str, separators: str) -> list[str]:
    """`text` split at the separators that are outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and c in separators:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]] if parts else [text]


def _factors(text: str) -> list[str]:
    """'96×27×27' and '96x27x27' -> ['96', '27', '27']: an x counts between numbers, not inside a name."""
    marked = re.sub(rf"(?<=[\d){_SUPERSCRIPTS}])\s*[xX]\s*(?=[\d(])", "×", text)
    return [f.strip() for f in _top_level(marked, "×")]


def _list(raw: list) -> Dims:
    if len(raw) > untrusted.MAX_AXES:
        raise ClaimError(f"a shape of {len(raw):,} sizes: a tensor has at most {untrusted.MAX_AXES} axes", _hint("shape"))
    if not raw or any(isinstance(d, (bool, list, dict, float)) or not isinstance(d, (int, str)) for d in raw):
        raise ClaimError(f"a shape is a list of sizes (integers, or formulas as strings), got {raw!r}", _hint("shape"))
    return Dims(tuple(_dim(d, str(raw)) for d in raw), str(raw), either_order=True)  # [55, 55, 96]: as "55×55×96"


def _dim(raw: int | str, text: str) -> int | expr.Expr:
    if isinstance(raw, int):
        _magnitude(raw, str(raw)[:40])
        return raw
    number = NUMBER.match(raw.strip())
    if number and number.group("int") and not number.group("unit") and number.group("frac") is None and not number.group("exp"):
        value = _integer(raw.strip(), number)
        _magnitude(value, raw)
        return value
    return _formula(raw, "shape", text)


def _shape(text: str) -> Dims:
    if text[0] in "([":
        if text[-1] != {"(": ")", "[": "]"}[text[0]]:
            raise ClaimError(f"cannot read {text!r} as a shape: unbalanced brackets", _hint("shape"))
        items = [item.strip() for item in _top_level(text[1:-1], ",")]
        if not all(items):
            raise ClaimError(f"cannot read {text!r} as a shape: an empty size", _hint("shape"))
        return Dims(tuple(_dim(item, text) for item in items), text, either_order=True)
    channels, spatial = [], []
    for factor in _factors(text):
        power = _POWER.match(factor)
        if not factor:
            raise ClaimError(f"cannot read {text!r} as a shape: an empty factor", _hint("shape"))
        if power is None:
            channels.append(_dim(factor, text))
            continue
        exponent = power.group("e1") or power.group("e2") or power.group("e3").translate(str.maketrans(_SUPERSCRIPTS, "0123456789"))
        if not 1 <= int(exponent) <= 3:
            raise ClaimError(f"{text!r}: a shape has at most 3 spatial axes, not {exponent}", _hint("shape"))
        spatial += [_dim(power.group("base"), text)] * int(exponent)
    if not spatial:
        return Dims(tuple(channels), text, either_order=True)
    if len(channels) != 1:
        raise ClaimError(
            f"{text!r}: with a power such as 27², write the channels as the one other factor",
            "the course writes spatial²×channels: 27²×96 is 96 channels of 27×27",
        )
    return Dims((channels[0], *spatial), text)
