"""The values of tensors a model computes from sizes only (masks, positions), read from torch.export's graph.

A causal mask built in Python (transformers' create_causal_mask), the positions an embedding looks up
(arange(T), a buffer's first T entries): no layer computes them, but what reads them depends on their values.
They are evaluated on the CPU at the sample's sizes, node by node, each once; a value that needs a tensor on
the meta device (a Hugging Face model built from its config holds its buffers there) cannot be read: None.
"""

from __future__ import annotations

from ..build import require


class Unreadable(Exception):
    """A value that cannot be computed here (it reads a tensor without values, or an operation failed)."""


class Constants:
    def __init__(self, program, sample, held: dict[str, str]):
        self.program, self.sample, self.held = program, sample, held
        self.env: dict = {}

    def value(self, node):
        """The value of a node (a tensor made from sizes, buffers and constants), or None where it cannot be read."""
        try:
            return self._value(node)
        except Unreadable:
            return None

    def _value(self, node):
        torch = require()
        if node in self.env:
            return self.env[node]
        if node.op == "placeholder":
            out = self._placeholder(node)
        elif node.op == "call_function":
            args = torch.utils._pytree.tree_map(self._argument, node.args)
            kwargs = torch.utils._pytree.tree_map(self._argument, dict(node.kwargs))
            try:
                with torch.no_grad():
                    out = node.target(*args, **kwargs)
            except Exception as error:  # the model's own arithmetic on sizes: whatever it raises, the value is unknown
                raise Unreadable(str(error)) from None
        else:
            raise Unreadable(node.op)
        if isinstance(out, torch.Tensor) and out.is_meta:
            raise Unreadable("a tensor on the meta device")
        self.env[node] = out
        return out

    def _argument(self, arg):
        torch = require()
        if isinstance(arg, torch.fx.Node):
            return self._value(arg)
        if isinstance(arg, torch.device) and arg.type == "meta":
            return torch.device("cpu")
        return arg

    def _placeholder(self, node):
        name = self.held.get(node.name)
        if name is None:
            return self.sample.to("cpu") if not self.sample.is_meta else _zeros(self.sample)
        found = self.program.state_dict.get(name)
        if found is None:
            found = self.program.constants.get(name)
        if found is None or found.is_meta:
            raise Unreadable(f"{name} has no values here")
        return found


def _zeros(sample):
    torch = require()
    return torch.zeros(sample.shape, dtype=sample.dtype)
