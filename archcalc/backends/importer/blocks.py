"""Blocks recovered from an imported module's repeated structure (`archcalc import`).

A module path P whose layers run one after another, read one tensor from outside and
are read from outside only through their last layer, is an instance; instances with the
same layers, wiring and non-numeric fields, differing only in sizes, become one block
whose varying sizes are its variables (one variable per distinct column of values).
Consecutive instances `P.K`, `P.K+1`... of one block, each reading the one before, with the
same values from the second on, become one use with `repeat` (the first's own values as
`"A if index == K else B"`). The importer checks the result against the
flat layers (every row's name, wiring, shapes and counts) and writes flat layers where
they differ: correctness first.

No torch here: this works on the importer's layer list.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ...core.fields import Axes, Size
from ...layers import LAYERS

MIN_LAYERS = 2  # a block of one layer says nothing a layer does not


@dataclass(frozen=True)
class Instance:
    prefix: str
    first: int
    stop: int
    source: str  # the one tensor it reads from outside
    signature: tuple
    values: tuple  # its sizes, in the signature's order


@dataclass(frozen=True)
class Block:
    """A recovered block: local layers (name, kind, fields with variable names, local inputs) and its variables."""

    name: str
    layers: tuple  # of (local name, kind, fields, inputs)
    variables: tuple[str, ...]
    columns: tuple  # per variable: the value positions it stands for


@dataclass(frozen=True)
class Use:
    name: str
    block: str
    source: str
    output: str  # the full name of its last layer (the last use's, with repeat)
    values: dict
    repeat: int | None = None
    start: int = 0


def _sized(kind: str) -> set[str]:
    cls = LAYERS[kind]
    return {name for name, reader in cls.spec_fields().items() if isinstance(reader, (Size, Axes))}


def _defaults(kind: str) -> dict:
    cls = LAYERS[kind]
    sized = _sized(kind)
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.name in sized and isinstance(f.default, int) and not isinstance(f.default, bool)}


def instances(layers: list, returned: list[str]) -> list[Instance]:
    """Every module path whose layers form a sound block instance."""
    index = {layer.name: i for i, layer in enumerate(layers)}
    readers: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        for name in layer.inputs:
            readers.setdefault(name, []).append(i)
    prefixes = []
    for layer in layers:
        parts = layer.name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix not in prefixes:
                prefixes.append(prefix)
    out = []
    for prefix in prefixes:
        if prefix in index:
            continue  # a layer has this name itself
        inside = [i for i, layer in enumerate(layers) if layer.name.startswith(prefix + ".")]
        first, stop = inside[0], inside[-1] + 1
        if len(inside) < MIN_LAYERS or inside != list(range(first, stop)):
            continue
        names = {layers[i].name for i in inside}
        sources = {n for i in inside for n in layers[i].inputs if n not in names}
        if len(sources) != 1:
            continue
        leaks = [n for n in names if n != layers[stop - 1].name
                 and (n in returned or any(not first <= r < stop for r in readers.get(n, ())))]
        if leaks:
            continue
        if any(layers[i].name[len(prefix) + 1:].split(".")[0].isdigit() for i in inside):
            continue  # a block's local names start with a word (an nn.Sequential's children are numbers)
        (source,) = sources
        signature, values = [], []
        for i in inside:
            layer = layers[i]
            local = layer.name[len(prefix) + 1:]
            fields = _defaults(layer.kind) | layer.fields
            sized = _sized(layer.kind)
            numbers = sorted(k for k, v in fields.items() if k in sized and isinstance(v, int) and not isinstance(v, bool))
            others = tuple(sorted((k, _frozen(v)) for k, v in fields.items() if k not in numbers))
            inputs = tuple("input" if n == source else n[len(prefix) + 1:] for n in layer.inputs)
            signature.append((local, layer.kind, others, tuple(numbers), inputs))
            values += [fields[k] for k in numbers]
        out.append(Instance(prefix, first, stop, source, tuple(signature), tuple(values)))
    return out


def recover(layers: list, returned: list[str], kinds: dict[str, str]) -> tuple[list, dict[str, Block]]:
    """The top level as a list of layers and Uses, and the blocks they use (empty: nothing repeats).

    `kinds` names a module path's torch class (the block is named after it)."""
    found = instances(layers, returned)
    groups: dict[tuple, list[Instance]] = {}
    for instance in found:
        groups.setdefault(instance.signature, []).append(instance)
    taken: set[int] = set()
    chosen: list[tuple[Instance, str]] = []
    blocks: dict[str, Block] = {}
    ranked = sorted(groups.values(), key=lambda g: (-len(g), -(g[0].stop - g[0].first)))  # the most repeated first
    for group in ranked:
        free = []
        for instance in group:
            span = set(range(instance.first, instance.stop))
            if not span & taken and not any(span & set(range(i.first, i.stop)) for i in free):
                free.append(instance)
        if len(free) < 2:
            continue
        name = _block_name(kinds.get(free[0].prefix, "block"), blocks)
        blocks[name] = _block(name, free)
        for instance in free:
            taken |= set(range(instance.first, instance.stop))
            chosen.append((instance, name))
    if not blocks:
        return list(layers), {}
    starts = {instance.first: (instance, name) for instance, name in chosen}
    top: list = []
    i = 0
    while i < len(layers):
        if i in starts:
            instance, name = starts[i]
            block = blocks[name]
            values = {v: instance.values[column[0]] for v, column in zip(block.variables, block.columns)}
            top.append(Use(instance.prefix, name, instance.source, layers[instance.stop - 1].name, values))
            i = instance.stop
            continue
        top.append(layers[i])
        i += 1
    return _repeats(top), blocks


def _block_name(torch_class: str, blocks: dict) -> str:
    base = re.sub(r"\W", "_", torch_class).lower() or "block"
    if not base[0].isalpha():
        base = "block_" + base
    name, n = base, 1
    while name in blocks:
        n += 1
        name = f"{base}_{n}"
    return name


def _block(name: str, group: list[Instance]) -> Block:
    """The block of instances that share a signature: sizes equal in all are written, the others are variables."""
    columns = list(zip(*(instance.values for instance in group)))
    variables: list[str] = []
    positions: list[list[int]] = []
    where: dict[int, object] = {}  # value position -> a number or a variable name
    seen: dict[tuple, str] = {}
    slot = 0
    layers = []
    for local, kind, others, numbers, inputs in group[0].signature:
        fields = {k: _thawed(v) for k, v in others}
        for key in numbers:
            column = columns[slot]
            if len(set(column)) == 1:
                where[slot] = column[0]
            elif column in seen:
                where[slot] = seen[column]
                positions[variables.index(seen[column])].append(slot)
            else:
                variable = re.sub(r"\W", "_", f"{local}_{key}")
                while variable in variables:
                    variable += "_"
                seen[column] = variable
                variables.append(variable)
                positions.append([slot])
                where[slot] = variable
            fields[key] = where[slot]
            slot += 1
        defaults = _defaults(kind)
        order = [f.name for f in dataclasses.fields(LAYERS[kind])]
        fields = {k: fields[k] for k in sorted(fields, key=order.index) if not (k in defaults and fields[k] == defaults[k])}
        layers.append((local, kind, fields, inputs))
    return Block(name, tuple(layers), tuple(variables), tuple(tuple(p) for p in positions))


def _frozen(value):
    """A field's value as a key: lists as tuples (with their type kept apart from numbers by the tag)."""
    if isinstance(value, list):
        return ("list", tuple(_frozen(v) for v in value))
    return (type(value).__name__, value)


def _thawed(key):
    kind, value = key
    return [_thawed(v) for v in value] if kind == "list" else value


def _repeats(top: list) -> list:
    """Consecutive uses P.K, P.K+1... of one block, each reading the one before, whose values agree from the
    second on: one use with `repeat` (a value of the first that differs: "A if index == K else B")."""
    names = [item.name for item in top]
    out: list = []
    i = 0
    while i < len(top):
        item = top[i]
        run = [item]
        parent, _, number = item.name.rpartition(".") if isinstance(item, Use) else ("", "", "")
        if isinstance(item, Use) and parent and number.isdigit():
            j = i + 1
            while (j < len(top) and isinstance(top[j], Use) and top[j].block == item.block
                   and (len(run) == 1 or top[j].values == run[1].values) and top[j].source == run[-1].output
                   and top[j].name == f"{parent}.{int(number) + len(run)}"):
                run.append(top[j])
                j += 1
            others = [n for k, n in enumerate(names) if not i <= k < i + len(run)
                      and (n == parent or n.startswith(parent + "."))]
            if len(run) > 1 and not others:
                start = int(number)
                values = {v: run[0].values[v] if run[0].values[v] == run[1].values[v]
                          else f"{run[0].values[v]} if index == {start} else {run[1].values[v]}" for v in item.values}
                out.append(Use(parent, item.block, item.source, run[-1].output, values, len(run), start))
                i += len(run)
                continue
        out.append(item)
        i += 1
    return out
