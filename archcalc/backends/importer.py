"""A torch module -> a spec (`archcalc import FILE.py:NAME`): trace it with torch.fx, map each node to a layer.

Loading a module runs its file, as any import does: the user's own code. Nothing of the
spec archcalc writes is ever run. Each call_module node becomes the layer kind whose class
lists that torch class in `torch_modules`, its fields read from the module's attributes of
the same names (PyTorch's names are the spec's). Functional calls (`F.relu`, `torch.flatten`,
`x + y`, `torch.cat`) map like their modules (FUNCTIONS). What maps to nothing is an error
that lists every such operation with its source line: never a silent 0.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArchcalcError, SpecError
from ..layers import ACTIVATIONS, LAYERS
from .export import EXPLICIT
from .torch import require


class ImportFailed(ArchcalcError):
    """A module that cannot be written as a spec: each operation archcalc cannot map, with its place."""

    def __init__(self, target: str, problems: list[str]):
        self.target, self.problems = target, problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{target}: cannot import {len(problems)} operation{'s' * (len(problems) > 1)}:\n{listed}")


@dataclass(frozen=True)
class Layer:
    """One layer of the spec being written: its name, kind, fields and the names it reads."""

    name: str
    kind: str
    fields: dict
    inputs: tuple[str, ...]


def load_target(target: str, args: str | None = None):
    """`FILE.py:NAME` or `package.module:NAME` -> an nn.Module (a class is instantiated with `args`, JSON)."""
    torch = require()
    where, _, name = target.rpartition(":")
    if not where or not name.isidentifier():
        raise SpecError(f"cannot read {target!r} as FILE.py:NAME or module:NAME", "for example models.py:AlexNet",
                        where="TARGET")
    try:
        module = _import(where)
        found = getattr(module, name)
    except ArchcalcError:
        raise
    except AttributeError:
        raise SpecError(f"{where} has no {name!r}", where="TARGET") from None
    except Exception as error:  # the user's file: whatever it raises is reported, not a traceback of ours
        raise ArchcalcError(f"{where}: importing it failed: {type(error).__name__}: {error}") from None
    given = _arguments(args)
    if isinstance(found, type):
        try:
            found = found(*given[0], **given[1])
        except Exception as error:
            raise ArchcalcError(f"{target}: building it failed: {type(error).__name__}: {error}\n"
                                "  hint: pass its constructor arguments with --args") from None
    elif args is not None:
        raise SpecError(f"{name} is not a class: --args has nothing to build", where="--args")
    if not isinstance(found, torch.nn.Module):
        raise SpecError(f"{target} is a {type(found).__name__}, not a torch.nn.Module (or a class of one)", where="TARGET")
    return found


def _import(where: str):
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise SpecError("not a regular file (a folder, a pipe or a device)" if path.exists() else "no such file", path=where)
        spec = importlib.util.spec_from_file_location(f"archcalc_import_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # its own imports of files beside it
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    return importlib.import_module(where)


def _arguments(args: str | None) -> tuple[list, dict]:
    if args is None:
        return [], {}
    try:
        value = json.loads(args)
    except json.JSONDecodeError as error:
        raise SpecError(f"not JSON: {error}", 'for example --args \'{"num_classes": 10}\' or \'[10]\'', where="--args") from None
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    return [value], {}


def trace(module):
    """The module as a torch.fx graph (with each node's source line)."""
    torch = require()
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as error:
        raise ArchcalcError(
            f"torch.fx cannot trace {type(module).__name__}: {type(error).__name__}: {str(error).splitlines()[0]}\n"
            "  hint: control flow that depends on tensor values cannot be traced; write that part as a spec by hand"
        ) from None
    return torch.fx.GraphModule(module, graph)


def layers(module) -> list[Layer]:
    """The spec's layers of a module, in execution order, activations folded into the layer before."""
    graph = trace(module)
    modules = dict(graph.named_modules())
    out: list[Layer] = []
    alias: dict[str, str] = {}  # fx node name -> the spec name whose output it is
    problems: list[str] = []
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            alias[node.name] = "input" if not any(a == "input" for a in alias.values()) else node.name
            continue
        if node.op in ("output", "get_attr"):
            continue
        try:
            made = _layer(node, modules, alias)
        except _Skip:
            continue
        except _Unmapped as error:
            problems.append(f"{error} ({_source(node)})")
            alias[node.name] = node.name  # so that what reads it is still checked
            continue
        if made is None:  # a view that changes nothing: the same tensor
            alias[node.name] = alias[_tensors(node)[0].name]
            continue
        alias[node.name] = made.name
        out.append(made)
    if problems:
        raise ImportFailed(type(module).__name__, problems)
    return _fold_activations(out)


class _Unmapped(Exception):
    pass


class _Skip(Exception):
    """A node that is not a tensor (x.size(0), a shape): used by others as an argument, never a layer."""


def _source(node) -> str:
    trace = node.meta.get("stack_trace") or ""
    torch_dir = str(Path(require().__file__).parent)
    places = [(f, n) for f, n in re.findall(r'File "([^"]+)", line (\d+)', trace) if not f.startswith(torch_dir)]
    if places:
        file, line = places[-1]
        return f"{Path(file).name}:{line}"
    return f"node {node.name}"


def _tensors(node) -> list:
    """The tensor nodes a node reads, in order (lists such as torch.cat's first argument flattened)."""
    found = []

    def visit(arg) -> None:
        if isinstance(arg, (list, tuple)):
            for item in arg:
                visit(item)
        elif hasattr(arg, "op") and not _is_shape(arg):
            found.append(arg)

    for arg in node.args:
        visit(arg)
    return found


def _is_shape(node) -> bool:
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim"))


def _layer(node, modules: dict, alias: dict) -> Layer | None:
    if _is_shape(node):
        raise _Skip
    inputs = tuple(alias[n.name] for n in _tensors(node))
    if node.op == "call_module":
        module = modules[node.target]
        kind, fields = _from_module(module, node.target)
        return Layer(node.target, kind, fields, inputs)
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if name == "getattr":
        raise _Unmapped(f".{node.args[1]}: archcalc has no layer for this attribute")
    reader = FUNCTIONS.get(name)
    if reader is None:
        raise _Unmapped(f"{name}(): archcalc has no layer for this {'method' if node.op == 'call_method' else 'function'}")
    made = reader(node)
    if made is None:
        return None
    kind, fields = made
    return Layer(node.name, kind, fields, inputs)


def _from_module(module, path: str) -> tuple[str, dict]:
    """The layer kind and spec fields of a torch module, by the classes' `torch_modules`."""
    torch_name = type(module).__name__
    for kind, cls in LAYERS.items():
        if torch_name not in cls.torch_modules:
            continue
        fields = cls.torch_fields(torch_name)
        for field in dataclasses.fields(cls):
            if field.name in cls.spec_fields() and field.name not in fields and hasattr(module, field.name):
                value = cls.torch_value(field.name, _plain(getattr(module, field.name), field.name))
                if value is not None and (field.name in EXPLICIT or value != _plain(field.default, field.name)):
                    fields[field.name] = value
        return kind, fields
    raise _Unmapped(f"{path}: {torch_name} has no archcalc layer kind")


def _plain(value, field: str):
    """A module attribute as a spec value: tuples of equal sizes as one int, tensors as present, floats exact."""
    torch = require()
    if value is dataclasses.MISSING:
        return None
    if field == "bias" and (value is None or isinstance(value, torch.Tensor)):
        return value is not None
    if isinstance(value, (tuple, list)):
        items = [_plain(v, field) for v in value]
        return items[0] if len(set(map(repr, items))) == 1 else items
    if isinstance(value, float) and value.is_integer() and field != "p":
        return int(value)
    return value


# Functional calls and tensor methods, by __name__ (F.relu, torch.relu and x.relu() share "relu"):
# each reads its node into (kind, fields), or None where the result is its input itself.
def _activation(name: str):
    return lambda node: ("activation", {"function": name})


def _flatten(node):
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start == 0:
        raise _Unmapped("flatten from dim 0: archcalc keeps the batch axis (start_dim = 1 or more)")
    fields = {"start_dim": start - 1} if start != 1 else {}
    return "flatten", fields | ({"end_dim": end - 1 if end > 0 else end} if end != -1 else {})


def _permute(node):
    dims = list(node.args[1:])
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if not dims or dims[0] != 0 or not all(isinstance(d, int) for d in dims):
        raise _Unmapped(f"permute{tuple(dims)}: archcalc permutes a sample's axes, the batch axis 0 first")
    return "permute", {"dims": [d - 1 if d > 0 else d for d in dims[1:]]}


def _view(node):
    shape = list(node.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = list(shape[0])
    if len(shape) >= 1 and hasattr(shape[0], "op"):  # x.view(x.size(0), ...): the batch axis kept
        rest = shape[1:]
        if rest == [-1]:
            return "flatten", {}
        if all(isinstance(d, int) for d in rest):
            return "reshape", {"shape": rest}
    raise _Unmapped(f"{node.target}{tuple(shape)}: write the batch axis as x.size(0) and the rest as numbers")


def _merge(kind: str):
    def read(node):
        if not any(hasattr(a, "op") for a in node.args[1:2]):  # x + 1: a constant, not a merge
            raise _Unmapped(f"{node.target.__name__ if callable(node.target) else node.target} with a constant")
        return kind, {}
    return read


def _cat(node):
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if dim == 0:
        raise _Unmapped("torch.cat along the batch axis")
    return "concat", {} if dim == 1 else {"dim": dim - 1 if dim > 0 else dim}


def _dropout(node):
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    return "dropout", {"p": p}


FUNCTIONS = {
    **{name: _activation(name) for name in ACTIVATIONS},
    "relu_": _activation("relu"),
    "flatten": _flatten,
    "permute": _permute,
    "view": _view,
    "reshape": _view,
    "add": _merge("add"),
    "iadd": _merge("add"),
    "mul": _merge("mul"),
    "imul": _merge("mul"),
    "cat": _cat,
    "concat": _cat,
    "dropout": _dropout,
    "contiguous": lambda node: None,
}


def _fold_activations(layers: list[Layer]) -> list[Layer]:
    """An activation right after a layer that takes an `activation` field, and read by nothing else, joins it."""
    readers: dict[str, int] = {}
    for layer in layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    out: list[Layer] = []
    renamed: dict[str, str] = {}
    for layer in layers:
        layer = dataclasses.replace(layer, inputs=tuple(renamed.get(n, n) for n in layer.inputs))
        before = out[-1] if out else None
        if (layer.kind == "activation" and before is not None and layer.inputs == (before.name,)
                and readers.get(before.name) == 1 and "activation" in LAYERS[before.kind].spec_fields()
                and "activation" not in before.fields and set(layer.fields) == {"function"}):
            out[-1] = dataclasses.replace(before, fields=before.fields | {"activation": layer.fields["function"]})
            renamed[layer.name] = before.name
            continue
        out.append(layer)
    return out


def to_toml(name: str, input_shape: list, layers: list[Layer]) -> str:
    """The spec text: [model], then a [[layers]] table per layer (`from` only where it is not the layer before)."""
    lines = ["[model]", f"name = {_toml(name)}", f"input = {_toml(input_shape)}", ""]
    previous = "input"
    for layer in layers:
        lines += ["[[layers]]", f"name = {_toml(layer.name)}", f"type = {_toml(layer.kind)}"]
        if layer.inputs != (previous,):
            value = layer.inputs[0] if len(layer.inputs) == 1 else list(layer.inputs)
            lines.append(f"from = {_toml(value)}")
        lines += [f"{key} = {_toml(value)}" for key, value in layer.fields.items()]
        lines.append("")
        previous = layer.name
    return "\n".join(lines)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} in a spec")


def parse_input(text: str) -> list:
    """'3,224,224' -> [3, 224, 224]; '3,H,W' -> [3, "H", "W"] (names stay symbols)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"\d{1,9}", part) and int(part) > 0:
            out.append(int(part))
        elif re.fullmatch(r"[A-Za-z_]\w{0,31}", part):
            out.append(part)
        else:
            raise SpecError(f"cannot read {part!r} as a size", "write sizes or names: 3,224,224 or 3,H,W", where="--input")
    if not 1 <= len(out) <= 4:
        raise SpecError("one sample's shape has 1 to 4 sizes (no batch axis)", "for example 3,224,224", where="--input")
    return out


def import_module(module, input_shape: list, name: str | None = None) -> str:
    """The spec text of a torch module, for one sample of `input_shape` (numbers, or names as symbols)."""
    return to_toml(name or type(module).__name__, input_shape, layers(module))
