"""T5's relative position bias (transformers' T5Attention.compute_bias): a learned bias per head and per bucket of
relative position, [heads, T, T] for the whole batch, which every attention layer with position_bias = true adds to
its scores (T5 computes it in the first layer and hands it to the others).

Bucket of j − i (the key's position less the query's): bidirectional, half the buckets for keys after the query;
of the rest, half exact (distances below num_buckets/4, or /2 one-directional), the others log-spaced up to
max_distance. A lookup: no FLOPs; autograd keeps the bucket ids (int64, [T, T], once for the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import flag, size
from ..core.num import Dim, Shape
from .base import Kept, Layer, register


@register
@dataclass(frozen=True, kw_only=True)
class RelativeBias(Layer):
    kind = "relative_bias"
    colour = "#d5a6bd"
    draws_input = False  # it reads its input for T only
    one_for_the_batch = True  # [1, heads, T, T]: broadcast over the batch by the scores it is added to
    num_heads: Dim = size()
    num_buckets: Dim = size(32)
    max_distance: Dim = size(128)
    bidirectional: bool = flag(True)  # an encoder's; a decoder's sees only earlier keys

    def output(self, x: Shape) -> Shape:
        if len(x) != 2:
            raise SpecError(f"relative_bias reads tokens [T, d] (for T), got {fmt.shape(x)}")
        return (self.num_heads, x[0], x[0])

    def weights(self, x: Shape) -> Dim:
        return num.normal(self.num_buckets * self.num_heads)

    def weight_shape(self, x: Shape) -> Shape:
        return (self.num_buckets, self.num_heads)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept("own", num.normal(x[0] * x[0]), "int64", per_sample=False, what="bucket ids (int64, once for the batch)"),)

    def summary(self, x: Shape) -> str:
        return f"{fmt.group(self.num_buckets)} buckets × {fmt.group(self.num_heads)} heads" + ("" if self.bidirectional else ", causal")

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"a bias per head and pair of positions: [heads, T, T] = {fmt.shape(self.output(x))}, one for the batch"),
                ("weights", f"weights = num_buckets·num_heads = {fmt.term(self.num_buckets)}·{fmt.term(self.num_heads)} = "
                            f"{fmt.group(self.weights(x))}"),
                ("macs", "MACs = 0: a lookup")]

    def to_torch(self, x: Shape, nn):
        return nn.RelativeBias(int(self.num_buckets), int(self.num_heads), int(self.max_distance), self.bidirectional)
