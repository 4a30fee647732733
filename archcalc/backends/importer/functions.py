"""Functional calls as layers, for both captures: torch.fx's `F.relu`, `torch.flatten`, `x + y`, and torch.export's
ATen operations (`aten.relu_`, `aten.flatten.using_ints`, `aten.add.Tensor`), whose arguments come in the same order.

Each reader turns a node into (kind, fields), or None where the result is its input itself (a no-op view),
or raises Unmapped. A node is a torch.fx node of either graph: torch.export's carry each value in
`meta["val"]` (a tensor, or a size for the shape arithmetic), torch.fx's do not.
"""

from __future__ import annotations

from ...layers import ACTIVATIONS
from ..build import require
from .mapping import activation, plain
from .problems import Unmapped


def tensors(node) -> list:
    """The tensor nodes a node reads, in order (lists such as torch.cat's first argument flattened)."""
    found = []

    def visit(arg) -> None:
        if isinstance(arg, (list, tuple)):
            for item in arg:
                visit(item)
        elif hasattr(arg, "op") and not is_shape(arg):
            found.append(arg)

    for arg in node.args:
        visit(arg)
    return found


def is_shape(node) -> bool:
    """A size, not a tensor: x.size(), x.shape, and arithmetic on sizes only (x.size(-1) // 4, its sqrt)."""
    if "val" in node.meta:  # torch.export's node: its value says (None: an assertion, no value at all)
        return not isinstance(node.meta["val"], (require().Tensor, list, tuple))
    if "archcalc_shape" not in node.meta:
        read = nodes(node.args) + nodes(list(node.kwargs.values()))
        node.meta["archcalc_shape"] = (node.op == "call_method" and node.target in ("size", "dim")) or (
            node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim", "device", "dtype")) or (
            node.op in ("call_function", "call_method") and bool(read) and all(map(is_shape, read)))
    return node.meta["archcalc_shape"]


def nodes(args) -> list:
    out = []
    for arg in args:
        if isinstance(arg, (list, tuple)):
            out += nodes(arg)
        elif hasattr(arg, "op"):
            out.append(arg)
    return out


# Functional calls and tensor methods, by __name__ (F.relu, torch.relu and x.relu() share "relu"):
# each reads its node into (kind, fields), or None where the result is its input itself.
def _activation(name: str):
    """F.relu(x), F.softmax(x, dim=-1), F.leaky_relu(x, 0.2), F.gelu(x, approximate="tanh"): the options as the module's."""
    def read(node):
        options = {option: node.args[1] if option != "approximate" and len(node.args) > 1 else node.kwargs.get(option)
                   for option in ACTIVATIONS[name].options}
        return activation(name, options)
    return read


def _flatten(node):
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start == 0:
        raise Unmapped("flatten from dim 0: archcalc keeps the batch axis (start_dim = 1 or more)")
    fields = {"start_dim": start - 1} if start != 1 else {}
    return "flatten", fields | ({"end_dim": end - 1 if end > 0 else end} if end != -1 else {})


def _permute(node):
    dims = list(node.args[1:])
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if not dims or dims[0] != 0 or not all(isinstance(d, int) for d in dims):
        raise Unmapped(f"permute{tuple(dims)}: archcalc permutes a sample's axes, the batch axis 0 first")
    return "permute", {"dims": [d - 1 if d > 0 else d for d in dims[1:]]}


def _view(node):
    shape = list(node.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = list(shape[0])
    if len(shape) >= 1 and hasattr(shape[0], "op") and shape[0].meta.get("archcalc_batch", True):  # x.view(x.size(0), ...)
        rest = shape[1:]
        if rest == [-1]:
            return "flatten", {}
        if all(isinstance(d, int) for d in rest):
            return "reshape", {"shape": rest}
    raise Unmapped(f"{_called(node)} to sizes other than x.size(0) and numbers: "
                   "archcalc reshapes a sample to a fixed shape, the batch axis kept")


def _called(node) -> str:
    """How a list names a node's operation: `mul` (torch.fx's function or method), `aten.mul` (torch.export's)."""
    packet = getattr(node.target, "overloadpacket", None)
    if packet is not None:
        return f"aten.{packet.__name__}"
    return node.target.__name__ if callable(node.target) else node.target


def _merge(kind: str):
    def read(node):
        if not any(hasattr(a, "op") and not is_shape(a) for a in node.args[1:2]):  # x + 1: a constant, not a merge
            raise Unmapped(f"{_called(node)} with a constant")
        return kind, {}
    return read


def _cat(node):
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if dim == 0:
        raise Unmapped("torch.cat along the batch axis")
    return "concat", {} if dim == 1 else {"dim": dim - 1 if dim > 0 else dim}


def _dropout(node):
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    return "dropout", {"p": p}


def argument(node, i: int, name: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _pool(op: str):
    def read(node):
        fields = {"op": op, "kernel_size": plain(argument(node, 1, "kernel_size"), "kernel_size")}
        for i, name, default in ((2, "stride", None), (3, "padding", 0)):
            value = plain(argument(node, i, name), name)
            if value not in (None, default, []):
                fields[name] = value
        dilation = argument(node, 4, "dilation", 1) if op == "max" else 1
        if plain(dilation, "dilation") != 1:
            fields["dilation"] = plain(dilation, "dilation")
        if argument(node, 5 if op == "max" else 4, "ceil_mode", False):
            fields["ceil_mode"] = True
        if op == "avg" and (argument(node, 5, "count_include_pad", True) is not True
                            or argument(node, 6, "divisor_override") is not None):
            raise Unmapped("avg_pool with count_include_pad or divisor_override: archcalc's average pooling has neither")
        return "pool", fields
    return read


def _adaptive(op: str):
    def read(node):
        size = plain(argument(node, 1, "output_size"), "output_size")
        if size is None or (isinstance(size, list) and None in size):
            raise Unmapped(f"adaptive_{op}_pool with an axis of output size None (the input's): write the size")
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
