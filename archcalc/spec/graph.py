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
from .read import INPUT, MAX_REPEAT, Block, LayerSpec, Spec


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
    nodes: list[Node] = []
    uses: list[Use] = []
    blocks = dict(spec.blocks)
    declared = [layer.name for layer in spec.layers]
    _expand(spec.layers, {INPUT: INPUT}, INPUT, "", env, env, blocks, nodes, uses, spec.path, "", declared)
    return nodes, uses


def _expand(layers, scope: dict[str, str], current: str, prefix: str, env, outer, blocks, nodes, uses,
            path, context: str, declared: list[str]) -> str:
    """Expand `layers` (a spec's or a block's); `scope` maps the names usable so far to tensors; returns the output."""
    for position, layer in enumerate(layers):
        where = f"{context}{layer.where}" + (f' at "{prefix}{layer.name}"' if context else "")
        place = {"where": where, "path": path, "line": layer.line}
        inputs = _resolve(layer, scope, current, declared, position, place) if layer.inputs else (current,)
        if layer.when is not None and not _present(layer, env, place):
            scope[layer.name] = current = inputs[0]  # an absent layer passes its (first) input on
            continue
        if layer.block is None:
            full = prefix + layer.name
            if len(nodes) == untrusted.MAX_ROWS:  # blocks repeated inside blocks multiply: stop before it explodes
                raise SpecError(f"the blocks expand to more than {untrusted.MAX_ROWS:,} layers", None, **place)
            nodes.append(Node(layer, full, inputs, env, where))
            scope[layer.name] = current = full
            continue
        current = _use(layer, blocks[layer.block], inputs[0] if len(inputs) == 1 else _one(inputs, place),
                       scope, prefix, env, outer, blocks, nodes, uses, path, f"{context}{layer.where}", place)
    return current


def _use(layer: LayerSpec, block: Block, x: str, scope, prefix, env, outer, blocks, nodes, uses, path, where, place) -> str:
    repeat = None if layer.repeat is None else _count(layer.repeat, env, 1, MAX_REPEAT, "repeat", place)
    start = _count(layer.start, env, 0, None, "start", place)
    first = len(nodes)
    indices = [None] if repeat is None else range(start, start + repeat)
    checkpointed = False
    for index in indices:
        local = env | {"index": 0 if index is None else index}
        checkpoint = _truth(layer.checkpoint, local, "checkpoint", place)
        checkpointed |= checkpoint
        values = {}
        for name, stored in layer.fields:
            try:
                values[name] = bind_number(stored, local)
            except SpecError as error:
                raise error.at(field=name, **place) from None
        inner_env = outer | values | {"index": local["index"]}
        relative = layer.name if index is None else f"{layer.name}.{index}"
        inner_scope = {INPUT: x}
        begin = len(nodes)
        x = _expand(block.layers, inner_scope, x, prefix + relative + ".", inner_env, outer, blocks, nodes, uses, path,
                    f"{where} > ", [item.name for item in block.layers])
        for name, tensor in inner_scope.items():
            if name != INPUT:
                scope[f"{relative}.{name}"] = tensor
        scope[relative] = x
        uses.append(Use(prefix + relative, block.name, begin, len(nodes), checkpoint))
    if repeat is not None:
        uses.append(Use(prefix + layer.name, block.name, first, len(nodes), checkpointed, repeat))
    scope[layer.name] = x
    return x


def _one(inputs, place) -> str:
    raise SpecError(f"a block use reads one tensor, got {len(inputs)}", "add the tensors first with a merge layer", "from",
                    **place)


def _resolve(layer: LayerSpec, scope: dict[str, str], current: str, declared: list[str], position: int, place) -> tuple[str, ...]:
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
