"""The spec text of imported layers: [model], [names], the blocks, then a [[layers]] table per layer or block use."""

from __future__ import annotations

import json
from fractions import Fraction

from ...core import num
from .blocks import Use


def to_toml(name: str, input_shape: list, layers: list, blocks: dict | None = None, names: dict | None = None,
            outputs: list[str] | None = None) -> str:
    """The spec text (`from` only where a layer reads another than the one before; `outputs` where forward returns several)."""
    lines = ["[model]", f"name = {_toml(name)}", f"input = {_toml(input_shape)}"]
    lines += [f"outputs = {_toml(outputs)}"] if outputs else []
    lines.append("")
    if names:
        lines.append("[names]  # torch's module paths that are not spec names: build names its modules so")
        lines += [f"{_toml(key)} = {_toml(value)}" for key, value in names.items()]
        lines.append("")
    for block in (blocks or {}).values():
        lines.append(f"[blocks.{block.name}]  # variables: {', '.join(block.variables) or 'none'}")
        previous = "input"
        for local, kind, fields, inputs in block.layers:
            lines += _table(f"blocks.{block.name}.layers", local, kind, inputs, previous, fields)
            previous = local
    previous = "input"
    for layer in layers:
        if isinstance(layer, Use):
            lines += _table("layers", layer.name, "block", (layer.source,), previous, {"block": layer.block})[:-1]
            if layer.repeat is not None:
                lines.append(f"repeat = {layer.repeat}")
                lines += [f"start = {layer.start}"] if layer.start else []
            lines += [f"{key} = {_toml(value)}" for key, value in layer.values.items()]
            lines.append("")
            previous = layer.output
            continue
        lines += _table("layers", layer.name, layer.kind, layer.inputs, previous, layer.fields)
        previous = layer.name
    return "\n".join(lines)


def _table(array: str, name: str, kind: str, inputs: tuple, previous: str, fields: dict) -> list[str]:
    lines = [f"[[{array}]]", f"name = {_toml(name)}", f"type = {_toml(kind)}"]
    if tuple(inputs) != (previous,):
        lines.append(f"from = {_toml(inputs[0] if len(inputs) == 1 else list(inputs))}")
    return [*lines, *(f"{key} = {_toml(value)}" for key, value in fields.items()), ""]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Fraction):
        return json.dumps(f"{value.numerator} / {value.denominator}")
    if type(value).__module__.startswith("sympy"):  # a size in the input's names (a view sized from x.shape)
        return json.dumps(formula(value))
    raise TypeError(f"cannot write {value!r} in a spec")


def formula(value) -> str:
    """A sympy size as a spec expression (archcalc/core/expr.py's functions: floor, ceil, min, max)."""
    text = num.text(value)
    for sympy_name, spec_name in (("Min(", "min("), ("Max(", "max("), ("ceiling(", "ceil(")):
        text = text.replace(sympy_name, spec_name)
    return text
