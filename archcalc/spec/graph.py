"""A spec's layers unrolled into the leaf layers of a DAG, in execution order, each with the tensors it reads.

Blocks are expanded use by use (`repeat`, `start`, `index`), `when` decides which layers are
present (an absent one passes its input on, its first for a merge layer), and `from` names are resolved to the full
path of the layer that made the tensor ("input": the model's input). A name may only
refer to what comes before it, so the graph has no cycles by construction.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..core import expr, num, untrusted
from ..core.errors import SpecError
from ..core.fields import Size, bind_number
from ..core.num import Value
from .read import INPUT, MAX_REPEAT, LayerSpec, Spec


@dataclass(frozen=True)
class Node:
    """One leaf layer of the graph: its spec, full path, the full names it reads and its values."""

    spec: LayerSpec
    name: str
    inputs: tuple[str, ...]
    env: dict  # the values its expressions bind with: [vars], given values, its block's variables
    where: str  # for messages: 'layers[3] "layer1" (block) > blocks.basic.layers[1] "conv1" (conv)'


@dataclass(frozen=True)
class Use:
    """A block use: `path` ("layer1.0"; for a repeat, "layer1" too, with `repeat` set), its rows [first, stop)."""

    path: str
    block: str
    first: int  # index into the report's rows of its first layer
    stop: int  # one past its last
    checkpoint: bool = False
    repeat: int | None = None  # the whole of a repeated use: how many


def expand(spec: Spec, env: dict[str, Value]) -> tuple[list[Node], list[Use]]:
    """The leaf layers of `spec` in execution order, and its block uses."""
    expander = Expander(spec, env)
    expander.level(spec.layers, Level({INPUT: INPUT}, "", env, "", [layer.name for layer in spec.layers]), INPUT)
    return expander.nodes, expander.uses


@dataclass(frozen=True)
class Level:
    """One level of the expansion: the spec's own layers, or the layers of one use of a block."""

    scope: dict[str, str]  # the names usable so far -> the tensors they stand for (filled in as layers expand)
    prefix: str  # the path of this level's layers: "" or "layer1.0."
    env: dict  # the values its expressions bind with
    context: str  # for messages: the uses this level is inside, 'layers[3] "layer1" (block) > '
    declared: list[str]  # this level's layer names in order: a name declared later is not unknown, only later


class Expander:
    """Unrolls a spec's layers, use by use, into the leaf nodes and block uses it collects."""

    def __init__(self, spec: Spec, env: dict[str, Value]):
        self.path = spec.path
        self.blocks = dict(spec.blocks)
        self.outer = env  # [vars] and given values: what every block use starts from
        self.nodes: list[Node] = []
        self.uses: list[Use] = []

    def level(self, layers, level: Level, current: str) -> str:
        """Expand `layers` at `level`, whose first reads `current`; returns the tensor the last one makes."""
        for position, layer in enumerate(layers):
            place = self.place(layer, level)
            inputs = _resolve(layer, level, position, place) if layer.inputs else (current,)
            if layer.when is not None and not _present(layer, level.env, place):
                level.scope[layer.name] = current = inputs[0]  # an absent layer passes its (first) input on
            elif layer.block is None:
                current = self.node(layer, inputs, level, place)
            else:
                current = self.use(layer, inputs[0] if len(inputs) == 1 else _one(inputs, place), level, place)
        return current

    def place(self, layer: LayerSpec, level: Level) -> dict:
        """Where `layer` is, for a message: SpecError's where, path and line."""
        where = f"{level.context}{layer.where}" + (f' at "{level.prefix}{layer.name}"' if level.context else "")
        return {"where": where, "path": self.path, "line": layer.line}

    def node(self, layer: LayerSpec, inputs: tuple[str, ...], level: Level, place: dict) -> str:
        """A leaf layer: one node; returns its full name."""
        if len(self.nodes) == untrusted.MAX_ROWS:  # blocks repeated inside blocks multiply: stop before it explodes
            raise SpecError(f"the blocks expand to more than {untrusted.MAX_ROWS:,} layers", None, **place)
        full = level.prefix + layer.name
        self.nodes.append(Node(layer, full, inputs, level.env, place["where"]))
        level.scope[layer.name] = full
        return full

    def use(self, layer: LayerSpec, x: str, level: Level, place: dict) -> str:
        """A block use reading `x`, once or `repeat` times (numbered from `start`); returns its output."""
        repeat = None if layer.repeat is None else _count(layer.repeat, level.env, 1, MAX_REPEAT, "repeat", place)
        start = _count(layer.start, level.env, 0, None, "start", place)
        first, checkpointed = len(self.nodes), False
        for index in [None] if repeat is None else range(start, start + repeat):
            x, checkpoint = self.once(layer, x, index, level, place)
            checkpointed |= checkpoint
        if repeat is not None:
            block = self.blocks[layer.block].name
            self.uses.append(Use(level.prefix + layer.name, block, first, len(self.nodes), checkpointed, repeat))
        level.scope[layer.name] = x
        return x

    def once(self, layer: LayerSpec, x: str, index: int | None, level: Level, place: dict) -> tuple[str, bool]:
        """One use of a block (the `index`-th of a repeat): its layers expanded at a level of their own."""
        block = self.blocks[layer.block]
        local = level.env | {"index": 0 if index is None else index}
        checkpoint = _truth(layer.checkpoint, local, "checkpoint", place)
        values = {}
        for name, stored in layer.fields:
            try:
                values[name] = bind_number(stored, local)
            except SpecError as error:
                raise error.at(field=name, **place) from None
        relative = layer.name if index is None else f"{layer.name}.{index}"
        inner = Level({INPUT: x}, level.prefix + relative + ".", self.outer | values | {"index": local["index"]},
                      f"{level.context}{layer.where} > ", [item.name for item in block.layers])
        begin = len(self.nodes)
        x = self.level(block.layers, inner, x)
        for name, tensor in inner.scope.items():
            if name != INPUT:
                level.scope[f"{relative}.{name}"] = tensor
        level.scope[relative] = x
        self.uses.append(Use(level.prefix + relative, block.name, begin, len(self.nodes), checkpoint))
        return x, checkpoint


def _one(inputs, place) -> str:
    raise SpecError(f"a block use reads one tensor, got {len(inputs)}", "add the tensors first with a merge layer", "from",
                    **place)


def _resolve(layer: LayerSpec, level: Level, position: int, place: dict) -> tuple[str, ...]:
    """The tensors `layer` reads: its `from` names, each of a layer before it at its level."""
    scope, declared = level.scope, level.declared
    out = []
    for name in layer.inputs:
        if name in scope:
            out.append(scope[name])
            continue
        head = name.split(".")
        later = [d for d in declared[position:] if head[: len(d.split("."))] == d.split(".")]
        if later:
            problem = (f"from names {name!r}, this layer itself" if later[0] == layer.name and position < len(declared)
                       and declared[position] == layer.name else f"from names {name!r}, which comes later")
            raise SpecError(problem, "a layer can only read the output of a layer before it (a graph has no cycles)",
                            "from", **place)
        close = difflib.get_close_matches(name, [n for n in scope if n != INPUT], n=1)
        raise SpecError(f"from names {name!r}, which is no layer before this one",
                        (f"did you mean {close[0]!r}? " if close else "") + '"input" is the ' +
                        ("block's input" if place["where"].count(" > ") else "model's input"), "from", **place)
    return tuple(out)


def _present(layer: LayerSpec, env, place) -> bool:
    return _truth(layer.when, env, "when", place)


def _truth(stored, env, field: str, place) -> bool:
    try:
        return expr.truth(bind_number(stored, env), str(stored))
    except SpecError as error:
        raise error.at(field=field, **place) from None


def _count(stored, env, low: int, high: int | None, field: str, place) -> int:
    try:
        value = Size(minimum=low).bind(stored, env)
    except SpecError as error:
        raise error.at(field=field, **place) from None
    if not num.is_concrete(value):
        raise SpecError(f"must be a number, got {value}", f"give {', '.join(sorted(num.free_names(value)))} a value",
                        field, **place)
    if high is not None and value > high:
        raise SpecError(f"must be at most {high}, got {value}", "a network repeats a block a few times, not thousands",
                        field, **place)
    return int(value)
