"""The backward rule: nodes in reverse order of the forward (what the engine's priority queue does on a graph
connected to the loss). The root's ones scalar lives to the end; each node allocates its gradients (input
gradients, parameter gradients: AccumulateGrad steals them, no copy), then frees the gradient it consumed, then
releases what it kept (`release_variables`), then its input gradients are added into the gradient buffer of the
tensor they belong to (Gradients)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...analysis import checkpoint
from ...analysis.checkpoint import records_node
from ...core import num
from .cuda import cudnn_workspace
from .forward import Pass, ProgramSaved, Saved
from .parameters import Trained, tied_gradient, tied_sum
from .program import Interpreter
from .tape import Allocation, Tape

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...analysis.checkpoint import Region
    from ...analysis.network import Row
    from .amp import RowCast
    from .peaks import Pair
    from .rerun import Checkpoints


class Gradients:
    """The gradient buffer of each tensor, as autograd's InputBuffer fills it: name -> (its storage, a view?).

    `inplace=False`: gradients that meet are always summed into a new tensor, as torch does while a
    TorchDispatchMode is active (InputBuffer's can_accumulate_inplace refuses tensors when a Python dispatch
    mode is on), which is how the CPU oracle sees them; without a mode, torch sums in place where it can
    (torch/csrc/autograd/input_buffer.cpp)."""

    def __init__(self, tape: Tape, inplace: bool):
        self.tape, self.inplace = tape, inplace
        self.buffers: dict[str, tuple[Allocation, bool]] = {}

    def add(self, name: str, g: Allocation, view: bool, size: Pair | None = None) -> None:
        """A gradient for `name` arrives (InputBuffer::accumulate): the first becomes its buffer; a later one is
        added in place into the buffer when its storage has no other holder and is not a view, else the buffer
        is added in place into the new one when that one can be, else the sum is a new tensor."""
        if name == "input":  # the batch needs no gradient
            return
        if name not in self.buffers:
            g.refs += 1
            self.buffers[name] = (g, view)
            return
        old, old_view = self.buffers[name]
        if self.inplace and old.refs == 1 and not old_view:  # old.add_(g)
            return
        if self.inplace and g.refs == 1 and not view:  # g.add_(old): the new gradient becomes the buffer
            g.refs += 1
            self.tape.release(old)
            self.buffers[name] = (g, False)
            return
        total = self.tape.new(size or old.size, "activation gradients")  # old + g: the tensor's size (a slice's is larger)
        self.tape.release(old)
        self.buffers[name] = (total, False)

    def hand(self, name: str, g: Allocation, size: Pair) -> None:
        """A node's output `g` for `name`, into the buffer; the node's own reference then goes."""
        self.add(name, g, False, size)
        self.tape.release(g)

    def pop(self, name: str) -> Allocation | None:
        return self.buffers.pop(name, (None, False))[0]

    def release(self) -> None:
        for g, _ in self.buffers.values():
            self.tape.release(g)


@dataclass(slots=True)
class _Node:
    """One row's backward node while it runs: the gradient it consumes and its inputs' gradients."""

    row: Row
    g: Allocation
    saved: Saved
    region: Region | None
    info: RowCast | None
    g_ins: list  # (input name, gradient, a view?, its size)
    summed: list = field(default_factory=list)  # g_ins' gradients made at the output's size, summed to the input's after
    pending: tuple | None = None  # the owner of a tied weight: its own gradient, added into .grad once the node has run


class Backward(Pass):
    """The backward of a training step, row by row (see the module); a region's rerun and its end are Rerun's."""

    grads: Gradients
    trained: Trained
    kept: dict
    tied: dict[str, Allocation | None]
    batchless: set[str]
    recomputed: dict[int, Saved]
    rerun_regions: set[int]
    checkpoints: Checkpoints
    rerun: Callable[[Region], dict[int, Saved]]
    frame_ends: Callable[[Region], None]

    def backward_row(self, row: Row) -> None:
        g = self.grads.pop(row.name)
        saved = self.kept[row.index]
        region = self.checkpoints.of.get(row.index - 1)
        if region is not None and g is not None and records_node(row):
            if region.first not in self.rerun_regions and any(checkpoint.packs(row)):  # its first unpack reruns it
                self.rerun_regions.add(region.first)
                self.recomputed |= self.rerun(region)
            saved = self.recomputed.get(row.index, Saved())
        if g is None:  # no gradient reaches it (nothing after it needs one)
            return
        if row.layer.is_view():
            self._view_backward(row, g)
        elif not records_node(row):
            self.tape.release(g)
        elif isinstance(saved, ProgramSaved):
            self._program_backward(row, g, saved)
        else:
            self._op_backward(_Node(row, g, saved, region, self.amp.rows.get(row.index), []))

    def _input_size(self, row: Row) -> Pair:
        """The size of the gradient of the row's (first) input, in its dtype."""
        name = row.inputs[0]
        return self.tape.size(0, num.mul(row.shapes[0]) * self.amp.bytes(name, self.size))

    def _view_backward(self, row: Row, g: Allocation) -> None:
        whole = self._input_size(row)
        if row.layer.gradient_is_new:  # select: a new gradient of the input's size
            g_in = self.tape.new(whole, "activation gradients")
            self.tape.release(g)
            self.grads.hand(row.inputs[0], g_in, whole)
            return
        self.grads.add(row.inputs[0], g, True, whole)
        self.tape.release(g)

    def _program_backward(self, row: Row, g: Allocation, saved: ProgramSaved) -> None:
        """The layer's own ops (Layer.program): a gradient it hands to the input's buffer goes there at once."""
        def hand(s: Allocation) -> None:  # a gradient of the (first) input, into its buffer now
            self.grads.add(row.inputs[0], s, False, self._input_size(row))

        run = Interpreter(self.tape, self.bytes_of, "activation gradients", hand=hand)
        live = run.run(saved.backward, {**saved.live, "g": g})
        self.gradients_made(row, [s for name, s in live.items() if name.startswith("grad.")])
        if "gx" in live:
            self.grads.hand(row.inputs[0], live["gx"], self._input_size(row))

    def _op_backward(self, node: _Node) -> None:
        """A row run by the generic rule: its activation's node, then its op's."""
        row, tape, info = node.row, self.tape, node.info
        if row.layer.activation:
            self._activation_backward(node)
        scratch, late, low_grads = self._parameter_gradients(node)
        padded = self._input_gradients(node)
        tape.mark()
        cudnn_workspace(tape, row, info.size if info else self.size, "backward")
        self._sum_to_inputs(node)
        tape.release(node.g)
        for s in node.saved.main:
            tape.release(s)
        self._tied_sum(node)
        if padded is not None:
            size = tape.size(0, num.mul(row.input) * self.size)
            node.g_ins.append((row.inputs[0], tape.new(size, "activation gradients"), False, size))
            tape.release(padded)
        if scratch is not None:
            if late:
                low_grads = self._weight_gradients(node)
                self._tied_sum(node)
            tape.release(scratch)
        if self._frees_region(node) and node.saved.main:
            self.frame_ends(node.region)
        self._hand_back(node)
        self.amp.weights_to_float32(low_grads)

    def _activation_backward(self, node: _Node) -> None:
        """The activation's node: the gradient of "pre", then what it kept goes."""
        tape, info = self.tape, node.info
        g_pre = tape.new(tape.size(0, num.mul(node.row.output) * (info.size if info else self.size)),
                         "activation gradients")
        tape.release(node.g)
        for s in node.saved.activation:
            tape.release(s)
        node.g = g_pre
        if self._frees_region(node) and not node.saved.main:
            self.frame_ends(node.region)

    def _frees_region(self, node: _Node) -> bool:
        """Whether the node is its region's first saving row's (the last of the region's nodes to use a save)."""
        return node.region is not None and node.region.first_pack == node.row.index - 1

    def _parameter_gradients(self, node: _Node) -> tuple[Allocation | None, bool, list | None]:
        """The parameters' gradients, first or after the node's frees (`late`) where it sums them out of per-sample
        scratch (InstanceNorm's γ and β; PReLU's first); returns (the scratch, late, autocast's 16-bit gradients)."""
        row, tape, info = node.row, self.tape, node.info
        scratch = row.layer.backward_scratch(row.input, row.requires_grad)
        if scratch == 0:
            return None, False, self._weight_gradients(node)
        # in the dtype the op computes in under autocast's rule (PReLU's); else the parameters' (InstanceNorm's float32
        # γ and β gradients per sample, from a 16-bit input)
        scratch = tape.new(tape.size(0, scratch * (info.size if info and info.rule else self.size)), "temporaries",
                           mark=False)
        if not row.layer.sums_scratch_first(row.requires_grad):
            if row.layer.tie is not None:
                self.tied.setdefault(row.layer.tie, None)
            return scratch, True, None
        return scratch, False, self._weight_gradients(node)

    def _weight_gradients(self, node: _Node) -> list | None:
        """The row's parameter gradients: autocast's 16-bit ones (made float32 after the node), else float32 ones."""
        low_grads = self.amp.weight_grads(node.row, node.info)
        if low_grads is None:
            made: list = []
            node.pending = tied_gradient(self.tape, node.row, self.tied, self.size, self.trained.tensors(node.row), made)
            self.gradients_made(node.row, made)
        elif node.row.layer.tie is not None:  # its copy's ToCopyBackward below makes the shared weight's gradient
            self.tied.setdefault(node.row.layer.tie, None)
        return low_grads

    def gradients_made(self, row: Row, made: list) -> None:
        """The parameter gradients a row's node has made (AccumulateGrad keeps them as .grad; a tied weight's are in
        `tied`): a data-parallel rank copies them into its buckets or reduce-scatters them (ranks.py)."""

    def _tied_sum(self, node: _Node) -> None:
        """A tied weight's owner: its own gradient of the weight into .grad, once its node has run."""
        tied_sum(self.tape, self.tied, node.pending, self.inplace)
        node.pending = None

    def _input_gradients(self, node: _Node) -> Allocation | None:
        """The gradient of each input that needs one: the consumed one itself where the op passes it on, else a new
        tensor; or first the gradient of a padded copy (returned), the input's cut from it after. A parameter
        broadcast as it is (no batch axis: batchless) gets a gradient of its own size, summed; a merge's (mul's)
        gradient of a broadcast factor is made at the output's size, summed to the factor's after (_sum_to_inputs)."""
        row, tape, info = node.row, self.tape, node.info
        layer, names = row.layer, row.inputs
        flags = row.grads if layer.merges else (row.requires_grad,)
        passes = layer.passes_gradient
        padded = layer.padded_gradient(row.input) if row.requires_grad and not layer.merges else 0
        if padded != 0:  # the gradient of the padded copy first; the input's is cut from it after (the pad's node)
            return tape.new(tape.size(0, padded * self.size), "activation gradients", mark=False)
        for name, flag, shape in zip(names, flags, row.shapes):
            if not flag:
                continue
            elements = num.mul(shape) * (info.size if info else self.size)
            own = tape.size(elements, 0) if name in self.batchless else tape.size(0, elements)
            if passes == "slice" or (passes == "same" and tuple(shape) == tuple(row.output) and name not in self.batchless):
                node.g.refs += 1
                node.g_ins.append((name, node.g, passes == "slice" or len(names) > 1, own))
            elif passes == "" and layer.merges and info is None and tuple(shape) != tuple(row.output):
                node.summed.append(len(node.g_ins))
                full = tape.new(tape.size(0, num.mul(row.output) * self.size), "activation gradients", mark=False)
                node.g_ins.append((name, full, False, own))
            else:
                node.g_ins.append((name, tape.new(own, "activation gradients", mark=False), False, own))
        if info is not None:  # then the engine casts each gradient to its input's dtype, in order (validate_outputs)
            made = [(i, shape) for i, (flag, shape) in enumerate(zip(flags, row.shapes)) if flag]
            node.g_ins = [self.amp.promoted(info, i, shape, entry) for (i, shape), entry in zip(made, node.g_ins)]
        return None

    def _sum_to_inputs(self, node: _Node) -> None:
        """validate_outputs: each gradient made at the output's size summed to its input's shape (sum_to), while the
        consumed gradient is still held."""
        for i in node.summed:
            name, full, view, own = node.g_ins[i]
            node.g_ins[i] = (name, self.tape.new(own, "activation gradients"), view, own)
            self.tape.release(full)

    def _hand_back(self, node: _Node) -> None:
        """The node's outputs into the inputs' buffers, then dropped; the gradients of autocast's input copies after,
        each through its ToCopyBackward (the last input's first)."""
        row = node.row
        flags = row.grads if row.layer.merges else (row.requires_grad,)
        later = self.amp.copied(node.info, row, flags)
        for name, g_in, view, own in node.g_ins:
            if name not in later:
                self.grads.add(name, g_in, view, own)
        for name, g_in, _, _ in node.g_ins:
            if name not in later:
                self.tape.release(g_in)  # the node's outputs are dropped once they are in the buffers
        for name, g_in, _, own in reversed(node.g_ins):
            if name in later:
                own = self.tape.size(0, num.mul(later[name]) * self.amp.bytes(name, self.size))
                self.grads.hand(name, self.amp.convert(g_in, own, "activation gradients"), own)
