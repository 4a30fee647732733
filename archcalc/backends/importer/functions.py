"""Functional calls as layers, for both captures: torch.fx's `F.relu`, `torch.flatten`, `x + y`, and torch.export's
ATen operations (`aten.relu_`, `aten.flatten.using_ints`, `aten.add.Tensor`), whose arguments come in the same order.

The layer kinds say which calls they are (`torch_functions`) and read their arguments (`torch_call`); here a
node's arguments are given to them as they read them. A node is a torch.fx node of either graph:
torch.export's carry each value in `meta["val"]` (a tensor, or a size for the shape arithmetic), torch.fx's do not.
"""

from __future__ import annotations

from ...layers import LAYERS
from ...layers.base import Inexpressible, TorchSize, TorchTensor
from ..build import require
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


# Calls whose result is their input's values as they are (a copy, a contiguous layout): no layer.
NO_OPS = ("contiguous", "clone", "alias", "detach", "lift_fresh_copy")


def known(name: str) -> bool:
    """Whether a function, tensor method or ATen operation of this name is a layer kind's (or no layer at all)."""
    return name in NO_OPS or any(name in cls.torch_functions for cls in LAYERS.values())


def layer(node, name: str, display: str, sizes=None) -> tuple[str, dict] | None:
    """The (kind, fields) of a call by the kinds that list its name (`torch_functions`, tried in the order they are
    registered), or None where it gives its input itself; Unmapped (`display` and why) where none expresses it.
    `sizes` (sizes.Sizes, torch.export's): each tensor's shape and each size as spec values."""
    if name in NO_OPS:
        return None
    args, kwargs = arguments(node, sizes)
    why = None
    for cls in LAYERS.values():
        if name not in cls.torch_functions:
            continue
        try:
            fields = cls.torch_call(name, args, kwargs)
        except Inexpressible as error:
            why = error
            continue
        return None if fields is None else (cls.kind, fields)
    raise Unmapped(f"{display} {why}" if why is not None else f"{display}: archcalc has no layer for it")


def arguments(node, sizes=None) -> tuple[tuple, dict]:
    """A node's arguments as a layer kind reads them: each tensor a TorchTensor (its rank and shape where torch.export
    gives them), each size read from a tensor a TorchSize (the batch size, where torch.export tells; torch.fx's
    x.size(0) at the batch's place is taken as it; its value where torch.export gives it), everything else as written."""
    torch = require()

    def convert(arg):
        if isinstance(arg, (list, tuple)):
            return [convert(a) for a in arg]
        if not hasattr(arg, "op"):
            return arg
        value = arg.meta.get("val")
        if is_shape(arg):
            return TorchSize(batch=arg.meta.get("archcalc_batch", True),
                             value=None if sizes is None or value is None else sizes.value(value))
        if not isinstance(value, torch.Tensor):
            return TorchTensor()
        if arg.meta.get("archcalc_held"):  # a parameter or buffer: its whole shape
            return TorchTensor(value.dim(), tuple(int(d) for d in value.shape), held=True)
        return TorchTensor(value.dim(), None if sizes is None else sizes.shape(value))

    return tuple(convert(a) for a in node.args), {k: convert(v) for k, v in node.kwargs.items()}
