"""The one module that reads TOML: spec text -> Spec, or a SpecError naming the place.

Loading checks everything that does not depend on values: the tables and their
keys, layer types and field names, the TOML type of each field, the syntax of
each expression. What depends on values (ranges, shapes) is checked by `analyze`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from ..core import expr, untrusted
from ..core.dtypes import DType
from ..core.errors import SpecError
from ..core.fields import Choice, read_number
from ..layers import LAYERS
from . import finetune, generate, hints, positions
from .generate import Generate

TOP_LEVEL = ("model", "vars", "layers", "blocks", "expect", "weights", "variants", "grading", "names", "finetune", "generate")
MODEL_KEYS = ("name", "input", "dtype", "course", "outputs")
_LAYERS_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*layers[ \t]*\]\]", re.MULTILINE)  # [ \t]: \s* would span lines, quadratically
GRAPH_KEYS = ("from", "when")  # fields every layer may have
USE_KEYS = ("block", "repeat", "start", "checkpoint")  # the fields of a block use that are not its variables
MAX_REPEAT = 1000
BATCH = "B"
INPUT = "input"  # in `from`: the model's input, or a block's


@dataclass(frozen=True)
class LayerSpec:
    """One [[layers]] table as read: values are numbers, parsed expressions, flags or words."""

    index: int  # counted from 1, in file order (within its block, for a block's layers)
    kind: str  # a layer kind, or "block" for a block use
    name: str  # within a block, the local name (dotted: "downsample.0")
    fields: tuple[tuple[str, object], ...]  # a block use: its variables
    line: int | None = None  # its header's ([[layers]]) line
    inputs: tuple[str, ...] | None = None  # `from`; None: the previous layer's output
    when: object = None  # present only when this is non-zero; None: always
    block: str | None = None  # a block use: the block's name
    repeat: object = None  # a block use: None (one use), or how many
    start: object = 0  # a block use with repeat: the first index
    checkpoint: object = 0  # a block use: activation checkpointing of each repeat when non-zero (a condition, like when)
    table: str = "layers"  # "layers", or "blocks.NAME.layers"
    lines: tuple[tuple[str, int], ...] = dataclasses.field(default=(), repr=False, compare=False)  # each field's line, if found

    def line_of(self, field: str | None) -> int | None:
        """The line a field is written on (its header's line if it was not found, or for None)."""
        return next((line for key, line in self.lines if key == field), self.line)

    @property
    def where(self) -> str:
        return f'{self.table}[{self.index}] "{self.name}" ({self.kind})'

    @property
    def names(self) -> frozenset[str]:
        """The free names of its expressions (a use's `index` included)."""
        found: set[str] = set()
        for value in (*(v for _, v in self.fields), self.when, self.repeat, self.start, self.checkpoint):
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, expr.Expr):
                    found |= item.names
        return frozenset(found)


@dataclass(frozen=True)
class Block:
    """A sub-network declared once ([blocks.NAME]) and used by layers of type "block"."""

    name: str
    layers: tuple[LayerSpec, ...]
    variables: tuple[str, ...]  # the free names of its layers that are not [vars]: each use gives them


@dataclass(frozen=True)
class Spec:
    name: str
    input: tuple[object, ...]  # one sample's shape, as read
    layers: tuple[LayerSpec, ...]
    vars: tuple[tuple[str, object], ...] = ()
    dtype: DType = DType.float32
    expect: tuple[tuple[str, object], ...] = ()  # claims, raw, for `archcalc check`
    weights: tuple[tuple[str, object], ...] = ()  # points per claim key, for --format gradescope (gradescope.py)
    variants: tuple[tuple[str, object], ...] = ()  # [variants]: [vars] ranges for quiz variants (variants.py)
    grading: tuple[tuple[str, object], ...] = ()  # [grading]: tolerances and Gradescope visibility (teaching/grading.py)
    path: str | None = None
    blocks: tuple[tuple[str, Block], ...] = ()
    text: str = dataclasses.field(default="", repr=False, compare=False)  # as read: check finds the line of each claim in it
    course: bool = False  # [model] course = true: the course's own network (its memory formula is shown)
    names: tuple[tuple[str, str], ...] = ()  # [names]: a layer path -> torch's module path where that is no spec name
    outputs: tuple[str, ...] = ()  # [model] outputs: the layers whose outputs the model returns (default: the last)
    finetune: finetune.Finetune | None = None  # [finetune]: what trains (archcalc/spec/finetune.py)
    lines: tuple[tuple[str, int], ...] = dataclasses.field(default=(), repr=False, compare=False)  # "[model] input": its line
    generate: Generate | None = None  # [generate]: generation with a KV cache (spec/generate.py)

    def line_of(self, where: str, key: str) -> int | None:
        """The line of a key of [model] or [vars] (`where`), where it was found."""
        return next((line for written, line in self.lines if written == f"{where} {key}"), None)


def load(path: str | Path) -> Spec:
    """Read a spec file: `archcalc.load("specs/alexnet.toml")`."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load(path): path must be a str or a Path, got {type(path).__name__}")
    return loads(read_text(path, "a spec file"), path=str(path))


def read_text(path: str | Path, what: str, error: type[SpecError] = SpecError) -> str:
    """A regular file's text (size-capped), or `error` saying plainly why it cannot be read (missing, a folder, not UTF-8...)."""
    return untrusted.read_text(path, what, error)


def loads(text: str, path: str | None = None) -> Spec:
    """Read a spec from TOML text."""
    if not isinstance(text, str):
        raise TypeError(f"loads(text): text must be a str (the TOML itself; archcalc.load reads a file), got {type(text).__name__}")
    if path is not None and not isinstance(path, str):
        raise TypeError(f"loads(text, path): path must be a str or None, got {type(path).__name__}")
    try:
        return _read(text, path)
    except SpecError as error:
        raise error.at(path=path or "<spec>") from None
    except RecursionError:  # blocks using blocks thousands deep
        raise SpecError("nested too deeply to read (blocks inside blocks inside blocks...)", path=path or "<spec>") from None


def _read(text: str, path: str | None) -> Spec:
    headers = _lines(text, _LAYERS_HEADER)
    if len(headers) > untrusted.MAX_LAYERS:  # counted before tomllib reads them all
        raise SpecError(f"{len(headers):,} layers: more than archcalc reads ({untrusted.MAX_LAYERS:,})",
                        line=headers[untrusted.MAX_LAYERS])
    data = untrusted.parse_toml(text, SpecError, "see https://toml.io for the syntax")
    tables = positions.scan(text)
    model_lines = _one_table(tables, "model")
    vars_lines = _one_table(tables, "vars")
    if not data:
        raise SpecError("empty spec", "a spec needs a [model] table with an input, and [[layers]]")
    _no_unknown(data, TOP_LEVEL, "table", where=None)
    model = _read_model(_table(data, "model", required=True), model_lines, path)
    variables = _read_vars(_table(data, "vars"), vars_lines)
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("no layers", "add at least one [[layers]] table with a type, e.g. type = \"dense\"")
    blocks = _read_blocks(_table(data, "blocks"), text, tables, set(variables))
    return Spec(
        **model,
        layers=_read_layers(layers, _array_tables(tables, "layers", len(layers)), "layers", blocks),
        vars=tuple(variables.items()),
        expect=tuple(_table(data, "expect").items()),
        weights=tuple(_table(data, "weights").items()),
        variants=tuple(_table(data, "variants").items()),
        grading=tuple(_table(data, "grading").items()),
        path=path,
        text=text,
        blocks=tuple(blocks.items()),
        lines=tuple((f"[{table}] {untrusted.name(key)}", line) for table, keys in (("model", model_lines), ("vars", vars_lines))
                    for key, line in keys.items()),
        names=_read_names(_table(data, "names")),
        generate=generate.read(data["generate"], _one_table(tables, "generate")) if "generate" in data else None,
        finetune=finetune.read(data["finetune"], _one_table(tables, "finetune")) if "finetune" in data else None,
    )


def _read_model(model: dict, model_lines: dict, path: str | None) -> dict:
    """[model]: the input's shape, the dtype, the name, whether it is the course's, the outputs (Spec's fields)."""
    _no_unknown(model, MODEL_KEYS, "key", where="[model]", lines=model_lines)
    if "input" not in model:
        raise SpecError("missing 'input', one sample's shape", 'for example input = [3, 224, 224] or [3, "H", "W"]', "input", "[model]")
    shape = model["input"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        raise SpecError(
            f"expected a list of 1 to 4 sizes, got {shape!r}",
            "[F] is a feature vector, [C, L] 1-D, [C, H, W] 2-D, [C, D, H, W] 3-D; the batch axis is not written",
            "input",
            "[model]",
            line=model_lines.get("input"),
        )
    input_ = tuple(_located(read_number, item, field="input", where="[model]", line=model_lines.get("input")) for item in shape)
    dtype = DType(_located(Choice(tuple(d.value for d in DType)).read, model.get("dtype", "float32"), field="dtype", where="[model]",
                           line=model_lines.get("dtype")))
    # without a name, the file's: shown as text, its control characters as escapes (a file name is not the spec's text)
    name = model.get("name", untrusted.one_line(Path(path).stem)[:500] if path else "model")
    if not isinstance(name, str):
        raise SpecError(f"expected a string, got {_show(name)}", None, "name", "[model]", line=model_lines.get("name"))
    if untrusted.visible(name) != name or len(name) > 500:
        raise SpecError(f"{untrusted.one_line(repr(name[:60]))}: a model's name is printable text of at most 500 characters "
                        "(no control characters: it is shown on terminals)", None, "name", "[model]", line=model_lines.get("name"))
    course = model.get("course", False)
    if not isinstance(course, bool):
        raise SpecError(f"expected true or false, got {_show(course)}", "course = true marks the course's own networks", "course", "[model]",
                        line=model_lines.get("course"))
    outputs = _read_outputs(model.get("outputs", []), model_lines.get("outputs"))
    return {"input": input_, "dtype": dtype, "name": name, "course": course, "outputs": outputs}


def _read_vars(variables: dict, vars_lines: dict) -> dict:
    """[vars]: each name (written once, however it is spelled) and its value, a number or a formula."""
    read_vars = {}
    for key, value in variables.items():
        line = vars_lines.get(key)
        _check_name(key, "[vars]", line, field=untrusted.one_line(key))
        if untrusted.name(key) in read_vars:
            raise SpecError(f"{key!r} is the name {untrusted.name(key)!r} written another way, given twice", None,
                            untrusted.name(key), "[vars]", line=line)
        read_vars[untrusted.name(key)] = _located(read_number, value, field=key, where="[vars]", line=line)
    return read_vars


TORCH_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


def _read_names(table: dict) -> tuple[tuple[str, str], ...]:
    """[names]: `"trunk_output.block1.block1_0" = "trunk_output.block1.block1-0"`, a spec path (a layer's name or a
    prefix of one) and torch's module path of the same depth, where torch's is not a spec name (an nn.Sequential's
    `0` at the top, regnet's `block1-0`). build names its modules by torch's paths, so torch's state_dict loads."""
    if len(table) > untrusted.MAX_LAYERS:
        raise SpecError(f"{len(table):,} names: more than archcalc reads ({untrusted.MAX_LAYERS:,})", where="[names]")
    out = []
    for key, value in table.items():
        _check_name(key, "[names]", field=untrusted.one_line(key), dotted=True)
        segments = value.split(".") if isinstance(value, str) else None
        if segments is None or not all(TORCH_SEGMENT.fullmatch(part) for part in segments) or len(segments) != len(key.split(".")):
            raise SpecError(f"expected torch's module path of {len(key.split('.'))} segment(s), got {_show(value)}",
                            "segments of letters, digits, underscores and hyphens, one per segment of the spec's path: "
                            '"layer0" = "0", "stage.block1_0" = "stage.block1-0"', untrusted.one_line(key), "[names]")
        out.append((untrusted.name(key), value))
    return tuple(out)


def _read_outputs(raw, line: int | None = None) -> tuple[str, ...]:
    """[model] outputs = ["out", "aux"]: layers' full names, each once (segmentation's heads, a tuple's items)."""
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise SpecError(f"expected a list of layers' names, got {_show(raw)}", 'outputs = ["out", "aux"]', "outputs", "[model]",
                        line=line)
    if len(raw) > untrusted.MAX_LAYERS:
        raise SpecError(f"{len(raw):,} outputs: more than archcalc reads", None, "outputs", "[model]", line=line)
    for name in raw:
        _check_name(name, "[model]", line, field="outputs", dotted=True)
    names = tuple(untrusted.name(name) for name in raw)
    if len(set(names)) != len(names):
        raise SpecError("a layer is named twice", "give each output once", "outputs", "[model]", line=line)
    return names


def _lines(text: str, header: re.Pattern) -> list[int]:
    """The line of each header, in one pass over the text."""
    out, line, last = [], 1, 0
    for match in header.finditer(text):
        line += text.count("\n", last, match.start())
        last = match.start()
        out.append(line)
    return out


def _one_table(tables: list[positions.Table], name: str) -> dict[str, int]:
    """The line of each key of [name] (none found: an empty mapping)."""
    return next((table.keys for table in tables if table.name == name and not table.array), {})


def _array_tables(tables: list[positions.Table], name: str, count: int) -> list[positions.Table | None]:
    """The [[name]] tables, one for each of the `count` elements tomllib read; [None] * count when they are not as many."""
    found = [table for table in tables if table.array and table.name == name]
    return found if len(found) == count else [None] * count


def _inline_lines(text: str, block: str, tables: list) -> list:
    """The lines of a block's layers written inline (`layers = [{ name = "conv1", ... }, ...]`), found by name."""
    header = re.search(r"^\s*\[\s*blocks\s*\.\s*" + re.escape(block) + r"\s*\]", text, re.MULTILINE)
    position, out = header.end() if header else 0, []
    for table in tables:
        name = table.get("name") if isinstance(table, dict) else None
        found = re.compile(r"\bname\s*=\s*[\"']" + re.escape(name) + r"[\"']").search(text, position) if isinstance(name, str) else None
        if found is None:
            out.append(None)
            continue
        out.append(positions.Table(f"blocks.{block}.layers", True, text.count("\n", 0, found.start()) + 1))
        position = found.end()
    return out


def _read_blocks(tables: dict, text: str, written: list[positions.Table], variables: set[str]) -> dict[str, Block]:
    """Every [blocks.NAME], its layers read and its variables found; uses checked against them."""
    raw = {}
    for name, table in tables.items():
        where = f"[blocks.{name}]"
        _check_name(name, where, field="name")
        if not isinstance(table, dict):
            raise SpecError(f"expected a table, got {_show(table)}", f"write [[blocks.{name}.layers]] tables", where=where)
        _no_unknown(table, ("layers",), "key", where=where)
        layers = table.get("layers")
        if not isinstance(layers, list) or not layers:
            raise SpecError("a block needs layers", f"add [[blocks.{name}.layers]] tables", where=where)
        raw[name] = layers
    blocks: dict[str, Block] = {}
    reading: list[str] = []

    def read(name: str) -> Block:
        if name in blocks:
            return blocks[name]
        if name in reading:
            cycle = " -> ".join([*reading[reading.index(name):], name])
            raise SpecError(f"blocks use each other in a circle: {cycle}", "a block may use other blocks, not itself",
                            where=f"[blocks.{name}]")
        reading.append(name)
        lines = _array_tables(written, f"blocks.{name}.layers", len(raw[name]))
        if lines and lines[0] is None:
            lines = _inline_lines(text, name, raw[name])
        layers = _read_layers(raw[name], lines, f"blocks.{name}.layers",
                              None, lambda used: read(used) if used in raw else None)
        reading.pop()
        found: set[str] = set()
        for layer in layers:
            found |= layer.names - ({"index"} if layer.block else set())
        blocks[name] = Block(name, layers, tuple(sorted(found - variables - {BATCH, "index"})))
        return blocks[name]

    for name in raw:
        read(name)
    return blocks


def _show(raw) -> str:
    return untrusted.one_line(repr(raw)[:80])


def _read_layers(tables: list, found: list, table_name: str, blocks, find=None) -> tuple[LayerSpec, ...]:
    """The layers of the spec (`blocks`: the blocks read) or of a block (`find` reads a block by name);
    `found`: where each table is written (positions.Table, or None)."""
    find = find or (lambda used: blocks.get(used))
    counts: dict[str, int] = {}
    named: dict[str, int] = {}
    out = []
    for index, (table, written) in enumerate(zip(tables, found), start=1):
        lines = written.keys if written else {}
        place = {"where": f"{table_name}[{index}]", "line": written.line if written else None}
        if not isinstance(table, dict):
            raise SpecError("expected a table", f"write each layer as a [[{table_name}]] table", **place)
        kind = table.get("type")
        if kind == "block":
            name = _layer_name(table, kind, counts, named, index, table_name, place, lines)
            out.append(_read_use(table, index, name, table_name, find, place, lines))
            continue
        if not isinstance(kind, str) or kind not in LAYERS:
            _unknown_type(table, kind, index, table_name, place, lines)
        name = _layer_name(table, kind, counts, named, index, table_name, place, lines)
        known = LAYERS[kind].spec_fields()
        _no_unknown(table, ("type", "name", *known, *GRAPH_KEYS), "field", **place, lines=lines,
                    hint=functools.partial(hints.field_hint, fields=known))
        fields = tuple(
            (key, _located(known[key].read, value, field=key, **_at(place, lines, key)))
            for key, value in table.items()
            if key not in ("type", "name", *GRAPH_KEYS)
        )
        out.append(LayerSpec(index=index, kind=kind, name=name, fields=fields, line=place["line"], table=table_name,
                             lines=_field_lines(table, lines), **_graph_fields(table, place, lines)))
    return tuple(out)


def _at(place: dict, lines: dict, key: str) -> dict:
    """The place of one field: its own line where it was found."""
    return {**place, "line": lines.get(key, place["line"])}


def _field_lines(table: dict, lines: dict) -> tuple[tuple[str, int], ...]:
    return tuple((key, lines[key]) for key in table if key in lines)


def _unknown_type(table: dict, kind: object, index: int, table_name: str, place: dict, lines: dict) -> None:
    """Refuse a missing or unknown type, naming the layer (its name, if it has one) and what was meant."""
    name = table.get("name")
    if isinstance(name, str):
        place["where"] = f'{table_name}[{index}] "{untrusted.one_line(name[:80])}"'
    types = f"types: {', '.join(LAYERS)}, block"
    if kind is None:
        raise SpecError("missing 'type'", f"one of {', '.join(LAYERS)}", "type", **place)
    meant = hints.type_hint(kind, LAYERS) if isinstance(kind, str) else None
    raise SpecError(f"unknown layer type {_show(kind)}", meant or types, "type", **_at(place, lines, "type"))


def _layer_name(table: dict, kind: str, counts: dict, named: dict, index: int, table_name: str, place: dict,
                lines: dict) -> str:
    """A layer's or a block use's name (default: its kind and a count, conv1), checked, NFKC-normalised and
    unique; `place` then names it."""
    counts[kind] = counts.get(kind, 0) + 1
    name = table.get("name", f"{kind}{counts[kind]}")
    place["where"] = f'{table_name}[{index}] "{untrusted.one_line(str(name)[:80])}" ({kind})'
    _check_name(name, place["where"], lines.get("name", place["line"]), dotted=True)
    name = untrusted.name(name)
    place["where"] = f'{table_name}[{index}] "{name}" ({kind})'
    _unique(name, named, index, table, _at(place, lines, "name"))
    return name


def _unique(name: str, named: dict, index: int, table: dict, place: dict) -> None:
    if name in named:
        raise SpecError(
            f"the name {name!r} is already taken by {place['where'].split('[')[0]}[{named[name]}]",
            "give each layer its own name" + ("" if "name" in table else f" (this one is named {name!r} by default)"),
            "name",
            **place,
        )
    named[name] = index


def _graph_fields(table: dict, place: dict, lines: dict) -> dict:
    """`from` and `when`, read."""
    out = {}
    if "from" in table:
        out["inputs"] = _located(_read_from, table["from"], field="from", **_at(place, lines, "from"))
    if "when" in table:
        out["when"] = _located(_condition, table["when"], field="when", **_at(place, lines, "when"))
    return out


def _read_from(raw: object) -> tuple[str, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError(f"expected a layer's name or a list of them, got {raw!r}", 'from = "conv1" or from = ["bn2", "input"]')
    for name in names:
        if styled := untrusted.styled_problem(name):
            raise SpecError(f"{_show(name)} is not a layer's name: {styled}")
    names = [untrusted.name(name) for name in names]
    for name in names:
        if not _is_path(name):
            raise SpecError(f"{_show(name)} is not a layer's name", "names are dotted paths such as layer1.0.conv1, or \"input\"")
    return tuple(names)


def _condition(raw: object) -> object:
    """A condition or a variable's value: true and false act as 1 and 0."""
    return int(raw) if isinstance(raw, bool) else read_number(raw, "a number, true, false or an expression")


def _read_use(table: dict, index: int, name: str, table_name: str, find, place: dict, lines: dict) -> LayerSpec:
    """A layer of type "block": which block, how often, and its variables."""
    used = table.get("block")
    if not isinstance(used, str):
        raise SpecError("missing 'block': the name of the block to use" if used is None else f"expected a block's name, got {used!r}",
                        "declare it as [blocks.NAME] with [[blocks.NAME.layers]]", "block", **_at(place, lines, "block"))
    block = find(used)
    if block is None:
        raise SpecError(f"unknown block {used!r}", _known_blocks(find, used), "block", **_at(place, lines, "block"))
    variables = {}
    for written, value in table.items():
        key = untrusted.name(written)  # as the block's expressions name it (NFKC)
        if key in ("type", "name", *GRAPH_KEYS, *USE_KEYS):
            continue
        if styled := untrusted.styled_problem(written):
            raise SpecError(f"{_show(written)} is not a usable name: {styled}", None, written, **_at(place, lines, written))
        if key not in block.variables:
            close = difflib.get_close_matches(key, block.variables, n=1)
            raise SpecError(
                f"block {used!r} has no variable {key!r}",
                (f"did you mean {close[0]!r}? " if close else "")
                + (f"its variables: {', '.join(block.variables)}" if block.variables else "it has no variables"),
                key, **_at(place, lines, written))
        variables[key] = _located(_condition, value, field=key, **_at(place, lines, written))
    missing = [v for v in block.variables if v not in variables]
    if missing:
        raise SpecError(f"block {used!r} needs {', '.join(missing)}", f"give each as a field of this use: {missing[0]} = ...",
                        missing[0], **place)
    extra = {}
    for key in ("repeat", "start"):
        if key in table:
            extra[key] = _located(read_number, table[key], field=key, **_at(place, lines, key))
    if "checkpoint" in table:
        extra["checkpoint"] = _located(_condition, table["checkpoint"], field="checkpoint", **_at(place, lines, "checkpoint"))
    return LayerSpec(index=index, kind="block", name=name, fields=tuple(variables.items()), line=place["line"], table=table_name,
                     block=used, lines=_field_lines(table, lines), **extra, **_graph_fields(table, place, lines))


def _known_blocks(find, used: str) -> str:
    return "declare it as [blocks.NAME] with [[blocks.NAME.layers]]"


def _table(data: dict, key: str, required: bool = False) -> dict:
    value = data.get(key)
    if value is None:
        if required:
            raise SpecError(f"missing [{key}] table", "a spec starts with [model] and input = [C, H, W]")
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"'{key}' must be a table, got {key} = {value!r}", f"write [{key}] on a line of its own, its keys on the lines below")
    return dict(value)


def _no_unknown(table: dict, valid: tuple[str, ...], what: str, lines: dict | None = None, hint=None, **place) -> None:
    """Refuse a key that is not `valid`, at its line, with `hint(key)` or the closest valid key as the hint."""
    for key in table:
        if key not in valid:
            meant = hint(key) if hint else None
            if meant is None:
                close = difflib.get_close_matches(key, valid, n=1)
                meant = f"did you mean {close[0]!r}?" if close else None
            if lines and key in lines:
                place = {**place, "line": lines[key]}
            raise SpecError(f"unknown {what} {_show(key)}", f"{meant} valid: {', '.join(valid)}" if meant else f"valid: {', '.join(valid)}",
                            **place)


def _is_segment(part: str) -> bool:
    return part.isdigit() or (part.isidentifier() and not keyword.iskeyword(part) and part not in expr.FUNCTIONS)


def _is_path(name: str) -> bool:
    return all(_is_segment(part) for part in name.split("."))


def _check_name(name: object, where: str, line: int | None = None, field: str = "name", dotted: bool = False) -> None:
    """A name (NFKC-normalised, as Python reads it) is an identifier, or with `dotted` a path of identifiers and
    numbers; never a keyword, a function, "input", or a segment Python mangles in a class (two underscores first)."""
    normal = untrusted.name(name) if isinstance(name, str) and len(name) <= 500 else None
    if normal is not None and (styled := untrusted.styled_problem(name)):
        raise SpecError(f"{_show(name)} is not a usable name: {styled}", None, field, where, line=line)
    if (normal is None or not (_is_path(normal) if dotted else _is_segment(normal)) or normal == INPUT
            or normal[:1].isdigit()):
        why = ""
    else:
        why = next(filter(None, (untrusted.segment_problem(part, index=True) for part in normal.split("."))), None)
        if why is None:
            return
        why = f": {why}"
    raise SpecError(
        f"{_show(name)} is not a usable name{why}",
        "names are letters, digits and underscores, starting with a letter (conv1, fc_out), "
        "or dotted paths of them and numbers (layer1.0.conv1); \"input\" is taken. "
        "They are used in claims such as conv1.params",
        field,
        where,
        line=line,
    )


def _located(read, value, **place):
    try:
        return read(value)
    except SpecError as error:
        raise error.at(**place) from None
