"""Adaptive pooling (torch.nn.AdaptiveAvgPool*d, AdaptiveMaxPool*d): a fixed output size; 1 is global pooling.

Output cell i of an axis of n pools the window [⌊i·n/o⌋, ⌈(i+1)·n/o⌉), PyTorch's rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.fields import axes, choice
from ..core.num import Dim, Shape
from .base import Inexpressible, Kept, Layer, axes_text, ints, per_axis, register, spatial, torch_argument
from .pool import _plain, pooling_keeps
from .receptive_field import Field
from .window import AXIS_NAMES


def window(i: int, n: int, o: int) -> tuple[int, int]:
    """The input range [start, end) that output cell i of o pools, over an axis of n (PyTorch's rule)."""
    return i * n // o, -(-(i + 1) * n // o)


@register
@dataclass(frozen=True, kw_only=True)
class AdaptivePool(Layer):
    kind = "adaptive_pool"
    colour = "#e8796b"
    torch_modules = tuple(f"Adaptive{op}Pool{n}d" for op in ("Max", "Avg") for n in (1, 2, 3))
    torch_functions = tuple(f"adaptive_{op}_pool{n}d" for op in ("max", "avg") for n in (1, 2, 3))
    op: str = choice("avg", "max", default="avg")
    output_size: Dim | tuple = axes(1)

    def output(self, x: Shape) -> Shape:
        return (x[0], *self.sizes(x))

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        if self.op == "avg" and all(num.is_concrete(o) and o == 1 for o in self.sizes(x)):
            return ()  # global average pooling is a mean, whose backward needs only the input's shape (measured)
        return pooling_keeps(self.op, x, y)

    def sizes(self, x: Shape) -> tuple:
        return per_axis(self.output_size, spatial(x, self.kind), "output_size")

    def summary(self, x: Shape) -> str:
        return f"{self.op} → {axes_text(self.sizes(x))}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = []
        for name, n, o in zip(AXIS_NAMES[len(x) - 1], x[1:], self.sizes(x)):
            text = f"{name}: output {fmt.group(o)} whatever the input; cell i pools [⌊i·{fmt.term(n)}/{fmt.term(o)}⌋, ⌈(i+1)·{fmt.term(n)}/{fmt.term(o)}⌉)"
            if num.is_concrete(n) and num.is_concrete(o):
                spans = sorted({end - start for start, end in (window(i, n, o) for i in range(min(o, 64)))})
                text += ": the whole axis" if o == 1 else f": windows of {' or '.join(map(str, spans))}"
            lines.append((f"output {name}", text))
        return [*lines, ("weights", f"no weights: adaptive pooling only {'picks' if self.op == 'max' else 'averages'}")]

    def receptive(self, x: Shape, field: Field) -> Field | None:
        sizes = self.sizes(x)
        if all(num.is_concrete(o) and o == 1 for o in sizes):
            return field.gathered(x[1:])  # global pooling: every output sees the whole map
        if not all(map(num.is_concrete, (*x[1:], *sizes))):
            return None  # the windows' sizes vary with the input: no formula for the widest
        spans = [max(end - start for start, end in (window(i, n, o) for i in range(o))) for n, o in zip(x[1:], sizes)]
        grown = field.window(spans, [1] * len(spans), [1] * len(spans))
        return Field(grown.size, tuple(num.div(j * n, o) for j, n, o in zip(field.jump, x[1:], sizes)))  # the average stride

    def to_torch(self, x: Shape, nn):
        n = len(x) - 1
        return getattr(nn, f"Adaptive{'Max' if self.op == 'max' else 'Avg'}Pool{n}d")(ints(self.sizes(x)))

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"op": "max"} if torch_name.startswith("AdaptiveMax") else {}

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        size = _plain(torch_argument(args, kwargs, 1, "output_size"))
        if size is None or (isinstance(size, list) and None in size):
            raise Inexpressible("with an axis of output size None (the input's): write the size")
        return {"output_size": size} if name.startswith("adaptive_avg") else {"op": "max", "output_size": size}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"adaptive_{self.op}_pool{len(x) - 1}d",)
