"""Activation checkpointing along the step (archcalc/analysis/checkpoint.py, measured against torch.utils.checkpoint,
non-reentrant): in forward a checkpointed region's nodes keep nothing and its inputs are kept instead, until its
first saving node has run in backward; the first of its nodes to run in backward reruns its forward up to the
last save (early stop), the tensors saved again kept for their nodes, the rest freed when the rerun stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...analysis import checkpoint
from ...analysis.checkpoint import records_node
from .forward import RERUN, Frame, Pass, Saved, readers

if TYPE_CHECKING:
    from ...analysis.checkpoint import Region
    from ...analysis.network import Network


def region_inputs(report: Network, region: Region) -> list[str]:
    """The names a region reads from before it (its block use's input)."""
    rows = report.rows[region.first:region.stop]
    made = {row.name for row in rows}
    return list(dict.fromkeys(n for row in rows for n in row.inputs if n not in made))


class Checkpoints:
    """The step's checkpointed regions, by their first row and by each of their rows (indices from 0)."""

    def __init__(self, net: Network):
        self.starts = {r.first: r for r in checkpoint.regions(net)}
        self.of = {i: r for r in self.starts.values() for i in range(r.first, r.stop)}


class Rerun(Pass):
    """The checkpoint's part of a training step (see the module): its edges in forward, its rerun in backward."""

    checkpoints: Checkpoints
    reach: set[str]

    def region_edge(self, index: int) -> None:
        """Before row `index` (from 0), at a checkpointed region's edge: Graph.forward's local holding an unread output
        is gone (its loop returned); at its start, the region's inputs are saved by the checkpoint (until its first
        saving node has run in backward), unless nothing in it saves anything."""
        inside = self.checkpoints.of
        if not (index in self.checkpoints.starts or (index - 1 in inside and index not in inside)):
            return
        self.frame.drop_dead()
        region = self.checkpoints.starts.get(index)
        if region is not None and region.first_pack is not None:
            for name in region_inputs(self.net, region):
                self.frame.storage[name].refs += 1

    def frame_ends(self, region: Region) -> None:
        """The last node of a region that saved something has run: the checkpoint's saved inputs go."""
        for name in region_inputs(self.net, region):
            self.tape.release(self.frame.storage[name])

    def rerun(self, region: Region) -> dict[int, Saved]:
        """A checkpointed region's forward, rerun in backward as Graph's region function runs it (its own local
        names, each dropped after its last reader in the region), up to torch's early stop: the last save
        (region.until, region.runs); then everything not saved again is freed. Returns, per row index, the
        storages its nodes keep."""
        net, tape = self.net, self.tape
        rows = net.rows[region.first:region.stop]
        later = {n for row in net.rows[region.stop:] for n in row.inputs} | {net.rows[-1].name}
        count = readers(rows)
        local = {name: self.frame.storage[name] for name in region_inputs(net, region)}
        for name, s in local.items():
            s.refs += count[name]
        frame = Frame(tape, local, {row.name: count.get(row.name, 0) + (row.name in later) for row in rows})
        kept: dict[int, Saved] = {}
        index, ops, stopped = region.until, 2, None
        for i in range(region.first, region.until):
            row, ops = net.rows[i], 2 if i < region.until - 1 else region.runs
            if row.layer.is_view():
                self.view_row(row, frame)
                continue
            recorded = records_node(row) and row.name in self.reach  # under autocast its copies are made again
            kept[row.index], stopped = self.op_row(row, frame, RERUN, recorded, ops=ops)
            if ops < 2:
                index = i
                break
        self._unwind(region, frame, index, stopped, later)
        return kept

    def _unwind(self, region: Region, frame: Frame, index: int, stopped, later: set) -> None:
        """The stop unwinds the region's function: its locals go (the reads still pending, the outputs, its last `y`)."""
        rows = self.net.rows[region.first:region.stop]
        made = {row.name for row in rows}
        frame.drop_dead()
        self.tape.release(stopped)
        for name, s in frame.storage.items():
            pending = sum(n == name for row in self.net.rows[index:region.stop] for n in row.inputs)
            pending += name in made and name in later
            if pending:
                self.tape.release(s, pending)
        self.amp.end_replay()  # its autocast context ends: its weight copies go, but those a node keeps
