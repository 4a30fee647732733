"""Which storage each tensor of a network lives in, in one walk over its rows.

A view (flatten, reshape, dropout with p = 0) shares its input's storage. Layouts (archcalc/layers/layout.py)
follow permutes and reshapes: a reshape of a permuted tensor is a copy after all, an element-wise op keeps
its input's layout (unless it repeats elements: expanded), `parameter` expands its tensor over the batch, and a layer that needs a contiguous input
(nn.Linear, the norms) copies a permuted one and keeps that copy. The closed form (closed.py) reads this
walk; the timeline follows the same rule.

A storage is a key: ("output", i) is row i's output (0: the model's input), ("copy", i) row i's contiguous
copy of its first input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import num
from ..core.num import Dim
from ..layers import layout

if TYPE_CHECKING:
    from ..analysis.network import Network

Key = tuple  # ("output", i) or ("copy", i)
INPUT: Key = ("output", 0)


@dataclass(frozen=True)
class Place:
    """Where one row's tensors live."""

    reads: tuple[Key, ...]  # each input's storage as the op reads it: its contiguous copy first where it makes one
    output: Key  # its output's storage: its first input's for a view
    view: bool  # its output is a view of its first input
    layout: object  # its first input's layout (None: contiguous)

    @property
    def copies(self) -> bool:
        """Whether it copies its (permuted) first input, and keeps the copy."""
        return self.reads[0][0] == "copy"


@dataclass(frozen=True, eq=False)
class Storages:
    """The walk's result: each row's Place, and where every named tensor lives."""

    places: tuple[Place, ...]  # per row
    storage: dict[str, Key]  # a tensor's name ("input": the model's) -> its storage
    elements: dict[Key, Dim]  # an output storage -> its elements per sample (a view may see fewer: select)
    layouts: dict[str, object]  # a tensor's name -> its layout, where not contiguous


def walk(network: Network) -> Storages:
    """Each row's storages, in row order (see the module's docstring)."""
    storage: dict[str, Key] = {"input": INPUT}
    elements: dict[Key, Dim] = {INPUT: num.mul(network.input)}
    layouts: dict[str, object] = {}
    places = []
    for row in network.rows:
        layer = row.layer
        reads = tuple(storage[name] for name in row.inputs)
        before = layouts.get(row.inputs[0])
        view, after = layer.is_view(), None
        if view:
            after = layer.view(row.input, row.output, before)
            if after == layout.COPY:  # a reshape of a permuted tensor: a copy of its own
                view, after = False, None
        output = reads[0] if view else ("output", row.index)
        storage[row.name] = output
        if not view:  # a parameter's own storage is no activation: a mul keeping a layer scale keeps 0 bytes
            elements[output] = 0 if layer.is_parameter() else num.mul(row.output)
        if after is None and before is not None and layer.keeps_layout and not layout.expanded(before):
            after = before  # relu of a permuted tensor is permuted too (of an expanded one, contiguous)
        if after is None:
            after = layer.output_layout(row.input)
        if after is not None:
            layouts[row.name] = after
        if layer.copies_input(row.shapes[0], before):  # it keeps a contiguous copy of its input
            reads = (("copy", row.index), *reads[1:])
        places.append(Place(reads, output, view, before))
    return Storages(tuple(places), storage, elements, layouts)
