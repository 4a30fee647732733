"""The kinds of field a layer declares, and how each reads TOML and binds to values.

A layer class declares its fields as dataclass fields made by the helpers at the
bottom (`size()`, `axes()`, `flag()`, ...). `spec.py` calls `read` on the TOML
value when the file is loaded (type errors, expression syntax) and `bind` when
values are known (`analyze`), which evaluates expressions and checks ranges.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from . import expr, num, untrusted
from .errors import SpecError
from .num import Value

Env = Mapping[str, Value]


def _kind_of(raw: object) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "a table"}.get(type(raw), type(raw).__name__)


def read_number(raw: object, what: str = "a number or an expression") -> object:
    """A TOML scalar as an int, a Fraction or a parsed Expr (strings are expressions)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise SpecError(f"expected {what}, got {_kind_of(raw)} {_show(raw)}")
    if isinstance(raw, str):
        return expr.parse(raw)
    if isinstance(raw, float) and (raw != raw or raw in (float("inf"), float("-inf"))):
        raise SpecError(f"expected {what}, got {raw}")
    if problem := untrusted.problem_of_size(raw):
        raise SpecError(problem)
    return num.normal(Fraction(repr(raw))) if isinstance(raw, float) else raw


def _per_axis(raw: list) -> tuple:
    """A list of one value per spatial axis, read: kernel_size = [3, 5]."""
    if not 1 <= len(raw) <= 3:
        raise SpecError(f"expected one value per spatial axis (1 to 3), got {len(raw)}")
    return tuple(read_number(item) for item in raw)


def bind_number(stored: object, env: Env) -> Value:
    return stored.evaluate(env) if isinstance(stored, expr.Expr) else stored


def _show(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    shown = untrusted.one_line(repr(raw) if isinstance(raw, str) else str(raw))
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _whole(x: Value, stored: object, minimum: int) -> Value:
    """Check that a bound size is a whole number >= minimum (as far as it can be decided)."""
    source = f" ({stored} = {x})" if isinstance(stored, expr.Expr) and stored.names and num.is_concrete(x) else ""
    if num.is_concrete(x) and (problem := untrusted.problem_of_size(x)):
        raise SpecError(problem + source)
    if num.is_integer(x) is False:
        raise SpecError(f"must be a whole number, got {x}{source}")
    low = num.is_positive(x) if minimum == 1 else num.is_nonnegative(x)
    if low is False:
        bound = "at least 1" if minimum == 1 else "at least 0"
        raise SpecError(f"must be {bound}, got {x}{source}")
    return x


@dataclass(frozen=True)
class Size:
    """A whole number >= minimum, or an expression for one: out_channels, groups."""

    minimum: int = 1

    def read(self, raw: object) -> object:
        return read_number(raw)

    def bind(self, stored: object, env: Env) -> Value:
        return _whole(bind_number(stored, env), stored, self.minimum)


@dataclass(frozen=True)
class Axes:
    """A size for every spatial axis, or one list of them: kernel_size = 3 or [3, 5]."""

    minimum: int = 1
    words: tuple[str, ...] = ()  # strings that mean something here: "same", "valid"

    def read(self, raw: object) -> object:
        if isinstance(raw, str) and raw in self.words:
            return raw
        if isinstance(raw, list):
            return _per_axis(raw)
        if isinstance(raw, str) and self.words and raw.isidentifier() and raw.lower() in self.words:
            raise SpecError(f"unknown value {raw!r}", f"write {raw.lower()!r}")
        return read_number(raw, "a number, a list per axis" + (f", or one of {', '.join(map(repr, self.words))}" if self.words else ""))

    def bind(self, stored: object, env: Env) -> object:
        if isinstance(stored, str):
            return stored
        if isinstance(stored, tuple):
            return tuple(_whole(bind_number(s, env), s, self.minimum) for s in stored)
        return _whole(bind_number(stored, env), stored, self.minimum)


@dataclass(frozen=True)
class Real:
    """A number in [low, high), possibly an expression: dropout's p."""

    low: Fraction | int | None = None
    high: Fraction | int | None = None
    per_axis: bool = False

    def read(self, raw: object) -> object:
        if self.per_axis and isinstance(raw, list):
            return _per_axis(raw)
        return read_number(raw)

    def bind(self, stored: object, env: Env) -> Value:
        if isinstance(stored, tuple):
            return tuple(self.bind(s, env) for s in stored)
        x = bind_number(stored, env)
        if num.is_concrete(x) and (problem := untrusted.problem_of_size(x)):
            raise SpecError(problem)
        if num.is_concrete(x):
            too_low = self.low is not None and x < self.low
            too_high = self.high is not None and x >= self.high
            if too_low or too_high:
                if self.high is None:
                    bound = f"at least {self.low}"
                elif self.low is None:
                    bound = f"below {self.high}"
                else:
                    bound = f"in [{self.low}, {self.high})"
                raise SpecError(f"must be {bound}, got {num.to_json(x)}")
        return x


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def read(self, raw: object) -> bool:
        if not isinstance(raw, bool):
            raise SpecError(f"expected true or false, got {_kind_of(raw)} {_show(raw)}")
        return raw

    def bind(self, stored: bool, env: Env) -> bool:
        return stored


@dataclass(frozen=True)
class Choice:
    """One of a closed set of words: op = "max" | "avg"."""

    choices: tuple[str, ...]

    def read(self, raw: object) -> str:
        if isinstance(raw, str) and raw in self.choices:
            return raw
        if not isinstance(raw, str):
            raise SpecError(f"expected one of {', '.join(self.choices)}; got {_kind_of(raw)} {_show(raw)}")
        close = difflib.get_close_matches(raw.lower(), self.choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        raise SpecError(f"unknown value {raw!r}; expected one of {', '.join(self.choices)}", hint)

    def bind(self, stored: str, env: Env) -> str:
        return stored


@dataclass(frozen=True)
class Sizes:
    """A list of sizes: a target shape. `wildcard` admits one -1 (infer it, as reshape does)."""

    wildcard: bool = False
    scalar: bool = False  # one number stands for a list of one (normalized_shape = 768)

    def read(self, raw: object) -> tuple:
        if self.scalar and not isinstance(raw, (list, bool)) and isinstance(raw, (int, float, str)):
            return (read_number(raw),)
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"expected a non-empty list of sizes, got {_kind_of(raw)} {_show(raw)}")
        if len(raw) > untrusted.MAX_AXES:
            raise SpecError(f"{len(raw):,} sizes: a tensor has at most {untrusted.MAX_AXES} axes")
        return tuple(read_number(item) for item in raw)

    def bind(self, stored: tuple, env: Env) -> tuple:
        out = tuple(bind_number(s, env) for s in stored)
        if self.wildcard and sum(1 for x in out if x == -1) > 1:
            raise SpecError("at most one size may be -1")
        return tuple(x if self.wildcard and x == -1 else _whole(x, s, 1) for x, s in zip(out, stored))


@dataclass(frozen=True)
class Ref:
    """The name of an earlier layer (a dotted path): tie = "wte"."""

    def read(self, raw: object) -> str:
        if not isinstance(raw, str) or not all(part.isidentifier() or part.isdigit() for part in raw.split(".")):
            raise SpecError(f"expected a layer's name, got {_kind_of(raw)} {_show(raw)}", 'for example tie = "wte"')
        return raw

    def bind(self, stored: str, env: Env) -> str:
        return stored


@dataclass(frozen=True)
class Axis:
    """An axis number as PyTorch counts it (the batch axis is 0, negative ones from the end): dim = -1.
    `many`: a list of them (permute's dims)."""

    many: bool = False

    def read(self, raw: object) -> int | tuple[int, ...]:
        items = raw if self.many and isinstance(raw, list) and raw else [raw]
        if self.many and not isinstance(raw, list):
            raise SpecError(f"expected a list of axis numbers, got {_kind_of(raw)} {_show(raw)}")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise SpecError(f"expected an axis number (a whole number; 0 is the batch axis, -1 the last), got "
                                f"{_kind_of(item)} {_show(item)}")
        return tuple(items) if self.many else raw

    def bind(self, stored, env: Env):
        return stored


# The helpers layer classes declare their fields with.
def _field(kind, default):
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"kind": kind})
    return dataclasses.field(default=default, metadata={"kind": kind})


def size(default=dataclasses.MISSING, *, minimum: int = 1):
    return _field(Size(minimum), default)


def axes(default=dataclasses.MISSING, *, minimum: int = 1, words: tuple[str, ...] = ()):
    return _field(Axes(minimum, words), default)


def real(default=dataclasses.MISSING, *, low=None, high=None, per_axis=False):
    return _field(Real(low, high, per_axis), default)


def flag(default: bool):
    return _field(Flag(), default)


def choice(*choices: str, default=dataclasses.MISSING):
    return _field(Choice(choices), default)


def ref(default=dataclasses.MISSING):
    return _field(Ref(), default)


def sizes(default=dataclasses.MISSING, *, wildcard: bool = False, scalar: bool = False):
    return _field(Sizes(wildcard, scalar), default)


def axis(default=dataclasses.MISSING, *, many: bool = False):
    return _field(Axis(many), default)
