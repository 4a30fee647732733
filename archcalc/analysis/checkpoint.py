"""Activation checkpointing: the regions a spec checkpoints, and what torch recomputes in each.

Each repeat of a block use with `checkpoint = true` is one region; the torch build runs it through
`torch.utils.checkpoint.checkpoint(..., use_reentrant=False)` in training mode. A checkpointed use
inside another is part of the outer region (only the outermost regions are checkpointed).

What torch 2.13's non-reentrant checkpoint does (torch/utils/checkpoint.py, measured on the CPU):
- forward: every tensor a node of the region would save is replaced by a placeholder (a pack hook),
  so the region's intermediate tensors are freed as they go; the region's inputs are saved instead
  (`save_inputs`), kept until the last node of the region that saved something has run in backward.
- backward: the first node of the region that unpacks a saved tensor reruns the region's forward;
  each tensor saved again is kept for its node (and freed once that node has used it), the rest freed
  as the forward goes. Early stop (the default): the recomputation stops at the last save, by
  raising out of it. A node saves its inputs before its op runs and its outputs after, so a region
  whose last save is an input (a convolution or linear layer without activation) never reruns that
  last op, while one whose last save is an output (a ReLU's) reruns it and frees its output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..layers.base import Tensor, split_keeps

if TYPE_CHECKING:
    from .network import Network


@dataclass(frozen=True)
class Region:
    """A checkpointed block use: its rows [first, stop) (indices into the report's rows), and its
    recomputation: rows [first, until) rerun, the last of them only its first `runs` ops (0: the
    recomputation stops before its layer's op, 1: after it, before its activation, 2: after both)."""

    path: str
    first: int
    stop: int
    until: int
    runs: int
    first_pack: int | None  # the first row whose nodes save something (its node is the last to run in backward)

    def ops(self, index: int) -> int:
        """How many of row `index`'s ops (its layer's, its activation's) run again in backward."""
        if not self.first <= index < self.until:
            return 0
        return 2 if index < self.until - 1 else self.runs


def regions(report: Network) -> tuple[Region, ...]:
    """The outermost checkpointed regions, in row order (a use whose layers are all absent is none)."""
    spans = sorted({(use.first, use.stop, use.path) for use in report.uses
                    if use.checkpoint and use.repeat is None and use.first < use.stop})
    out: list[Region] = []
    end = -1
    for first, stop, path in sorted(spans, key=lambda s: (s[0], -s[1])):
        if first < end:  # inside the previous region
            continue
        end = stop
        out.append(_region(report, path, first, stop))
    return tuple(out)


def marked(report: Network) -> Network:
    """The report with `recomputed` set on the rows whose layer's op torch reruns in backward (training FLOPs)."""
    again = {i for r in regions(report) for i in range(r.first, r.until) if r.ops(i) >= 1}
    rows = tuple(dataclasses.replace(row, recomputed=True) if i in again else row for i, row in enumerate(report.rows))
    return dataclasses.replace(report, rows=rows)


def packs(row) -> tuple[tuple, tuple]:
    """What a row's nodes save, as torch packs it: (main op's, activation's) kept tensors (Layer.keeps)."""
    if not records_node(row):
        return (), ()
    return split_keeps(row.layer.activation, row.layer.keeps(row.input, row.output, row.grad))


def _region(report: Network, path: str, first: int, stop: int) -> Region:
    first_pack = next((i for i in range(first, stop) if any(packs(report.rows[i]))), None)
    for index in range(stop - 1, first - 1, -1):
        main, act = packs(report.rows[index])
        if act:  # the activation saves last: its input (pre) before it runs, its output after
            return Region(path, first, stop, index + 1, 2 if act[-1].tensor == "output" else 1, first_pack)
        if main:  # inputs are saved before the op runs, outputs after
            before = saved_before_output(report.rows[index].layer, main, str(report.device))
            return Region(path, first, stop, index + 1, 0 if before else 1, first_pack)
    return Region(path, first, stop, first, 0, None)


def saved_before_output(layer, keeps, device: str) -> bool:
    """Whether the last of `keeps` (what the layer's op saves) is saved before its output exists: autograd saves an
    op's inputs before it runs, its outputs after, and its own tensors after unless the kind says otherwise."""
    return all(k.tensor == Tensor.input or (k.tensor == Tensor.own and device in layer.own_kept_before_output)
               for k in keeps)


def records_node(row) -> bool:
    """Whether autograd records a node for the row: its input needs a gradient, or it has parameters that train."""
    flags = row.grads if row.layer.merges else (row.requires_grad,)
    return any(flags) or row.trainable_params != 0
