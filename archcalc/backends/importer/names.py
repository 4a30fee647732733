"""Spec names from torch's module paths, and the [names] table where a path is not a spec name.

A layer is named by its module's path (`layer1.0.conv1`), so `build` of the spec has the module's
state_dict keys. A path segment that is not a spec name (an nn.Sequential's `0` at the top,
regnet's `block1-0`) is escaped (`layer0`, `block1_0`) and the spec's [names] table maps the
escaped path back (`"trunk_output.block1.block1_0" = "trunk_output.block1.block1-0"`): build names
its modules by torch's paths again, so the original state_dict loads with strict=True.
"""

from __future__ import annotations

import dataclasses
import re

from ...core.errors import SpecError
from ...spec.read import _check_name
from ..build import torch_path  # noqa: F401 (the inverse of escape, where build uses it)
from .mapping import Layer

BASES = {"add": "add", "mul": "mul", "concat": "cat"}  # iadd, torch.add, x.add, aten.add_: all `add`


def free(base: str, taken) -> str:
    """`base`, or `base_1`, `base_2`... the first that `taken(name)` says is free."""
    found, n = base, 0
    while taken(found):
        n += 1
        found = f"{base}_{n}"
    return found


def usable(name: str) -> bool:
    try:
        _check_name(name, "", dotted=True)
    except SpecError:
        return False
    return True


def _escaped(segment: str, first: bool) -> str:
    if first and segment[:1].isdigit():
        return f"layer{segment}"  # a name starts with a letter: an nn.Sequential's 0, 1... become layer0, layer1...
    out = re.sub(r"\W", "_", segment)
    if not out or out.startswith("__"):
        out = "m" + out
    while not usable(out) if first else not usable(f"m.{out}"):
        out += "_"
    return out


def escape(layers: list[Layer]) -> tuple[list[Layer], dict[str, str]]:
    """The layers with every name usable in a spec, and the [names] table: escaped path -> torch's path."""
    spec_of: dict[str, str] = {"": ""}
    taken: set[str] = set()  # the spec paths given so far, every prefix
    names: dict[str, str] = {}
    for layer in layers:
        for prefix in _prefixes(layer.name):
            taken.add(prefix)

    def spec_path(path: str) -> str:
        if path in spec_of:
            return spec_of[path]
        parent, _, segment = path.rpartition(".")
        head = spec_path(parent)
        candidate = f"{head}.{segment}" if head else segment
        if not usable(candidate):
            escaped = _escaped(segment, not head)
            candidate = f"{head}.{escaped}" if head else escaped
            while candidate in taken:
                candidate += "_"
            taken.add(candidate)
            names[candidate] = path
        spec_of[path] = candidate
        return candidate

    renamed = [dataclasses.replace(layer, name=spec_path(layer.name),
                                   inputs=tuple(n if n == "input" else spec_path(n) for n in layer.inputs)) for layer in layers]
    return renamed, names


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
