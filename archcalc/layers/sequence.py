"""Layers of sequence models: embedding (torch.nn.Embedding), parameter (a learned tensor), select (one token), and
narrow (a range of an axis: torch.narrow, chunk and split).

A model whose first layer is an embedding reads token ids: `input = ["T"]` is one sample
of T ids (int64), and the embedding turns it into [T, embedding_dim]. A `parameter` is a
learned tensor that reads nothing but the batch size of its input: positional embeddings,
ViT's class token; a merge layer (add, concat) combines it with the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, flag, size, sizes
from ..core.num import Dim, Shape
from .base import Inexpressible, Kept, Layer, Storage, Tensor, TorchSize, TorchTensor, ints, register, torch_argument
from .events import Drop, Hold, New, Program
from .receptive_field import Field


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

    # Memory (archcalc/memory/timeline/): its facts and hooks
    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        return (self.weight_shape(x),)


@register
@dataclass(frozen=True, kw_only=True)
class Parameter(Layer):
    """A learned tensor of `shape` (no batch axis), the same for every sample; `length` keeps its first rows.

    GPT-2's positions: shape = [1024, 768], length = "T" (the first T of 1024 positions), indices = "T" (arange(T));
    ViT's class token: shape = [1, 768]. It reads its input only for the batch size.
    """

    kind = "parameter"
    draws_input = False  # its input gives the batch size (and T), no values: no arrow in the picture
    shape: tuple = sizes()
    length: Dim | None = size(None)  # rows of axis 0 used (default: all of them)
    # As torch holds it, so that a state_dict loads strictly: `bare`, a bare nn.Parameter whose state_dict key is the
    # layer's own path (torchvision's class_token and ConvNeXt's layer_scale; timm's `ls1.gamma`), not an
    # nn.Module's `<name>.weight`; `torch_shape`, its shape in torch where it is not [1, *shape] (ConvNeXt's
    # layer_scale [C, 1, 1] for shape = [C, 1, 1]; timm's gamma [C]): as many values, viewed as [1, *shape].
    bare: bool = flag(False)
    torch_shape: tuple | None = sizes(None)
    # `expand`: expanded over the batch (`class_token.expand(B, -1, -1)`, for a concat); false: the tensor as it is,
    # which an add or a mul broadcasts (torchvision's pos_embedding and layer_scale), read only by them
    expand: bool = flag(True)
    # `indices`: its rows are an nn.Embedding's lookup of this many int64 indices made in each forward (GPT-2's
    # wpe(arange(T)), BERT's token types gathered from a buffer), which the embedding keeps for its backward, one
    # set for the whole batch; none where the indices are a buffer's view (BERT's position_ids[:, :T]): no new tensor
    indices: Dim | None = size(None)

    def output(self, x: Shape) -> Shape:
        if self.torch_shape is not None and num.is_concrete(num.mul(self.torch_shape) - num.mul(self.shape)) \
                and num.mul(self.torch_shape) != num.mul(self.shape):
            raise SpecError(f"torch_shape {fmt.shape(self.torch_shape)} holds {fmt.group(num.mul(self.torch_shape))} values, "
                            f"shape {fmt.shape(self.shape)} {fmt.group(num.mul(self.shape))}",
                            "torch_shape is the same tensor as torch holds it: as many values", "torch_shape")
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

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if self.indices is None or self.frozen:  # a frozen table's lookup keeps nothing
            return ()
        return (Kept(Tensor.own, self.indices, Storage.int64, per_sample=False, what="the lookup's indices (int64, one set)"),)

    def summary(self, x: Shape) -> str:
        text = fmt.shape(self.shape)
        return text if self.length is None else f"{text}[:{fmt.group(self.length)}]"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = [("weights", f"weights = {fmt.product(self.shape)} = {fmt.group(self.weights(x))} (one learned tensor, shared by every sample)")]
        if self.length is not None:
            lines.insert(0, ("output", f"its first {fmt.group(self.length)} rows: {fmt.shape(self.output(x))}"))
        return lines

    def to_torch(self, x: Shape, nn):
        held = None if self.torch_shape is None else ints(self.torch_shape)
        return nn.Learned(ints(self.shape), None if self.length is None else int(self.length), held, self.bare, self.expand,
                          None if self.indices is None else int(self.indices))

    @property
    def transformers_body(self) -> bool:  # Layer's memory fact, of the fields here: GPT2Model's wpe(arange(T))
        return self.length is not None

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program:
        """For the memory timeline. Without `length`, the tensor expanded over the batch (a view, nothing new);
        backward sums its gradient over the batch: the parameter's gradient. With `length`, rows looked up as
        Hugging Face's GPT-2 does (wpe(arange(T)); the `indices` made first, kept for the backward): a [T, ...] tensor that
        its forward holds until the model's body returns (before the output layer), and backward reduces the
        gradient over the batch, then scatters it into a gradient of the whole table (embedding_dense_backward)."""
        whole = num.mul(self.shape)
        if self.batchless():  # its reader summed the gradient to its shape: AccumulateGrad takes it as it is
            return Program((New("out", 0, per_sample=False),), ())
        if self.length is None:
            return Program((New("out", 0, per_sample=False),), (New("grad.weight", whole, per_sample=False), Drop("g")))
        rows = num.mul(self.output(x))
        made = (New("positions", self.indices, "int64", per_sample=False),) if self.indices is not None else ()
        fwd = (*made, New("out", rows, per_sample=False), Hold("out"))
        if self.frozen:  # no node keeps the positions: the model's body holds them (its local) until it returns
            return Program((*fwd, Hold("positions"), Drop("positions")) if made else fwd, ())
        bwd = (New("reduced", rows, per_sample=False), New("grad.weight", whole, per_sample=False),
               Drop("g", "reduced", *(("positions",) if made else ())))
        return Program(fwd, bwd)

    def batchless(self) -> bool:
        return not self.expand and self.length is None

    def is_parameter(self) -> bool:
        return self.length is None  # its output is a view of the parameter: what keeps it keeps no activation

    def output_layout(self, x: Shape):
        """Without `length`, the tensor expanded over the batch: a stride of 0 on the batch axis (a layer that needs
        a contiguous input, nn.Linear folding [B, T, d], copies it). One row ([1, d]) folds into a view (stride
        0, then 1), which torch's matrix product reads as it is: no copy (measured)."""
        if self.length is not None or num.mul(self.shape[:-1]) == 1:
            return None
        from . import layout

        return (0, *layout.contiguous(self.shape))

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        return (self.shape,)


@register
@dataclass(frozen=True, kw_only=True)
class Select(Layer):
    """One entry of an axis, the axis removed: `x.select(dim + 1, index)` (ViT's class token: x[:, 0], dim = 0).

    `dim` counts a sample's axes as concat's does (0: the first, the tokens of [T, d]; negative: from the end).
    """

    kind = "select"
    torch_functions = ("select", "unbind")  # unbind: one select per entry, as x[:, i]
    torch_several = ("unbind",)
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

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """x.select(dim, index), aten.select.int (x[:, 0]); unbind's elements: torch_item."""
        if name != "select":
            raise Inexpressible("returns several tensors: each element read is a select (torch_item)")
        dim = _sample_axis(args[0], torch_argument(args, kwargs, 1, "dim"))
        return {"dim": dim, "index": _index(args[0], dim, torch_argument(args, kwargs, 2, "index"))}

    @classmethod
    def torch_item(cls, name: str, args: tuple, kwargs: dict, item: int) -> dict | None:
        """Element `item` of x.unbind(dim): x.select(dim, item)."""
        return {"dim": _sample_axis(args[0], torch_argument(args, kwargs, 1, "dim", 0)), "index": item}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True
    gradient_is_new = True  # select_backward: zeros of the input's shape, the gradient copied into the entry


@register
@dataclass(frozen=True, kw_only=True)
class Narrow(Layer):
    """`length` entries of one axis from `start` (a sample's axis, as select's dim), every `step`th: torch.narrow,
    `x[:, start:start + length]`; a view. torch's chunk and split are several narrows of one tensor (x.chunk(2, 1) on
    [B, C, H, W]: dim = 0, start 0 and C/2, length C/2 each), unbind several selects, each a layer of its own name."""

    kind = "narrow"
    asks_shape = True
    torch_functions = ("narrow", "slice", "chunk", "split", "split_with_sizes")
    torch_several = ("chunk", "split", "split_with_sizes")
    dim: int = axis(0)
    start: Dim = size(0, minimum=0)
    length: Dim | None = size(None)  # None: to the end of the axis
    step: Dim = size(1)  # a strided slice x[:, start::step] (extension: torch.narrow takes every entry)

    def output(self, x: Shape) -> Shape:
        i = self.axis(x)
        return (*x[:i], self.taken(x), *x[i + 1:])

    def axis(self, x: Shape) -> int:
        return Select.axis(self, x)

    def taken(self, x: Shape) -> Dim:
        """How many entries it takes, checked against the axis's size."""
        n = x[self.axis(x)]
        room = num.ceildiv(n - self.start, self.step)  # entries from start to the end
        if num.is_positive(room) is False:
            raise SpecError(f"start = {fmt.group(self.start)} is past the end of an axis of {fmt.group(n)}",
                            "start counts from 0", "start")
        if self.length is None:
            return room
        if num.is_concrete(room - self.length) and self.length > room:
            raise SpecError(f"length = {fmt.group(self.length)} from start = {fmt.group(self.start)}"
                            f"{'' if self.step == 1 else f', every {fmt.group(self.step)}th,'} passes the end of an axis of "
                            f"{fmt.group(n)} (at most {fmt.group(room)})", None, "length")
        return self.length

    def summary(self, x: Shape) -> str:
        start, length = self.start, self.taken(x)
        step = "" if self.step == 1 else f":{fmt.group(self.step)}"
        end = num.normal(start + (length - 1) * self.step + 1)
        return f"dim {self.dim}, {fmt.group(start)}:{fmt.group(end)}{step}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        every = "" if self.step == 1 else f", every {fmt.group(self.step)}th"
        return [("output", f"{fmt.group(self.taken(x))} entries of axis {self.dim} ({fmt.group(x[self.axis(x)])} long) from "
                           f"{fmt.group(self.start)}{every}; a view, nothing kept")]

    def receptive(self, x: Shape, field: Field) -> Field | None:
        i = self.axis(x)
        if i == 0 or field.whole:
            return field  # channels (or features): each position still sees what it saw
        if len(field.size) != len(x) - 1:
            return None
        return Field(field.size, tuple(num.normal(j * self.step) if k == i - 1 else j for k, j in enumerate(field.jump)))

    def to_torch(self, x: Shape, nn):
        stop = num.normal(self.start + (self.taken(x) - 1) * self.step + 1)
        return nn.Slice(self.axis(x) + 1, int(self.start), int(stop), int(self.step))

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """torch.narrow(x, dim, start, length) and aten.slice.Tensor(x, dim, start, end, step) (x[:, a:b]; a slice of
        the batch axis that takes all of it is x itself); chunk's and split's elements: torch_item."""
        if name == "narrow":
            dim = _sample_axis(args[0], torch_argument(args, kwargs, 1, "dim"))
            return _range(args[0], dim, torch_argument(args, kwargs, 2, "start"), torch_argument(args, kwargs, 3, "length"))
        if name != "slice":
            raise Inexpressible("returns several tensors: each element read is a narrow (torch_item)")
        dim = torch_argument(args, kwargs, 1, "dim", 0)
        start, end = torch_argument(args, kwargs, 2, "start"), torch_argument(args, kwargs, 3, "end")
        step = torch_argument(args, kwargs, 4, "step", 1)
        if dim == 0:
            whole = end is None or (isinstance(end, TorchSize) and end.batch) or (isinstance(end, int) and end >= _WHOLE)
            if start in (None, 0) and whole and step == 1:
                return None  # x[:]: the tensor itself
            raise Inexpressible("of the batch axis: archcalc slices a sample's axes")
        dim = _sample_axis(args[0], dim)
        n = _size(args[0], dim)
        start, end = _value(start, 0), _value(end, None)
        if isinstance(end, int) and end >= _WHOLE:
            end = None
        for which, value in (("start", start), ("end", end)):
            if isinstance(value, int) and value < 0:
                if n is None:
                    raise Inexpressible(f"with a negative {which} on an axis of unknown size")
                if which == "start":
                    start = num.normal(n + value)
                else:
                    end = num.normal(n + value)
        if not isinstance(step, int) or step < 1:
            raise Inexpressible(f"with step {step!r}")
        if start == 0 and step == 1 and (end is None or (n is not None and num.is_concrete(n) and num.is_concrete(end) and end >= n)):
            return None  # x[:, :]: the tensor itself
        fields = _range(args[0], dim, start, None if end is None else _length(start, end, n, step), step)
        return fields | ({"step": step} if step != 1 else {})

    @classmethod
    def torch_item(cls, name: str, args: tuple, kwargs: dict, item: int) -> dict | None:
        """Element `item` of x.chunk(chunks, dim), x.split(size, dim) or x.split([sizes], dim) (aten.split_with_sizes):
        the range of the axis it covers, as torch cuts it (chunk: pieces of ⌈n/chunks⌉, the last what remains)."""
        dim = _sample_axis(args[0], torch_argument(args, kwargs, 2, "dim", 0))
        n = _size(args[0], dim)
        how = torch_argument(args, kwargs, 1, "chunks" if name == "chunk" else "split_size")
        if isinstance(how, (list, tuple)):  # split with sizes
            sizes = [_value(v, None) for v in how]
            if any(v is None for v in sizes):
                raise Inexpressible("into sizes archcalc cannot write")
            return _range(args[0], dim, num.add(sizes[:item]), sizes[item])
        if n is None:
            raise Inexpressible("of an axis of unknown size")
        piece = num.ceildiv(n, how) if name == "chunk" else _value(how, None)
        if piece is None:
            raise Inexpressible("into a size archcalc cannot write")
        start = num.normal(item * piece)
        return _range(args[0], dim, start, num.minimum(piece, num.normal(n - start)))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    shares_storage = True
    gradient_is_new = True  # slice_backward: zeros of the input's shape, the gradient copied into the range

    def view(self, x: Shape, y: Shape, strides):
        from . import layout

        return layout.sliced(x, strides, self.axis(x), self.taken(x), self.step)


_WHOLE = 2**62  # x[:, a:] is aten.slice(x, 1, a, 9223372036854775807): to the end


def _sample_axis(tensor, dim) -> int:
    """A torch axis of a tensor as a sample's (the batch axis refused), non-negative where its rank is known."""
    if not isinstance(dim, int):
        raise Inexpressible(f"along dim {dim!r}")
    rank = tensor.rank if isinstance(tensor, TorchTensor) else None
    if dim < 0 and rank is not None:
        dim += rank
    if dim == 0:
        raise Inexpressible("along the batch axis: archcalc keeps it")
    return dim - 1 if dim > 0 else dim


def _size(tensor, dim: int):
    """The size of a sample's axis, where the capture gives the tensor's shape."""
    shape = tensor.shape if isinstance(tensor, TorchTensor) else None
    return None if shape is None else shape[dim]


def _value(value, default):
    if value is None:
        return default
    if isinstance(value, TorchSize):
        if value.value is None:
            raise Inexpressible("with a size read from a tensor that archcalc cannot write")
        return value.value
    return value


def _index(tensor, dim: int, index):
    index = _value(index, None)
    if isinstance(index, int) and index < 0:
        n = _size(tensor, dim)
        if n is None:
            raise Inexpressible("with a negative index on an axis of unknown size")
        return num.normal(n + index)
    return index


def _length(start, end, n, step: int):
    """Entries of [start, end) every `step`th, end clamped to the axis's size as torch does."""
    if n is not None and num.is_concrete(n) and num.is_concrete(end):
        end = min(end, n)
    return num.ceildiv(num.normal(end - start), step)


def _range(tensor, dim: int, start, length, step: int = 1) -> dict:
    start = _value(start, 0)
    n = _size(tensor, dim)
    fields: dict = {"dim": dim}
    if start != 0:
        fields["start"] = start
    if length is not None and not (step == 1 and n is not None and num.normal(start + length - n) == 0):
        fields["length"] = length
    return fields
