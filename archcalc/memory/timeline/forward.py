"""The forward rule: one row's op, its own tensors and what its nodes keep, for every pass that runs rows.

A training step's forward, a checkpointed region's rerun in backward and an inference pass run each row by this
rule, each in its Mode, each over the names its own function binds (a Frame):
- its first op allocates its own kept tensors (mask, indices, statistics) and its output (before the
  activation: "pre"); then the row's inputs lose the reference of this reader (Python drops its variable when
  the module returns); the activation, if any, allocates the row's output and drops "pre". A tensor is freed
  when its last reader has run and no autograd node keeps it (Layer.keeps says which).
- a view row (flatten, reshape, dropout p=0) shares its input's storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...core import num
from ...layers.base import split_keeps, storage_bytes
from .amp import Cast, MixedPrecision
from .cuda import cudnn_workspace
from .tape import Allocation, Tape

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from ...core.num import Value
    from ...layers.base import Kept
    from .peaks import Pair


@dataclass(frozen=True)
class Mode:
    """How a pass runs an op. `grad`: autograd is on, so the op makes its own tensors (mask, indices, statistics)
    whether or not a node keeps them (inference_mode in eval makes none). `transients`: the scratch tensors, layout
    copies and cuDNN workspaces of a training step's forward (a checkpoint's rerun does not model them yet).
    `cache`: autocast caches its weight copies until the context exits. `replay`: a checkpointed row run again."""

    grad: bool = True
    transients: bool = True
    cache: bool = True
    replay: bool = False


TRAIN = Mode()
RERUN = Mode(transients=False, replay=True)
EVAL = Mode(grad=False, transients=False, cache=False)


@dataclass(slots=True)
class Saved:
    """What a row's nodes keep for its backward: its main node's storages, its activation node's."""

    main: list = field(default_factory=list)
    activation: list = field(default_factory=list)


@dataclass
class ProgramSaved:
    """What a row run by its own program (Layer.program) keeps: its names alive after the forward, and the
    backward's events."""

    live: dict
    backward: tuple


class Frame:
    """The names a forward function binds (Graph.forward's, nn.Sequential's, a checkpointed region's), each
    holding its storage with one reference per reader still to run (`refs`: how many a name's output gets).

    `early`: nn.Sequential (a straight stack) drops a layer's input as soon as its first module returns;
    archcalc's Graph module (backends/modules.py) drops what a row read once the whole row has run. `dead`: an
    output no one reads, which Graph.forward's local `y` holds until the next row's op returns."""

    def __init__(self, tape: Tape, storage: dict[str, Allocation], refs: dict[str, int], early: bool = False):
        self.tape, self.storage, self.refs, self.early = tape, storage, refs, early
        self.dead: Allocation | None = None

    def inputs(self, row: Row) -> list[Allocation]:
        return [self.storage[n] for n in row.inputs]

    def drop_dead(self) -> None:
        self.tape.release(self.dead)
        self.dead = None

    def bind(self, name: str, out: Allocation) -> None:
        """The row's output gets its readers' references; the row's own variable goes (or becomes `dead`)."""
        out.refs += self.refs.get(name, 0)
        if out.refs == 1 and not self.early:
            self.dead = out  # read by no one: Graph.forward's `y` keeps it until the next row's op returns
        else:
            self.tape.release(out)  # the row's own variable
        self.storage[name] = out


def readers(rows, outputs=()) -> dict[str, int]:
    """How many rows read each name, and the loss (or the caller) each of `outputs` (rows: the model's outputs)."""
    count: dict[str, int] = {}
    for row in rows:
        for name in row.inputs:
            count[name] = count.get(name, 0) + 1
    for row in outputs:
        count[row.name] = count.get(row.name, 0) + 1
    return count


def is_chain(net: Network) -> bool:
    """A straight stack, which archcalc.torch builds as an nn.Sequential (backends/torch.py is_chain)."""
    if net.output_rows != (net.rows[-1],):
        return False
    previous = "input"
    for row in net.rows:
        if tuple(row.inputs) != (previous,) or "." in row.name:
            return False
        previous = row.name
    return True


@dataclass(slots=True)
class _Op:
    """One row's op while it runs: its inputs as the op reads them, its own tensors, what its nodes keep."""

    row: Row
    main: tuple  # the Kept its main node saves
    act: tuple  # the Kept its activation's node saves
    cast: Cast
    ins: list  # the inputs' storages
    op_ins: list  # the op's inputs: autocast's copies, a contiguous copy
    bytes_of: dict
    out_size: Pair
    own: dict
    copy: Allocation | None = None
    product: Allocation | None = None
    saved: Saved = field(default_factory=Saved)


class Pass:
    """A pass over a network's rows: the state its phases share, and the forward rule (see the module)."""

    def __init__(self, net: Network, batch: Value | None):
        self.net, self.rows, self.batch = net, net.rows, batch
        self.size = net.dtype.bytes
        self.cuda = str(net.device) == "cuda"
        self.bytes_of = {**storage_bytes(self.size, self.cuda), "bool": 1, "int8": 1, "int32": 4}  # int*: bitsandbytes' ops
        self.tape = Tape(batch, self.cuda)
        self.amp = MixedPrecision(net, self.tape, self.cuda)
        self.frame: Frame  # the model's names: set once the batch exists

    def view_row(self, row: Row, frame: Frame) -> None:
        """A view: the output shares its input's storage."""
        tape, s, refs = self.tape, frame.storage[row.inputs[0]], frame.refs.get(row.name, 0)
        s.refs += refs + 1
        frame.storage[row.name] = s
        frame.drop_dead()
        tape.release(s, 1)
        frame.dead = s if refs == 0 and not frame.early else None
        if frame.dead is None:
            tape.release(s)

    def op_row(self, row: Row, frame: Frame, mode: Mode, recorded: bool, before=None,
               ops: int = 2) -> tuple[Saved, Allocation | None]:
        """A row by the generic rule: its op, then its activation. `recorded`: autograd records its nodes.
        `before`: its input's layout where not contiguous (layers/layout.py). `ops`: a checkpoint's rerun stops
        before the op (0) or before the activation (1), the output then returned beside what the nodes keep."""
        op = self._start(row, frame, mode, recorded, before)
        if ops == 0:  # stopped at its last save, before its output exists: its inputs (and a mask made first) saved
            self.tape.mark()
            self._keep(op, {})
            for s in (*op.own.values(), *op.cast.inputs):
                self.tape.release(s)
            return op.saved, None
        first = self._run(op, frame, mode)
        if ops == 1:  # stopped after its op (an output saved) or at its activation's save of its input
            first.refs += len(op.act)
            op.saved.activation += [first] * len(op.act)
            return op.saved, first
        self._finish(op, frame, first)
        return op.saved, None

    def _start(self, row: Row, frame: Frame, mode: Mode, recorded: bool, before) -> _Op:
        """Before the op's output: autocast's copies, the op's own tensors, and in training its transients."""
        layer, tape = row.layer, self.tape
        keeps = layer.keeps(row.input, row.output, row.grad) if recorded else ()
        main, act = split_keeps(layer.activation, keeps)
        # autocast's copies of inputs and weights (a checkpointed region's nodes keep none: the checkpoint packs them)
        cast = self.amp.forward(row, recorded, cache=mode.cache, replay=mode.replay)
        ins = frame.inputs(row)
        bytes_of = cast.bytes_of or self.bytes_of
        # in eval, a parameter's output is a view of it (expanded over the batch, or as it is)
        viewed = not mode.grad and layer.is_parameter()
        out_size = tape.size(0, 0 if viewed else num.mul(row.output) * (cast.size or self.size))
        op = _Op(row, main, act, cast, ins, [c or s for c, s in zip(cast.inputs, ins)], bytes_of, out_size,
                 self._own(row, bytes_of, keeps if recorded else None) if mode.grad else {}, saved=Saved(list(cast.kept)))
        if mode.transients:
            self._transients(op, before)
        return op

    def _own(self, row: Row, bytes_of: dict, keeps: tuple | None) -> dict:
        """The op allocates its own tensors (mask, indices, statistics) whether or not autograd keeps them (measured:
        max pooling, dropout and batchnorm without a gradient): those kept by no node are freed when it returns.
        `keeps`: what its nodes keep, where recorded (what it keeps when every input needs a gradient, if they do)."""
        layer = row.layer
        grad = tuple(True for _ in row.inputs) if layer.merges else True
        every = keeps if keeps is not None and row.grad == grad else layer.keeps(row.input, row.output, grad)
        own = {_key(k): k for k in split_keeps(layer.activation, every)[0] if k.tensor == "own"}
        # and those its nodes keep only as recorded (a frozen attention's out_proj input, kept by LoRA's lora_A alone)
        own |= {_key(k): k for k in split_keeps(layer.activation, keeps or ())[0] if k.tensor == "own" and _key(k) not in own}
        return {key: self.tape.new(self.tape.size(*_kept_size(k, bytes_of)), "activations", mark=False)
                for key, k in own.items()}

    def _transients(self, op: _Op, before) -> None:
        """Scratch the op makes before its output; the contiguous copy of an input a layer cannot read as it is laid
        out (`before`; Layer.copies_input: nn.Linear, the norms; kept for backward in its place), and the product
        before an unfused bias: a non-contiguous [B, …, d], copied or folded as a view, goes through matmul, its bias
        added after."""
        layer, tape, row = op.row.layer, self.tape, op.row
        forward_scratch = layer.forward_scratch(row.input)
        if forward_scratch != 0:
            op.own["scratch"] = tape.new(tape.size(0, forward_scratch * self.size), "temporaries", mark=False)
        if layer.copies_input(row.shapes[0], before):
            op.copy = tape.new(tape.size(0, num.mul(row.shapes[0]) * self.size), "activations")
            op.op_ins = [op.copy, *op.op_ins[1:]]
        if before is not None and layer.contiguous_input and layer.unfused_bias() and len(row.input) > 1:
            op.product = tape.new(op.out_size, "temporaries", mark=False)

    def _run(self, op: _Op, frame: Frame, mode: Mode) -> Allocation:
        """The op: its output ("pre" when an activation follows), then what its node keeps; its transients go."""
        tape, row = self.tape, op.row
        first = tape.new(op.out_size, "activations")
        tape.release(op.product)
        if mode.transients:
            cudnn_workspace(tape, row, op.cast.size or self.size, "forward")
        frame.drop_dead()  # Graph.forward's local `y` held the last row's unread output until now
        self._keep(op, {"pre": first, "output": first})
        scratch = op.own.pop("scratch", None)
        for s in op.own.values():
            tape.release(s)
        update_scratch = row.layer.update_scratch(row.input) if mode.transients else 0
        if update_scratch != 0:  # InstanceNorm's running statistics' update, then its β's repeat goes
            tape.transient(tape.size(update_scratch * self.size, 0), "temporaries")
        # a copy autocast made for the op: gone when the op returns, unless its node keeps it
        for s in (scratch, op.copy, *op.cast.inputs):
            tape.release(s)
        self.amp.end_op()
        return first

    def _keep(self, op: _Op, named: dict) -> None:
        for k in op.main:
            s = op.own[_key(k)] if k.tensor == "own" else op.op_ins[k.arg] if k.tensor == "input" else named[k.tensor]
            s.refs += 1
            op.saved.main.append(s)

    def _finish(self, op: _Op, frame: Frame, first: Allocation) -> None:
        """The row's inputs dropped, its activation, its output bound to its name."""
        tape, row = self.tape, op.row
        if frame.early:
            for s in op.ins:
                tape.release(s)
        out = first
        if row.layer.activation:
            out = tape.new(op.cast.activation_size or op.out_size, "activations")
            named = {"pre": first, "output": out}
            for k in op.act:
                s = op.ins[k.arg] if k.tensor == "input" else named[k.tensor]
                s.refs += 1
                op.saved.activation.append(s)
            tape.release(first)
        if not frame.early:
            for s in op.ins:
                tape.release(s)
        frame.bind(row.name, out)


def _key(k: Kept) -> tuple:
    return (k.what, k.elements, k.dtype, k.per_sample)


def _kept_size(k: Kept, bytes_of: dict) -> Pair:
    nbytes = k.elements * bytes_of[k.dtype]
    return (0, nbytes) if k.per_sample else (nbytes, 0)
