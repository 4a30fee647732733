"""Layers of sequence models: embedding (torch.nn.Embedding), parameter (a learned tensor), select (one token).

A model whose first layer is an embedding reads token ids: `input = ["T"]` is one sample
of T ids (int64), and the embedding turns it into [T, embedding_dim]. A `parameter` is a
learned tensor that reads nothing but the batch size of its input: positional embeddings,
ViT's class token; a merge layer (add, concat) combines it with the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, size, sizes
from ..core.num import Dim, Shape
from .base import Kept, Layer, ints, register
from .events import Drop, Hold, New, Program


@register
@dataclass(frozen=True, kw_only=True)
class Embedding(Layer):
    """A table of num_embeddings rows of embedding_dim values; each token id picks its row."""

    kind = "embedding"
    torch_modules = ("Embedding",)
    num_embeddings: Dim = size()
    embedding_dim: Dim = size()
    padding_idx: Dim | None = size(None, minimum=0)  # that row's gradient is always zero; it still counts

    @property
    def token_ids(self) -> Dim:
        return self.num_embeddings

    def output(self, x: Shape) -> Shape:
        if self.padding_idx is not None and num.is_concrete(self.padding_idx - self.num_embeddings) and self.padding_idx >= self.num_embeddings:
            raise SpecError(f"padding_idx = {self.padding_idx} is not a row of the table (0 to {fmt.group(self.num_embeddings - 1)})",
                            "padding_idx must be below num_embeddings", "padding_idx")
        return (*x, self.embedding_dim)

    def weights(self, x: Shape) -> Dim:
        return num.normal(self.num_embeddings * self.embedding_dim)

    def weight_shape(self, x: Shape) -> Shape:
        return (self.num_embeddings, self.embedding_dim)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept("input", num.mul(x), "int64", what="token ids (int64)"),)

    def summary(self, x: Shape) -> str:
        return f"{fmt.group(self.num_embeddings)} ids → {fmt.group(self.embedding_dim)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [
            ("output", f"one row of the table per token id: {fmt.shape(x)} ids → {fmt.shape(self.output(x))}"),
            ("weights", f"weights = num_embeddings·embedding_dim = {fmt.term(self.num_embeddings)}·{fmt.term(self.embedding_dim)}"
                        f" = {fmt.group(self.weights(x))}"),
            ("macs", "MACs = 0: a lookup, not a product"),
        ]

    def to_torch(self, x: Shape, nn):
        padding = None if self.padding_idx is None else int(self.padding_idx)
        return nn.Embedding(int(self.num_embeddings), int(self.embedding_dim), padding_idx=padding)


@register
@dataclass(frozen=True, kw_only=True)
class Parameter(Layer):
    """A learned tensor of `shape` (no batch axis), the same for every sample; `length` keeps its first rows.

    GPT-2's positions: shape = [1024, 768], length = "T" (the first T of 1024 positions);
    ViT's class token: shape = [1, 768]. It reads its input only for the batch size.
    """

    kind = "parameter"
    shape: tuple = sizes()
    length: Dim | None = size(None)  # rows of axis 0 used (default: all of them)

    def output(self, x: Shape) -> Shape:
        if self.length is None:
            return self.shape
        if num.is_concrete(self.length - self.shape[0]) and self.length > self.shape[0]:
            raise SpecError(f"length = {fmt.group(self.length)} is more than the {fmt.group(self.shape[0])} rows of the tensor",
                            "length takes the first rows of shape's first axis: it must not exceed it", "length")
        return (self.length, *self.shape[1:])

    def weights(self, x: Shape) -> Dim:
        return num.mul(self.shape)

    def weight_shape(self, x: Shape) -> Shape:
        return self.shape

    def summary(self, x: Shape) -> str:
        text = fmt.shape(self.shape)
        return text if self.length is None else f"{text}[:{fmt.group(self.length)}]"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = [("weights", f"weights = {fmt.product(self.shape)} = {fmt.group(self.weights(x))} (one learned tensor, shared by every sample)")]
        if self.length is not None:
            lines.insert(0, ("output", f"its first {fmt.group(self.length)} rows: {fmt.shape(self.output(x))}"))
        return lines

    def to_torch(self, x: Shape, nn):
        return nn.Learned(ints(self.shape), None if self.length is None else int(self.length))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program:
        """For the memory timeline. Without `length`, the tensor expanded over the batch (a view, nothing new);
        backward sums its gradient over the batch: the parameter's gradient. With `length`, positions looked up
        as Hugging Face's GPT-2 does (wpe(arange(T)), kept for the backward's indices): a [T, ...] tensor that
        its forward holds until the model's body returns (before the output layer), and backward reduces the
        gradient over the batch, then scatters it into a gradient of the whole table (embedding_dense_backward)."""
        whole = num.mul(self.shape)
        if self.length is None:
            return Program((New("out", 0, per_sample=False),), (New("grad.weight", whole, per_sample=False), Drop("g")))
        rows = num.mul(self.output(x))
        fwd = (New("positions", self.length, "int64", per_sample=False), New("out", rows, per_sample=False), Hold("out"))
        bwd = (New("reduced", rows, per_sample=False), New("grad.weight", whole, per_sample=False),
               Drop("g", "reduced", "positions"))
        return Program(fwd, bwd)

    def output_layout(self, x: Shape):
        """Without `length`, the tensor expanded over the batch: a stride of 0 on the batch axis (a layer that needs
        a contiguous input, nn.Linear folding [B, T, d], copies it). One row ([1, d]) folds into a view (stride
        0, then 1), which torch's matrix product reads as it is: no copy (measured)."""
        if self.length is not None or num.mul(self.shape[:-1]) == 1:
            return None
        from . import layout

        return (0, *layout.contiguous(self.shape))


@register
@dataclass(frozen=True, kw_only=True)
class Select(Layer):
    """One entry of an axis, the axis removed: `x.select(dim + 1, index)` (ViT's class token: x[:, 0], dim = 0).

    `dim` counts a sample's axes as concat's does (0: the first, the tokens of [T, d]; negative: from the end).
    """

    kind = "select"
    dim: int = axis(0)
    index: Dim = size(0, minimum=0)

    def output(self, x: Shape) -> Shape:
        i = self.axis(x)
        if num.is_concrete(x[i] - self.index) and self.index >= x[i]:
            raise SpecError(f"index = {fmt.group(self.index)} is past the end of an axis of {fmt.group(x[i])}",
                            None, "index")
        return (*x[:i], *x[i + 1:])

    def axis(self, x: Shape) -> int:
        dim = self.dim + len(x) if self.dim < 0 else self.dim
        if not 0 <= dim < len(x):
            raise SpecError(f"dim = {self.dim} is not an axis of a sample {fmt.shape(x)}",
                            f"give 0 to {len(x) - 1} (a sample's axes, the batch axis not counted), or -1 for the last", "dim")
        return dim

    def summary(self, x: Shape) -> str:
        return f"dim {self.dim}, index {fmt.group(self.index)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"entry {fmt.group(self.index)} of axis {self.dim} ({fmt.group(x[self.axis(x)])} long), that axis removed")]

    def to_torch(self, x: Shape, nn):
        return nn.Select(self.axis(x) + 1, int(self.index))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True
    gradient_is_new = True  # select_backward: zeros of the input's shape, the gradient copied into the entry
