"""Claim keys and claim files (docs/claims.md): "conv1.params", "dense.share", "memory.training_bytes@B=32".

A claim is a key (what is claimed about which part of the network) and a value (claim_values.py).
Claims come from a spec's [expect] table or from an answers file: TOML with the same keys and
an optional [student] table. `read` checks every key against one analysed network and refuses
what it does not know, listing what it does.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..core import expr, num, untrusted
from ..core.dtypes import Device, DType, Optimizer
from ..core.errors import SpecError
from ..report import Report, Row
from ..spec.read import read_text
from . import claim_values
from .claim_values import Claimed, ClaimError

LAYER = ("output", "input", "weights", "biases", "params", "share", "macs", "flops", "training_flops",
         "receptive_field", "jump", "dense_equivalent_weights")
AXES = ("receptive_field", "jump")  # one value per spatial axis of the model's input
TOTAL = ("params", "weights", "biases", "macs", "flops", "training_flops")
TYPE = ("params", "weights", "biases", "share", "macs", "flops", "training_flops")
GROUP = (*TYPE, "output")  # a path prefix ("layer1") or a block's name: sums, and the last layer's output
QUALIFIERS = ("B", "dtype", "optimizer", "device")
STUDENT = ("name", "id", "email", "group", "variant")  # the fields of an answers file's [student] table


class Scope(StrEnum):
    """Which part of the network a claim is about."""

    layer = "layer"  # one layer, by its name
    type = "type"  # every layer of one kind
    group = "group"  # the layers under a path prefix or a block
    total = "total"  # the whole network
    memory = "memory"  # bytes for a batch (the only scope that takes @ qualifiers)


class ValueKind(StrEnum):
    """What a claimed value is, and so how it is read (claimed.read)."""

    shape = "shape"
    count = "count"
    share = "share"  # in %
    bytes = "bytes"
    axes = "axes"  # a size per spatial axis (a receptive field, a jump)


@dataclass(frozen=True)
class Key:
    """What a claim is about: its scope, the quantity, and the name of the layer, the kind or the group."""

    text: str
    scope: Scope  # a name given as a string is read into a Scope
    quantity: str
    name: str | None = None  # the layer's name, or the layer type
    at: tuple[tuple[str, object], ...] = ()  # memory only: B, dtype, optimizer, device

    def __post_init__(self):
        object.__setattr__(self, "scope", Scope(self.scope))

    def rows(self, report: Report) -> tuple[Row, ...]:
        """The rows the key is about: its layer, the layers of its type or group, all of them (a total), none (memory)."""
        if self.scope == Scope.layer:
            return (report.row(self.name),)
        if self.scope == Scope.type:
            return tuple(row for row in report.rows if row.kind == self.name)
        if self.scope == Scope.group:  # a path prefix or a block's name
            return tuple(report.group(self.name))
        return report.rows if self.scope == Scope.total else ()

    @property
    def kind(self) -> ValueKind:
        """What the value is: a shape, a share (in %), bytes or a count."""
        if self.scope == Scope.memory:
            return ValueKind.bytes
        if self.quantity in ("output", "input"):
            return ValueKind.shape
        if self.quantity in AXES:
            return ValueKind.axes
        return ValueKind.share if self.quantity == "share" else ValueKind.count


@dataclass(frozen=True)
class Claim:
    key: Key
    value: Claimed
    raw: object  # as written
    line: int | None = None


@dataclass(frozen=True)
class Answers:
    """An answers file as read: its claims, raw, and who wrote it."""

    path: str | None
    pairs: tuple[tuple[str, object], ...]
    student: dict = field(default_factory=dict)
    text: str = ""  # the file's text, to find the line of a key


def load_answers(path: str | Path) -> Answers:
    """Read an answers file: claims keyed like [expect], and an optional [student] table."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_answers(path): path must be a str or a Path, got {type(path).__name__}")
    text = read_text(path, "an answers file", ClaimError)
    return loads_answers(text, str(path))


def loads_answers(text: str, path: str | None = None) -> Answers:
    if not isinstance(text, str):
        raise TypeError(f"loads_answers(text): text must be a str, got {type(text).__name__}")
    data = untrusted.parse_toml(text, ClaimError, 'an answers file has lines such as "conv1.params" = 34944', path=path)
    if "model" in data and "layers" in data:
        raise ClaimError("this is a spec, not an answers file",
                         "give the spec first and answers after it: archcalc check SPEC ANSWERS...", path=path)
    student = data.pop("student", {})
    if not isinstance(student, dict):
        raise ClaimError("student must be a table: [student] with name = ... and id = ...", path=path)
    for key, value in student.items():
        if key not in STUDENT or isinstance(value, (dict, list, bool)):
            raise ClaimError(
                f"{untrusted.one_line(repr(key))[:60]} is not a field of [student] (they are {', '.join(STUDENT)})",
                "in TOML every key after a [student] line belongs to that table: put [student] at the end of the file",
                where="[student]", path=path, line=key_lines(text).get(f"student.{key}"),
            )
    pairs = tuple(flatten(data))
    if not pairs:
        raise ClaimError("no claims: nothing to grade", 'an answers file has lines such as "conv1.params" = 34944', path=path)
    student = {key: _student_value(value) for key, value in student.items()}
    return Answers(path, pairs, {key: value for key, value in student.items() if value != ""}, text)  # blanks: not given


def _student_value(value: object) -> str | int:
    """A [student] field as JSON can carry it: dates, times and floats (nan too) as the text TOML wrote."""
    if isinstance(value, (str, int)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


def flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    """TOML's dotted keys and sub-tables back into claim keys: {"conv1": {"params": 1}} -> [("conv1.params", 1)]."""
    out = []
    stack = [(iter(table.items()), prefix)]
    while stack:  # depth first, in file order, without recursion: dotted keys may nest deep
        items, prefix = stack[-1]
        for key, value in items:
            if isinstance(value, dict):
                if len(stack) > untrusted.MAX_DEPTH:
                    raise ClaimError(f"keys nested more than {untrusted.MAX_DEPTH} deep", "a claim key is NAME.QUANTITY")
                stack.append((iter(value.items()), f"{prefix}{key}."))
                break
            out.append((f"{prefix}{key}", value))
        else:
            stack.pop()
    return out


@dataclass(frozen=True)
class Unread:
    """A claim that could not be read (an unknown key, a malformed value, the same claim twice): graded as an error
    of that claim, while the others of its file are still graded."""

    text: str  # the key as written
    raw: object
    line: int | None
    error: ClaimError
    key: Key | None = None  # when the key was read and the value was not


def read(pairs, report: Report, *, path: str | None = None, where: str | None = None, text: str = "",
         table: str = "", strict: bool = False, each: bool = False) -> tuple[Claim | Unread, ...]:
    """Check and read raw (key, value) pairs for `report`'s network; ClaimError names the file, line and key.

    `table`: the TOML table the claims are in ("expect"), to find their lines in `text`. `strict`: an answers
    file's claims, which must each pin a value (claim_values.unpinned) and may not repeat a claim. `each`: a claim
    that cannot be read becomes an Unread in its place, instead of a ClaimError for all of them.
    """
    pairs = list(pairs)
    if len(pairs) > untrusted.MAX_CLAIMS:
        raise ClaimError(f"{len(pairs):,} claims: the limit is {untrusted.MAX_CLAIMS:,} a file", None, None, where, path)
    known = names(report)
    index = Index.of(report, known)  # the report's names, gathered once for all the keys
    lines = key_lines(text)
    seen: dict[tuple, str] = {}
    out = []
    for key_text, raw in pairs:
        line = _line(lines, f"{table}.{key_text}" if table else str(key_text))
        shown = f'"{untrusted.one_line(str(key_text))[:80]}"'
        key = None
        try:
            if not isinstance(key_text, str):
                raise ClaimError(f"a claim key is a string, got {type(key_text).__name__}")
            key = parse_key(key_text, report, index)
            value = claim_values.read(raw, key.kind)
            _check_names(value, known, report)
            if strict and (why := claim_values.unpinned(value)):
                raise ClaimError(why, "answers files pin each value; a spec's [expect] may give ranges and bounds")
            same = identity(key, report)
            if same in seen:
                earlier, earlier_key = seen[same]
                defaults = _defaulted(earlier_key, key, report)
                raise ClaimError(f"the same claim as {earlier}: each quantity is claimed once"
                                 + (f" ({defaults} is the default here)" if defaults else ""),
                                 "keep one of them (keys are read the same with spaces, quotes or [tables], and a memory "
                                 "key without a qualifier is at the batch, dtype, optimizer and device in force)")
            seen[same] = (f'"{untrusted.one_line(key_text)}"' + (f" (line {line})" if line else ""), key)
        except SpecError as error:
            failure = ClaimError(error.problem, error.hint, shown, where, path, line)
            if not each:
                raise failure from None
            out.append(Unread(str(key_text), raw, line, failure, key))
            continue
        out.append(Claim(key, value, raw, line))
    return tuple(out)


def identity(key: Key, report: Report, resolve: bool = True) -> tuple:
    """What a key claims, whatever way it is written: "dense.share" and "type.dense.share" are one claim, and so
    are "memory.params_bytes" and "memory.params_bytes@dtype=float32" when float32 is the dtype in force."""
    at = dict(key.at)
    if key.scope == Scope.memory and resolve:
        at = {"B": report.batch, "dtype": report.dtype, "optimizer": report.optimizer, "device": report.device} | at
        at = {name: str(value) for name, value in at.items()}
    return (key.scope, key.quantity, key.name, frozenset(at.items()))


def _defaulted(a: Key, b: Key, report: Report) -> str:
    """The qualifiers one of two memory keys states and the other leaves to the default: 'dtype=float32'."""
    given_a, given_b = dict(a.at), dict(b.at)
    names = [name for name in QUALIFIERS if (name in given_a) != (name in given_b)]
    return ", ".join(f"{name}={given_a.get(name, given_b.get(name))}" for name in names)


@dataclass(frozen=True)
class Index:
    """What keys are checked against, gathered once: layer names, layer types, memory quantities, formula names."""

    layers: frozenset[str]
    kinds: tuple[str, ...]
    memory: tuple[str, ...]
    known: frozenset[str]

    @classmethod
    def of(cls, report: Report, known: set[str] | None = None) -> Index:
        return cls(frozenset(row.name for row in report.rows), tuple(dict.fromkeys(row.kind for row in report.rows)),
                   memory_names(report), frozenset(names(report) if known is None else known))


def parse_key(text: str, report: Report, index: Index | None = None) -> Key:
    if len(text) > 500:
        raise ClaimError(f"a key of {len(text):,} characters", "a key is NAME.QUANTITY, such as conv1.params")
    index = index or Index.of(report)
    base, at_sign, qualifiers = untrusted.name(text).partition("@")
    parts = [part.strip() for part in base.split(".")]
    layers, kinds, memory = index.layers, index.kinds, index.memory
    rest = ".".join(parts[1:])
    if parts[0] == "memory" and rest in memory:
        return Key(text, Scope.memory, rest, at=_qualifiers(qualifiers, report, index.known) if at_sign else ())
    if at_sign:
        raise ClaimError(f"only memory quantities take @{'|'.join(QUALIFIERS)}=...",
                         f"{parts[-1]} is per sample; memory keys: {', '.join('memory.' + m for m in memory)}")
    if len(parts) == 1 and parts[0] in TOTAL:
        return Key(text, Scope.total, parts[0])
    name = ".".join(parts[:-1])  # names are dotted paths: the quantity is the last part
    if len(parts) >= 2 and name in layers:
        return Key(text, Scope.layer, _quantity(parts[-1], LAYER, "a layer", text, report), name)
    if len(parts) == 2 and parts[0] in kinds:
        return Key(text, Scope.type, _quantity(parts[1], TYPE, "a layer type", text, report), parts[0])
    if len(parts) >= 2 and report.group(name):
        return Key(text, Scope.group, _quantity(parts[-1], GROUP, "a group of layers", text, report), name)
    if len(parts) == 3 and parts[0] == "type" and parts[1] in kinds:
        return Key(text, Scope.type, _quantity(parts[2], TYPE, "a layer type", text, report), parts[1])
    raise ClaimError(_unknown(parts, report, layers, kinds), _suggest(text, report))


def _unknown(parts: list[str], report: Report, layers, kinds) -> str:
    if len(parts) == 1:
        return f"unknown quantity {_quoted(parts[0])} (a total is one of {', '.join(TOTAL)})"
    if parts[0] == "memory":
        return f"unknown memory quantity {_quoted('.'.join(parts[1:]))}"
    if parts[0] in layers or parts[0] in kinds:
        return f"a key is NAME.QUANTITY, got {len(parts)} parts"
    if report.uses or any("." in name for name in layers):
        return f"{report.model} has no layer, path prefix, block or layer type named {_quoted('.'.join(parts[:-1]))}"
    return f"{report.model} has no layer or layer type named {_quoted(parts[0])}"


def _quoted(text: str) -> str:
    shown = untrusted.one_line(repr(text))
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _quantity(word: str, valid: tuple[str, ...], what: str, text: str, report: Report) -> str:
    if word not in valid:
        raise ClaimError(f"{_quoted(word)} is not a quantity of {what}", _suggest(text, report))
    return word


def _suggest(text: str, report: Report) -> str:
    close = difflib.get_close_matches(text, valid_keys(report), n=1, cutoff=0.6)
    return (f"did you mean {close[0]!r}?\n  " if close else "") + "valid keys for this network:\n" + summary(report)


def memory_names(report: Report) -> tuple[str, ...]:
    return (*report.memory.quantities(), *report.memory.course())


def valid_keys(report: Report) -> list[str]:
    """Every key a claim about this network may use (memory keys without their @ qualifiers)."""
    kinds = dict.fromkeys(row.kind for row in report.rows)
    return [
        *TOTAL,
        *(f"{row.name}.{q}" for row in report.rows for q in LAYER),
        *(f"{kind}.{q}" for kind in kinds for q in TYPE),
        *(f"{use.path}.{q}" for use in report.uses for q in GROUP),
        *(f"memory.{m}" for m in memory_names(report)),
    ]


def summary(report: Report) -> str:
    """The valid keys, one form a line: layers × quantities, types, totals, memory."""
    layers = ", ".join(row.name for row in report.rows)
    kinds = ", ".join(dict.fromkeys(row.kind for row in report.rows))
    blocks = ", ".join(dict.fromkeys(use.block for use in report.uses))
    return "\n".join("    " + line for line in (
        f"LAYER.QUANTITY: LAYER one of {layers}; QUANTITY one of {', '.join(LAYER)}",
        f"TYPE.QUANTITY: TYPE one of {kinds}; QUANTITY one of {', '.join(TYPE)}",
        *([f"PATH.QUANTITY: PATH a prefix of the names above (layer1, layer1.0) or a block ({blocks}); "
           f"QUANTITY one of {', '.join(GROUP)}"] if blocks else []),
        f"totals: {', '.join(TOTAL)}",
        f"memory.X@B=32,dtype=...,optimizer=...,device=...: X one of {', '.join(memory_names(report))}",
    ))


def _qualifiers(text: str, report: Report, known: frozenset[str]) -> tuple[tuple[str, object], ...]:
    """'B=32,dtype=bfloat16' -> (("B", 32), ("dtype", DType.bfloat16))."""
    out: dict[str, object] = {}
    choices = {"dtype": DType, "optimizer": Optimizer, "device": Device}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = (s.strip() for s in item.partition("="))
        if not equals or not value or name not in QUALIFIERS:
            raise ClaimError(f"cannot read the qualifier {_quoted(item)}",
                             f"write NAME=VALUE with NAME one of {', '.join(QUALIFIERS)}: memory.training_bytes@B=32,dtype=bfloat16")
        if name in out:
            raise ClaimError(f"{name} is given twice")
        if name == "B":
            formula = expr.parse(value)
            unknown = sorted(formula.names - known - {"B"})
            if unknown:
                raise ClaimError(f"B={_quoted(value)[1:-1]}: {report.model} has no name {unknown[0]!r}",
                                 "the batch size is a number (B=32) or a formula in the spec's names")
            batch = formula.evaluate(dict(report.values))
            if num.is_concrete(batch) and (num.is_integer(batch) is False or batch < 1):
                raise ClaimError(f"the batch size must be a whole number >= 1, got {_quoted(value)[1:-1]}")
            if num.is_concrete(batch) and (problem := untrusted.problem_of_size(batch)):
                raise ClaimError(f"the batch size: {problem}")
            out[name] = batch
        else:
            try:
                out[name] = choices[name](value)
            except ValueError:
                raise ClaimError(f"unknown {name} {_quoted(value)}", f"one of {', '.join(choices[name])}") from None
    return tuple(out.items())


def names(report: Report) -> set[str]:
    """The names a claim's formula may use: the spec's known and free names, and B."""
    found = {name for name, _ in report.values} | {"B"}
    for row in report.rows:
        for x in (*row.output, row.params, row.macs):
            found |= num.free_names(x)
    return found


def _check_names(value: Claimed, known: set[str], report: Report) -> None:
    formulas = [value.value] if isinstance(value, claim_values.Exact) else list(getattr(value, "dims", ()))
    for formula in formulas:
        unknown = sorted(getattr(formula, "names", frozenset()) - known)
        if unknown:
            raise ClaimError(f"{formula.text!r} uses {unknown[0]!r}, which {report.model} does not define",
                             f"its names: {', '.join(sorted(known))}")


_PART = r"""(?:"[^"\n]*"|'[^'\n]*'|[A-Za-z0-9_\-]+)"""
_ASSIGNMENT = re.compile(rf"^[ \t]*({_PART}(?:[ \t]*\.[ \t]*{_PART})*)[ \t]*=", re.MULTILINE)
_HEADER = re.compile(rf"^[ \t]*\[\[?[ \t]*({_PART}(?:[ \t]*\.[ \t]*{_PART})*)[ \t]*\]", re.MULTILINE)
_PARTS = re.compile(_PART)


@functools.lru_cache(maxsize=4)  # gradescope and [weights] ask it once per key of the same text: read-only
def key_lines(text: str) -> dict[str, int]:
    """The line of each key of a TOML text, under its table: {"conv1.params": 2, "expect.params": 40}. One pass."""
    out: dict[str, int] = {}
    table, line, last = "", 1, 0
    for match in re.finditer(rf"{_HEADER.pattern}|{_ASSIGNMENT.pattern}", text, re.MULTILINE):
        line += text.count("\n", last, match.start())
        last = match.start()
        header, assigned = match.group(1), match.group(2)
        if header is not None:
            table = _dotted(header)
        else:
            out.setdefault(f"{table}.{_dotted(assigned)}" if table else _dotted(assigned), line)
    return out


def _line(lines: dict[str, int], key: str) -> int | None:
    """The line of `key`, or of the nearest table or inline table it is in (conv1 = {params = 1})."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


def _dotted(written: str) -> str:
    return ".".join(part.strip("\"'") if part[0] in "\"'" else part for part in _PARTS.findall(written))


def line_of(text: str, key: str) -> int | None:
    """The line where `key` is claimed in a TOML text (under its full dotted name), if found."""
    return _line(key_lines(text), key)
