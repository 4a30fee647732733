"""torch.export's symbolic sizes as spec values: the sample's axes are symbols (s0, s53...), the spec's are names.

torch.export makes every dynamic axis of the input a symbol of its own and carries each size it computes as
a formula in them (`s53*s0 + 1`, `FloorDiv(s53, 2)`): a view sized from x.shape, a class token concatenated to
H·W/256 patches. Each input symbol is the spec's name for that axis (H, W, T), the batch's is none (a sample's
sizes never hold it), and the formula is rewritten in the spec's own arithmetic (archcalc/core/num.py): a size
the spec can write. What it cannot rewrite (an operation no spec expression has) is None: the call is listed.
"""

from __future__ import annotations

from ...core import num
from ..build import require


class Sizes:
    """The spec value of a torch.export size (an int, a SymInt, or its sympy formula)."""

    def __init__(self, sample_shape, input_shape: list):
        torch = require()
        self.names: dict = {}  # torch's symbol -> the spec's name (the batch's: None)
        for i, size in enumerate(sample_shape):
            if isinstance(size, torch.SymInt) and getattr(size.node.expr, "is_Symbol", False):
                name = None if i == 0 else input_shape[i - 1] if isinstance(input_shape[i - 1], str) else None
                self.names.setdefault(size.node.expr, name)

    def value(self, size):
        """The spec value of a size, or None where it holds the batch or what a spec cannot write."""
        torch = require()
        if isinstance(size, bool):
            return None
        if isinstance(size, int):
            return size
        if isinstance(size, torch.SymInt):
            expr = size.node.expr
            if getattr(expr, "is_Integer", False):
                return int(expr)
            try:
                return num.normal(self._rewrite(expr))
            except _Unwritable:
                return None
        return None

    def shape(self, value) -> tuple | None:
        """One sample's shape (the batch axis dropped) of a tensor's value, or None where a size cannot be written."""
        torch = require()
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            return None
        out = tuple(self.value(d) for d in value.shape[1:])
        return None if any(d is None for d in out) else out

    def _rewrite(self, expr):
        from torch.utils._sympy.functions import CeilDiv, FloorDiv

        if expr.is_Integer:
            return int(expr)
        if expr.is_Symbol:
            name = self.names.get(expr)
            if name is None:
                raise _Unwritable
            return num.symbol(name)
        args = [self._rewrite(a) for a in expr.args]
        if expr.is_Add:
            return num.add(args)
        if expr.is_Mul:
            return num.mul(args)
        if expr.is_Pow and isinstance(args[1], int) and args[1] > 0:
            return args[0] ** args[1]
        if isinstance(expr, FloorDiv):
            return num.floordiv(*args)
        if isinstance(expr, CeilDiv):
            return num.ceildiv(*args)
        raise _Unwritable


class _Unwritable(Exception):
    pass
