"""The one module that reads TOML: spec text -> Spec, or a SpecError naming the place.

Loading checks everything that does not depend on values: the tables and their
keys, layer types and field names, the TOML type of each field, the syntax of
each expression. What depends on values (ranges, shapes) is checked by `analyze`.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import expr
from .dtypes import DType
from .errors import SpecError
from .fields import Choice, read_number
from .layers import LAYERS

TOP_LEVEL = ("model", "vars", "layers", "expect")
MODEL_KEYS = ("name", "input", "dtype", "course")
_LAYERS_HEADER = re.compile(r"^\s*\[\[\s*layers\s*\]\]", re.MULTILINE)


@dataclass(frozen=True)
class LayerSpec:
    """One [[layers]] table as read: values are numbers, parsed expressions, flags or words."""

    index: int  # counted from 1, in file order
    kind: str
    name: str
    fields: tuple[tuple[str, object], ...]
    line: int | None = None

    @property
    def where(self) -> str:
        return f'layers[{self.index}] "{self.name}" ({self.kind})'


@dataclass(frozen=True)
class Spec:
    name: str
    input: tuple[object, ...]  # one sample's shape, as read
    layers: tuple[LayerSpec, ...]
    vars: tuple[tuple[str, object], ...] = ()
    dtype: DType = DType.float32
    expect: tuple[tuple[str, object], ...] = ()  # claims, raw, for `archcalc check`
    path: str | None = None
    text: str = dataclasses.field(default="", repr=False, compare=False)  # as read: check finds the line of each claim in it
    course: bool = False  # [model] course = true: the course's own network (its memory formula is shown)


def load(path: str | Path) -> Spec:
    """Read a spec file: `archcalc.load("specs/alexnet.toml")`."""
    return loads(read_text(path, "a spec file"), path=str(path))


def read_text(path: str | Path, what: str, error: type[SpecError] = SpecError) -> str:
    """A file's text, or `error` saying plainly why it cannot be read (missing, a folder, not UTF-8...)."""
    path = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("no such file", path=path) from None
    except IsADirectoryError:
        raise error(f"is a directory, not {what}", path=path) from None
    except UnicodeDecodeError:
        raise error("not a text file (it is not UTF-8)", path=path) from None
    except OSError as oserror:
        raise error(f"cannot read it: {oserror.strerror}", path=path) from None


def loads(text: str, path: str | None = None) -> Spec:
    """Read a spec from TOML text."""
    try:
        return _read(text, path)
    except SpecError as error:
        raise error.at(path=path or "<spec>") from None


def _read(text: str, path: str | None) -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"not valid TOML: {error}", "see https://toml.io for the syntax") from None
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise SpecError("not a spec: arrays or tables nested too deeply to read") from None
    if not data:
        raise SpecError("empty spec", "a spec needs a [model] table with an input, and [[layers]]")
    _no_unknown(data, TOP_LEVEL, "table", where=None)
    model = _table(data, "model", required=True)
    _no_unknown(model, MODEL_KEYS, "key", where="[model]")
    if "input" not in model:
        raise SpecError("missing 'input', one sample's shape", 'for example input = [3, 224, 224] or [3, "H", "W"]', "input", "[model]")
    shape = model["input"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        raise SpecError(
            f"expected a list of 1 to 4 sizes, got {shape!r}",
            "[F] is a feature vector, [C, L] 1-D, [C, H, W] 2-D, [C, D, H, W] 3-D; the batch axis is not written",
            "input",
            "[model]",
        )
    input_ = tuple(_located(read_number, item, field="input", where="[model]") for item in shape)
    dtype = DType(_located(Choice(tuple(d.value for d in DType)).read, model.get("dtype", "float32"), field="dtype", where="[model]"))
    name = model.get("name", Path(path).stem if path else "model")
    if not isinstance(name, str):
        raise SpecError(f"expected a string, got {name!r}", None, "name", "[model]")
    course = model.get("course", False)
    if not isinstance(course, bool):
        raise SpecError(f"expected true or false, got {course!r}", "course = true marks the course's own networks", "course", "[model]")

    variables = _table(data, "vars")
    for key, value in variables.items():
        _check_name(key, "[vars]", field=key)
        variables[key] = _located(read_number, value, field=key, where="[vars]")

    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("no layers", "add at least one [[layers]] table with a type, e.g. type = \"dense\"")
    lines = [text.count("\n", 0, m.start()) + 1 for m in _LAYERS_HEADER.finditer(text)]
    if len(lines) != len(layers):
        lines = [None] * len(layers)
    return Spec(
        name=name,
        input=input_,
        layers=_read_layers(layers, lines),
        vars=tuple(variables.items()),
        dtype=dtype,
        expect=tuple(_table(data, "expect").items()),
        path=path,
        text=text,
        course=course,
    )


def _read_layers(tables: list, lines: list) -> tuple[LayerSpec, ...]:
    counts: dict[str, int] = {}
    named: dict[str, int] = {}
    out = []
    for index, (table, line) in enumerate(zip(tables, lines), start=1):
        place = {"where": f"layers[{index}]", "line": line}
        if not isinstance(table, dict):
            raise SpecError("expected a table", "write each layer as a [[layers]] table", **place)
        kind = table.get("type")
        if kind not in LAYERS:
            if kind is None:
                raise SpecError("missing 'type'", f"one of {', '.join(LAYERS)}", "type", **place)
            close = difflib.get_close_matches(str(kind), LAYERS, n=1)
            raise SpecError(
                f"unknown layer type {kind!r}",
                (f"did you mean {close[0]!r}? " if close else "") + f"types: {', '.join(LAYERS)}",
                "type",
                **place,
            )
        counts[kind] = counts.get(kind, 0) + 1
        name = table.get("name", f"{kind}{counts[kind]}")
        place["where"] = f'layers[{index}] "{name}" ({kind})'
        _check_name(name, **place)
        if name in named:
            raise SpecError(
                f"the name {name!r} is already taken by layers[{named[name]}]",
                "give each layer its own name" + ("" if "name" in table else f" (this one is named {name!r} by default)"),
                "name",
                **place,
            )
        named[name] = index
        known = LAYERS[kind].spec_fields()
        _no_unknown(table, ("type", "name", *known), "field", **place)
        fields = tuple(
            (key, _located(known[key].read, value, field=key, **place))
            for key, value in table.items()
            if key not in ("type", "name")
        )
        out.append(LayerSpec(index=index, kind=kind, name=name, fields=fields, line=line))
    return tuple(out)


def _table(data: dict, key: str, required: bool = False) -> dict:
    value = data.get(key, None)
    if value is None:
        if required:
            raise SpecError(f"missing [{key}] table", "a spec starts with [model] and input = [C, H, W]")
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"'{key}' must be a table, got {key} = {value!r}", f"write [{key}] on a line of its own, its keys on the lines below")
    return dict(value)


def _no_unknown(table: dict, valid: tuple[str, ...], what: str, **place) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(f"unknown {what} {key!r}", f"{hint}valid: {', '.join(valid)}", **place)


def _check_name(name: object, where: str, line: int | None = None, field: str = "name") -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name in expr.FUNCTIONS:
        raise SpecError(
            f"{name!r} is not a usable name",
            "names are letters, digits and underscores, starting with a letter (conv1, fc_out); "
            "they are used in claims such as conv1.params",
            field,
            where,
            line=line,
        )


def _located(read, value, **place):
    try:
        return read(value)
    except SpecError as error:
        raise error.at(**place) from None
