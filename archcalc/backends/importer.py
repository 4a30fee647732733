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
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ArchcalcError, SpecError
from ..layers import ACTIVATIONS, LAYERS
from .build import require
from .export import EXPLICIT
from .recover import Use, recover


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
    """`FILE.py:NAME` or `package.module:NAME` -> an nn.Module (a class or a function returning one is called with `args`, JSON)."""
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
    if isinstance(found, type) or (callable(found) and not isinstance(found, torch.nn.Module)):  # a class or a factory
        try:
            found = found(*given[0], **given[1])
        except Exception as error:
            raise ArchcalcError(f"{target}: building it failed: {type(error).__name__}: {error}\n"
                                "  hint: pass its constructor arguments with --args") from None
    elif args is not None:
        raise SpecError(f"{name} is a module already: --args has nothing to build", where="--args")
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


def layers(module, input_shape: list | None = None) -> list[Layer]:
    """The spec's layers of a module, in execution order, activations folded into the layer before.

    A module's layer is named by its path (`layer1.0.conv1`), so `build` of the spec has the
    module's state_dict keys. A functional call is named after the module that makes it
    (`x + y` in `layer1.0`: `layer1.0.add`), and so is a module without parameters called more
    than once (torchvision's shared `self.relu`: `layer1.0.relu`, then `layer1.0.relu_1`).
    `input_shape` (one sample's) lets an attention mask be read at that size (names at MASK_PROBE).
    """
    graph = trace(module)
    modules = dict(graph.named_modules())
    nodes = list(graph.graph.nodes)
    calls: dict[str, int] = {}
    for node in nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    reserved, given = set(calls), set()  # module paths first: functional names step around them
    out: list[Layer] = []
    alias: dict[str, str] = {}  # fx node name -> the spec name whose output it is
    problems: list[str] = []
    returned: list = []
    for node in nodes:
        if node.op == "placeholder":  # forward's arguments: the first is the input, others may go unused (mask=None)
            alias[node.name] = SECOND + node.name if alias else "input"
            continue
        if node.op == "output":
            returned = _tensors(node)
            continue
        if node.op == "get_attr" or _mask_only(node, modules):
            alias[node.name] = ATTRIBUTE + str(node.target)
            continue
        try:
            made = _layer(node, modules, alias, calls, (graph, input_shape))
        except _Skip:
            continue
        except _Unmapped as error:
            problems.append(f"{error} ({_source(node)})")
            alias[node.name] = node.name  # so that what reads it is still checked
            continue
        if made is None:  # a view that changes nothing: the same tensor
            alias[node.name] = alias[_tensors(node)[0].name]
            continue
        made = dataclasses.replace(made, name=_name(node, made, reserved, given))
        alias[node.name] = made.name
        out.append(made)
    if not problems:
        problems += _output_problems(returned, alias, out)
    if problems:
        raise ImportFailed(type(module).__name__, problems)
    return _lettered(_fold_activations(out, [alias[n.name] for n in returned]))


def _lettered(layers: list[Layer]) -> list[Layer]:
    """A spec name starts with a letter: an nn.Sequential's children 0, 1... become layer0, layer1...
    (their state_dict keys then differ by that word: `layer0.weight` for `0.weight`)."""
    taken = {layer.name for layer in layers}

    def lettered(name: str) -> str:
        if not name[0].isdigit():
            return name
        head, dot, rest = name.partition(".")
        found = f"layer{head}"
        while any(n == found or n.startswith(found + ".") for n in taken):
            found += "_"
        return found + dot + rest

    return [dataclasses.replace(layer, name=lettered(layer.name),
                                inputs=tuple(n if n == "input" else lettered(n) for n in layer.inputs)) for layer in layers]


def _name(node, made: Layer, reserved: set, given: set) -> str:
    """A module: its path (a suffix from its second call on). A functional call: the path of the
    module that makes it, then the operation (`layer1.0.add`), stepping around module paths."""
    if node.op == "call_module":
        base, free = node.target, lambda name: name not in given
    else:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        owner = stack[-1][0] if stack else ""
        op = BASES.get(made.kind, re.sub(r"_\d+$", "", node.name))
        base = f"{owner}.{op}" if owner else op
        free = lambda name: name not in given and name not in reserved
    found, n = base, 0
    while not free(found):
        n += 1
        found = f"{base}_{n}"
    given.add(found)
    return found


BASES = {"add": "add", "mul": "mul", "concat": "cat"}  # iadd, torch.add, x.add: all `add`


def _output_problems(returned: list, alias: dict, out: list[Layer]) -> list[str]:
    """A spec's output is its last layer's: forward must return that one tensor."""
    if len(returned) != 1:
        return [f"forward returns {len(returned)} tensors: a spec has one output, its last layer's"]
    name = alias[returned[0].name]
    last = out[-1].name if out else "input"
    if name != last:
        return [f"forward returns {name!r}, but the last layer computed is {last!r}: a spec's output is its last layer's"]
    return []


ATTRIBUTE = "\0"  # alias prefix of a tensor the module holds (get_attr): no layer's output
SECOND = "\1"  # alias prefix of forward's arguments after the first


def _operation(node) -> str:
    if node.op == "call_module":
        return node.target
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{name}()"


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
    """A size, not a tensor: x.size(), x.shape, and arithmetic on sizes only (x.size(-1) // 4, its sqrt)."""
    if "archcalc_shape" not in node.meta:
        read = _nodes(node.args) + _nodes(list(node.kwargs.values()))
        node.meta["archcalc_shape"] = (node.op == "call_method" and node.target in ("size", "dim")) or (
            node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim", "device", "dtype")) or (
            node.op in ("call_function", "call_method") and bool(read) and all(map(_is_shape, read)))
    return node.meta["archcalc_shape"]


def _nodes(args) -> list:
    out = []
    for arg in args:
        if isinstance(arg, (list, tuple)):
            out += _nodes(arg)
        elif hasattr(arg, "op"):
            out.append(arg)
    return out


def _layer(node, modules: dict, alias: dict, calls: dict, probe: tuple = (None, None)) -> Layer | None:
    if _is_shape(node):
        raise _Skip
    if node.op == "call_module" and type(modules[node.target]).__name__ in ATTENTION:
        if calls[node.target] > 1:
            raise _Unmapped(f"{node.target}: called {calls[node.target]} times with the same weights "
                            "(a spec's layers each have their own)")
        return Layer(node.target, "attention", _attention(node, modules[node.target], *probe), (alias[node.args[0].name],))
    inputs = tuple(alias[n.name] for n in _tensors(node))
    second = [name[len(SECOND):] for name in inputs if name.startswith(SECOND)]
    if second:
        raise _Unmapped(f"{_operation(node)} reads forward's argument {second[0]!r}: a spec's network reads one input")
    held = [name[len(ATTRIBUTE):] for name in inputs if name.startswith(ATTRIBUTE)]
    if held:
        raise _Unmapped(f"{_operation(node)} reads the module's tensor {held[0]!r} (a parameter or buffer of no layer): "
                        "archcalc has no layer for it")
    if node.op == "call_module":
        module = modules[node.target]
        kind, fields = _from_module(module, node.target)
        if calls[node.target] > 1 and any(True for _ in module.parameters()):
            raise _Unmapped(f"{node.target}: called {calls[node.target]} times with the same weights "
                            "(a spec's layers each have their own)")
        return Layer(node.target, kind, fields, inputs)
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if name == "getitem" and _is_attention(node.args[0], modules):
        if node.args[1] != 0:
            raise _Unmapped(f"{node.args[0].target}'s output [{node.args[1]!r}]: archcalc's attention gives its output [0], "
                            "not the attention weights")
        return None  # (output, weights)[0]: the attention layer's output
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


# --- nn.MultiheadAttention: self-attention (query, key and value one tensor) over [B, T, d] ------------

ATTENTION = ("MultiheadAttention",)
MASK_PROBE = 7  # the sequence length a mask is read at where T is a name


def _is_attention(node, modules: dict) -> bool:
    return hasattr(node, "op") and node.op == "call_module" and type(modules[node.target]).__name__ in ATTENTION


def _attention(node, module, root, input_shape) -> dict:
    """The `attention` fields of an nn.MultiheadAttention call: num_heads, bias, dropout; causal from
    is_causal=True or a causal attn_mask; kernel "math" where need_weights (torch's default) makes it
    compute the weights with matmuls, else torch's fused scaled_dot_product_attention."""
    path = node.target
    query, key, value = (_argument(node, i, n) for i, n in enumerate(("query", "key", "value")))
    if not (query is key is value):
        raise _Unmapped(f"{path}: MultiheadAttention with query, key and value not one tensor (cross-attention): "
                        "archcalc's attention is self-attention")
    if not module.batch_first:
        raise _Unmapped(f"{path}: MultiheadAttention(batch_first=False) reads [T, B, d]: archcalc's attention reads "
                        "[B, T, d] (batch_first=True)")
    if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
        raise _Unmapped(f"{path}: MultiheadAttention with kdim, vdim, add_bias_kv or add_zero_attn: archcalc's attention "
                        "has none of them")
    if _argument(node, 3, "key_padding_mask") is not None:
        raise _Unmapped(f"{path}: MultiheadAttention with a key_padding_mask: archcalc's attention has none")
    fields = {"num_heads": module.num_heads}
    if module.in_proj_bias is None:
        fields["bias"] = False
    if module.dropout:
        fields["dropout"] = _plain(module.dropout, "p")
    mask, is_causal = _argument(node, 5, "attn_mask"), _argument(node, 7, "is_causal", False)
    if mask is not None:
        _causal_mask(path, mask, root, input_shape)
    if mask is not None or is_causal:
        fields["causal"] = True
    if _argument(node, 4, "need_weights", True):
        fields["kernel"] = "math"
    elif "causal" not in fields:
        fields["module"] = "multihead"  # its own copies (the memory timeline)
    return fields


def _constant(node) -> bool:
    """A tensor made from the module's buffers and the input's sizes only (never its values)."""
    if node.op == "get_attr" or _is_shape(node):
        return True
    return node.op in ("call_function", "call_method") and all(
        map(_constant, _nodes(node.args) + _nodes(list(node.kwargs.values()))))


def _mask_only(node, modules: dict) -> bool:
    """A constant tensor read only as attention masks (directly or through other such tensors): no layer."""
    return (node.op in ("call_function", "call_method") and not _is_shape(node) and _constant(node) and bool(node.users)
            and all(_is_attention(user, modules) or _mask_only(user, modules) for user in node.users))


def _causal_mask(path: str, mask, root, input_shape) -> None:
    """An attn_mask must be causal at the input's T: True (bool) or -inf (float) exactly above the diagonal, else False or 0."""
    torch = require()
    if not hasattr(mask, "op") or not _constant(mask) or root is None or input_shape is None:
        raise _Unmapped(f"{path}: an attn_mask archcalc cannot read (it reads only a causal mask built from T or held as a buffer)")
    sizes = [size if isinstance(size, int) else MASK_PROBE for size in input_shape]
    t = sizes[0] if len(sizes) == 2 else None
    try:
        value = _evaluate(mask, root, torch.zeros(1, *sizes))
    except Exception as error:
        raise _Unmapped(f"{path}: reading its attn_mask failed: {type(error).__name__}: {error}") from None
    if t is None or tuple(value.shape) != (t, t):
        raise _Unmapped(f"{path}: attn_mask of shape {list(value.shape)} for T = {t}: archcalc's causal attention "
                        "masks [T, T] (a fixed-size buffer needs T given as its size)")
    above = torch.ones(t, t, dtype=torch.bool).triu(1)
    causal = bool((value == above).all()) if value.dtype == torch.bool else bool(
        (value[above] == float("-inf")).all() and (value[~above] == 0).all())
    if not causal:
        raise _Unmapped(f"{path}: attn_mask is not the causal mask (-inf or True exactly above the diagonal): "
                        "archcalc's attention masks causally or not at all")


def _evaluate(node, root, sample):
    """The value of a node when the traced module runs on `sample`, without autograd: the nodes up to it
    run once (per graph and sample shape), so a mask is read before the attention that takes it runs."""
    torch = require()
    state = root.meta.get("archcalc_values")
    if state is None or state[0] != tuple(sample.shape):
        runner = torch.fx.Interpreter(root)
        runner.env, runner.args_iter = {}, iter([sample])
        root.meta["archcalc_values"] = state = (tuple(sample.shape), runner)
    runner = state[1]
    with torch.no_grad():
        for step in root.graph.nodes:
            if node in runner.env:
                break
            if step not in runner.env:
                runner.env[step] = runner.run_node(step)
    return runner.env[node]


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
                if field.default is None and value == _torch_default(module, field.name):
                    continue  # None in the spec is torch's default (nn.GELU's approximate="none")
                if value is not None and (field.name in EXPLICIT or value != _plain(field.default, field.name)):
                    fields[field.name] = value
        _unexpressed(module, cls, path)
        return kind, fields
    raise _Unmapped(f"{path}: {torch_name} has no archcalc layer kind")


# Constructor options no number of archcalc's depends on: placement, in-place, the normalisations'
# eps and momentum (build uses torch's defaults for them). Any other option set away from its
# default, and not a field of the layer kind, is listed: the spec would be another network.
NUMBERLESS = {"device", "dtype", "inplace", "eps", "momentum"}


def _unexpressed(module, cls, path: str) -> None:
    torch = require()
    fields = cls.spec_fields()
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name in fields or name in NUMBERLESS or parameter.default is parameter.empty or not hasattr(module, name):
            continue
        value = getattr(module, name)
        if value is None or isinstance(value, torch.Tensor):
            continue  # a parameter (bias), not an option
        if _plain(value, name) != _plain(parameter.default, name):
            raise _Unmapped(f"{path}: {type(module).__name__}({name}={value!r}): archcalc's {cls.kind} has no {name}")


def _torch_default(module, name: str):
    parameter = inspect.signature(type(module).__init__).parameters.get(name)
    return None if parameter is None or parameter.default is parameter.empty else _plain(parameter.default, name)


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
    """F.relu(x), F.softmax(x, dim=-1), F.leaky_relu(x, 0.2), F.gelu(x, approximate="tanh"): the options as the module's."""
    def read(node):
        from ..layers.elementwise import Activation

        fields = {"function": name}
        for option in ACTIVATIONS[name].options:
            value = node.args[1] if option != "approximate" and len(node.args) > 1 else node.kwargs.get(option)
            value = Activation.torch_value(option, _plain(value, option))
            if value is not None and value != TORCH_DEFAULTS.get(option):
                fields[option] = value
        return "activation", fields
    return read


TORCH_DEFAULTS = {"negative_slope": 0.01, "alpha": 1, "approximate": "none"}


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
        if not any(hasattr(a, "op") and not _is_shape(a) for a in node.args[1:2]):  # x + 1: a constant, not a merge
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


def _argument(node, i: int, name: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _pool(op: str):
    def read(node):
        fields = {"op": op, "kernel_size": _plain(_argument(node, 1, "kernel_size"), "kernel_size")}
        for i, name, default in ((2, "stride", None), (3, "padding", 0)):
            value = _plain(_argument(node, i, name), name)
            if value not in (None, default, []):
                fields[name] = value
        dilation = _argument(node, 4, "dilation", 1) if op == "max" else 1
        if _plain(dilation, "dilation") != 1:
            fields["dilation"] = _plain(dilation, "dilation")
        if _argument(node, 5 if op == "max" else 4, "ceil_mode", False):
            fields["ceil_mode"] = True
        if op == "avg" and (_argument(node, 5, "count_include_pad", True) is not True
                            or _argument(node, 6, "divisor_override") is not None):
            raise _Unmapped("avg_pool with count_include_pad or divisor_override: archcalc's average pooling has neither")
        return "pool", fields
    return read


def _adaptive(op: str):
    def read(node):
        size = _plain(_argument(node, 1, "output_size"), "output_size")
        if size is None or (isinstance(size, list) and None in size):
            raise _Unmapped(f"adaptive_{op}_pool with an axis of output size None (the input's): write the size")
        return "adaptive_pool", {"output_size": size} if op == "avg" else {"op": op, "output_size": size}
    return read


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
    **{f"{op}_pool{n}d": _pool(op) for op in ("max", "avg") for n in (1, 2, 3)},
    **{f"adaptive_{op}_pool{n}d": _adaptive(op) for op in ("max", "avg") for n in (1, 2, 3)},
}


def _fold_activations(layers: list[Layer], returned: list[str] = ()) -> list[Layer]:
    """An activation right after a layer that takes an `activation` field, and read by nothing else, joins it."""
    readers: dict[str, int] = dict.fromkeys(returned, 1)
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


def to_toml(name: str, input_shape: list, layers: list, blocks: dict | None = None) -> str:
    """The spec text: [model], the blocks, then a [[layers]] table per layer or block use
    (`from` only where it is not the layer before)."""
    lines = ["[model]", f"name = {_toml(name)}", f"input = {_toml(input_shape)}", ""]
    for block in (blocks or {}).values():
        lines.append(f"[blocks.{block.name}]  # variables: {', '.join(block.variables) or 'none'}")
        previous = "input"
        for local, kind, fields, inputs in block.layers:
            lines += _table(f"blocks.{block.name}.layers", local, kind, inputs, previous, fields)
            previous = local
    previous = "input"
    for layer in layers:
        if isinstance(layer, Use):
            lines += [*_table("layers", layer.name, "block", (layer.source,), previous, {"block": layer.block}),
                      ][:-1]
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


def import_module(module, input_shape: list, name: str | None = None, blocks: bool = True) -> str:
    """The spec text of a torch module, for one sample of `input_shape` (numbers, or names as symbols).

    With `blocks`, repeated submodules become blocks (recover.py) where the spec so written
    has the very rows of the flat one (names, wiring, shapes, counts); else the layers stay flat.
    """
    name = name or type(module).__name__
    flat = layers(module, input_shape)
    text = to_toml(name, input_shape, flat)
    if not blocks:
        return text
    top, found = recover(flat, [flat[-1].name], {path: type(m).__name__ for path, m in module.named_modules()})
    if not found:
        return text
    folded = to_toml(name, input_shape, top, found)
    return folded if _same_rows(folded, text) else text


def _same_rows(text: str, flat: str) -> bool:
    """Whether two spec texts give the same rows: names, kinds, wiring, shapes, counts."""
    from ..report import analyze
    from ..spec.read import loads

    def rows(spec_text: str):
        report = analyze(loads(spec_text))
        return [(r.name, r.layer.kind, r.inputs, r.input, r.output, r.weights, r.biases, r.macs,
                 getattr(r.layer, "activation", None)) for r in report.rows], report.totals

    try:
        return rows(text) == rows(flat)
    except ArchcalcError:
        return False
