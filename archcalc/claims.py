"""Claim keys and claim files (docs/claims.md): "conv1.params", "dense.share", "memory.training_bytes@B=32".

A claim is a key (what is claimed about which part of the network) and a value (claimed.py).
Claims come from a spec's [expect] table or from an answers file: TOML with the same keys and
an optional [student] table. `read` checks every key against one analysed network and refuses
what it does not know, listing what it does.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import claimed, expr, num
from .claimed import Claimed, ClaimError
from .dtypes import DType
from .errors import SpecError
from .memory import Device, Optimizer
from .report import Report
from .spec import read_text

LAYER = ("output", "input", "weights", "biases", "params", "share", "macs", "flops", "training_flops")
TOTAL = ("params", "weights", "biases", "macs", "flops", "training_flops")
TYPE = ("params", "weights", "biases", "share", "macs", "flops", "training_flops")
QUALIFIERS = ("B", "dtype", "optimizer", "device")
STUDENT = ("name", "id", "email", "group")  # the fields of an answers file's [student] table


@dataclass(frozen=True)
class Key:
    """What a claim is about: `scope` is "layer", "type", "total" or "memory"."""

    text: str
    scope: str
    quantity: str
    name: str | None = None  # the layer's name, or the layer type
    at: tuple[tuple[str, object], ...] = ()  # memory only: B, dtype, optimizer, device

    @property
    def kind(self) -> str:
        """What the value is: a "shape", a "share" (in %), "bytes" or a "count"."""
        if self.scope == "memory":
            return "bytes"
        if self.quantity in ("output", "input"):
            return "shape"
        return "share" if self.quantity == "share" else "count"


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
    text = read_text(path, "an answers file", ClaimError)
    return loads_answers(text, str(path))


def loads_answers(text: str, path: str | None = None) -> Answers:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ClaimError(f"not valid TOML: {error}", 'an answers file has lines such as "conv1.params" = 34944',
                         path=path) from None
    if "model" in data and "layers" in data:
        raise ClaimError("this is a spec, not an answers file",
                         "give the spec first and answers after it: archcalc check SPEC ANSWERS...", path=path)
    student = data.pop("student", {})
    if not isinstance(student, dict):
        raise ClaimError("student must be a table: [student] with name = ... and id = ...", path=path)
    for key, value in student.items():
        if key not in STUDENT or isinstance(value, (dict, list, bool)):
            raise ClaimError(
                f"{key!r} is not a field of [student] (they are {', '.join(STUDENT)})",
                "in TOML every key after a [student] line belongs to that table: put [student] at the end of the file",
                where="[student]", path=path, line=line_of(text, key),
            )
    return Answers(path, tuple(flatten(data)), dict(student), text)


def flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    """TOML's dotted keys and sub-tables back into claim keys: {"conv1": {"params": 1}} -> [("conv1.params", 1)]."""
    out = []
    for key, value in table.items():
        if isinstance(value, dict):
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def read(pairs, report: Report, *, path: str | None = None, where: str | None = None, text: str = "") -> tuple[Claim, ...]:
    """Check and read raw (key, value) pairs for `report`'s network; ClaimError names the file, line and key."""
    known = names(report)
    out = []
    for key_text, raw in pairs:
        line = line_of(text, key_text)
        try:
            key = parse_key(key_text, report)
            value = claimed.read(raw, key.kind)
            _check_names(value, known, report)
        except SpecError as error:
            raise ClaimError(error.problem, error.hint, f'"{key_text}"', where, path, line) from None
        out.append(Claim(key, value, raw, line))
    return tuple(out)


def parse_key(text: str, report: Report) -> Key:
    base, at_sign, qualifiers = text.partition("@")
    parts = base.strip().split(".")
    layers = [row.name for row in report.rows]
    kinds = list(dict.fromkeys(row.kind for row in report.rows))
    memory = memory_names(report)
    rest = ".".join(parts[1:])
    if parts[0] == "memory" and rest in memory:
        return Key(text, "memory", rest, at=_qualifiers(qualifiers, report) if at_sign else ())
    if at_sign:
        raise ClaimError(f"only memory quantities take @{'|'.join(QUALIFIERS)}=...",
                         f"{parts[-1]} is per sample; memory keys: {', '.join('memory.' + m for m in memory)}")
    if len(parts) == 1 and parts[0] in TOTAL:
        return Key(text, "total", parts[0])
    if len(parts) == 2 and parts[0] in layers:
        return Key(text, "layer", _quantity(parts[1], LAYER, "a layer", text, report), parts[0])
    if len(parts) == 2 and parts[0] in kinds:
        return Key(text, "type", _quantity(parts[1], TYPE, "a layer type", text, report), parts[0])
    if len(parts) == 3 and parts[0] == "type" and parts[1] in kinds:
        return Key(text, "type", _quantity(parts[2], TYPE, "a layer type", text, report), parts[1])
    raise ClaimError(_unknown(parts, report, layers, kinds), _suggest(text, report))


def _unknown(parts: list[str], report: Report, layers: list[str], kinds: list[str]) -> str:
    if len(parts) == 1:
        return f"unknown quantity {parts[0]!r} (a total is one of {', '.join(TOTAL)})"
    if parts[0] == "memory":
        return f"unknown memory quantity {'.'.join(parts[1:])!r}"
    if parts[0] in layers or parts[0] in kinds:
        return f"a key is NAME.QUANTITY, got {len(parts)} parts"
    return f"{report.model} has no layer or layer type named {parts[0]!r}"


def _quantity(word: str, valid: tuple[str, ...], what: str, text: str, report: Report) -> str:
    if word not in valid:
        raise ClaimError(f"{word!r} is not a quantity of {what}", _suggest(text, report))
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
        *(f"memory.{m}" for m in memory_names(report)),
    ]


def summary(report: Report) -> str:
    """The valid keys, one form a line: layers × quantities, types, totals, memory."""
    layers = ", ".join(row.name for row in report.rows)
    kinds = ", ".join(dict.fromkeys(row.kind for row in report.rows))
    return "\n".join("    " + line for line in (
        f"LAYER.QUANTITY: LAYER one of {layers}; QUANTITY one of {', '.join(LAYER)}",
        f"TYPE.QUANTITY: TYPE one of {kinds}; QUANTITY one of {', '.join(TYPE)}",
        f"totals: {', '.join(TOTAL)}",
        f"memory.X@B=32,dtype=...,optimizer=...,device=...: X one of {', '.join(memory_names(report))}",
    ))


def _qualifiers(text: str, report: Report) -> tuple[tuple[str, object], ...]:
    """'B=32,dtype=bfloat16' -> (("B", 32), ("dtype", DType.bfloat16))."""
    out: dict[str, object] = {}
    choices = {"dtype": DType, "optimizer": Optimizer, "device": Device}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = (s.strip() for s in item.partition("="))
        if not equals or not value or name not in QUALIFIERS:
            raise ClaimError(f"cannot read the qualifier {item!r}",
                             f"write NAME=VALUE with NAME one of {', '.join(QUALIFIERS)}: memory.training_bytes@B=32,dtype=bfloat16")
        if name in out:
            raise ClaimError(f"{name} is given twice")
        if name == "B":
            batch = expr.parse(value).evaluate(dict(report.values))
            if num.is_concrete(batch) and (num.is_integer(batch) is False or batch < 1):
                raise ClaimError(f"the batch size must be a whole number >= 1, got {value}")
            out[name] = batch
        else:
            try:
                out[name] = choices[name](value)
            except ValueError:
                raise ClaimError(f"unknown {name} {value!r}", f"one of {', '.join(choices[name])}") from None
    return tuple(out.items())


def names(report: Report) -> set[str]:
    """The names a claim's formula may use: the spec's known and free names, and B."""
    found = {name for name, _ in report.values} | {"B"}
    for row in report.rows:
        for x in (*row.output, row.params, row.macs):
            found |= num.free_names(x)
    return found


def _check_names(value: Claimed, known: set[str], report: Report) -> None:
    formulas = [value.value] if isinstance(value, claimed.Exact) else list(getattr(value, "dims", ()))
    for formula in formulas:
        unknown = sorted(getattr(formula, "names", frozenset()) - known)
        if unknown:
            raise ClaimError(f"{formula.text!r} uses {unknown[0]!r}, which {report.model} does not define",
                             f"its names: {', '.join(sorted(known))}")


def line_of(text: str, key: str) -> int | None:
    """The line where `key` is claimed in a TOML text (written whole or as its last part), if found."""
    for pattern in (re.escape(key), re.escape(key.rpartition(".")[2])):
        found = re.search(rf"""^[ \t]*["']?{pattern}["']?[ \t]*=""", text, re.MULTILINE)
        if found:
            return text.count("\n", 0, found.start()) + 1
    return None
