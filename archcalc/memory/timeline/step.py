"""A training step as one object: the state its phases share, and a method per phase.

    Step(network, batch).run() -> Timeline

The phases, in order: `before` (what is alive when the step starts), `forward` (`forward_row` per row, then the
loss's forward), `backward` (the loss's, then `backward_row` per row in reverse), `optimize`. Each policy is an
attribute the phases ask: `trained` (which parameters get gradients and optimizer state), `optimizer` (its state
and its step), `loss` (its targets, forward and backward), `checkpoints` (what is recomputed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...analysis.checkpoint import records_node
from ...core import num
from ...layers import layout
from ...layers.decoding import Frames
from .backward import Backward, Gradients
from .cuda import replayed, workspaces
from .forward import TRAIN, Frame, ProgramSaved, Saved, is_chain, readers
from .inference import Inference
from .loss import loss_step
from .optimizer import Foreach, optimizer_for
from .parameters import Trained, param_bytes, reaching
from .peaks import PHASES, Timeline
from .program import Interpreter
from .rerun import Checkpoints, Rerun

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from ...core.num import Value
    from ...layers.events import Program
    from .tape import Allocation


class Step(Backward, Rerun):
    """One training step of a network at a batch (the package's docstring says which step): the forward rule of
    every Pass, the backward rule (Backward), a checkpoint's rerun (Rerun), and the phases, which the methods here
    run in order."""

    def __init__(self, net: Network, batch: Value | None, inplace_sums: bool = True, *, trained: Trained | None = None,
                 optimizer: Foreach | None = None, loss_inside: bool = False):
        super().__init__(net, batch)
        self.inplace = inplace_sums  # False: gradients that meet are summed out of place (see Gradients)
        self.reach = reaching(net)  # the names whose value leads to the loss
        # the policies: which parameters train (fine-tuning: frozen layers, adapters), the optimizer (sharded state)
        self.trained = trained or Trained(self.reach)
        self.optimizer = optimizer or optimizer_for(net.optimizer, self.cuda)
        self.loss = loss_step(self, loss_inside)  # one output's, or several outputs' summed
        self.checkpoints = Checkpoints(net)  # activation checkpointing (archcalc/analysis/checkpoint.py)
        self.params: list = []  # the sizes of the trained parameter tensors
        self.strides: dict[str, object] = {}  # a tensor's name -> its layout where not contiguous (layers/layout.py)
        self.held: list[Allocation] = []  # held by the model's body until the output layer runs (events.Hold)
        # a transformers body (GPT2Model's, LlamaModel's) holds its token embeddings (inputs_embeds) until it returns,
        # and, fine-tuned, its decoder layers' Python variables past their last reader (layers/decoding.py's Frames,
        # as generation runs them): frozen layers keep nothing of what those variables hold. Trained in full, nodes keep
        # them, and Frames (which reads the blocks) is left out: a spec's folding into blocks changes no figure
        self.body = any(row.layer.transformers_body for row in self.rows)
        tuned = self.body and any(row.layer.frozen for row in self.rows)
        self.frames = Frames.of(self.rows, net.uses) if tuned else Frames()
        self.kept: dict[int, Saved | ProgramSaved] = {}  # per row index: what its nodes keep for backward
        self.grads = Gradients(self.tape, inplace_sums)  # each tensor's gradient buffer
        # layers whose weight's gradient a tying layer (GPT-2's lm_head) already made -> that gradient's storage
        self.tied: dict[str, Allocation | None] = {}
        self.batchless = {row.name for row in self.rows if row.layer.batchless()}  # outputs without a batch axis in torch
        self.recomputed: dict[int, Saved] = {}  # per row index: what its nodes keep after a checkpoint's rerun
        self.rerun_regions: set[int] = set()  # the regions already rerun, by their first row

    def run(self) -> Timeline:
        self.before()
        self.forward()
        self.backward()
        self.optimize()
        phases = replayed(self.tape, {phase: self.tape.peak(phase) for phase in PHASES})
        return Timeline(phases, Inference(self.net, self.batch).run())

    def before(self) -> None:
        """Alive before the step: parameters, buffers, optimizer state, the batch and its targets."""
        tape, size = self.tape, self.size
        self.params = self.parameters()
        for row in self.rows:
            buffers = row.layer.buffer_bytes(row.input, size)
            if buffers != 0:
                tape.new(tape.size(buffers - 8, 0), "buffers", mark=False)  # running mean and variance
                tape.new(tape.size(8, 0), "buffers", mark=False)  # num_batches_tracked, int64
        self.optimizer.state(tape, self.params)
        if self.cuda:
            workspaces(tape)
        self.amp.scaler_state(self.net)
        ids = any(row.layer.token_ids is not None for row in self.rows)  # the batch is int64 token ids
        x = tape.new(tape.size(0, num.mul(self.net.input) * (8 if ids else size)), "batch", mark=False)
        self.loss.targets()
        tape.start("forward")
        count = readers(self.rows, self.net.output_rows)  # the loss reads each output
        x.refs += count.get("input", 0)  # the batch stays alive anyway (the caller holds it)
        self.frame = Frame(tape, {"input": x}, count, is_chain(self.net))

    def parameters(self) -> list:
        """The parameters' storages, alive before the step; returns the sizes of the trained tensors (their gradients and
        optimizer state). One process holds every tensor whole (a rank of a sharded layout its shards: ranks.py)."""
        tape, size = self.tape, self.size
        for row in self.rows:
            for nbytes in param_bytes(row, size):
                tape.new(tape.size(nbytes, 0), "parameters", mark=False)
        return [tape.size(nbytes, 0) for row in self.rows for nbytes in self.trained.sizes(row, size)]

    # Where a layout's collectives go (ranks.py); one process has none.
    def forward_ends(self) -> None:
        """After the loss's forward (a loss the model computes itself is inside its forward)."""

    def backward_starts(self) -> None:
        """The backward's first moment: its ones made, the loss's node not yet run."""

    def backward_ends(self) -> None:
        """Every row's node has run (autograd's final callbacks); the loss and its ones are still held."""

    def forward(self) -> None:
        """The rows, then the loss; the autocast context ends with it."""
        for row in self.rows:
            if row is self.rows[-1]:
                for s in self.held:
                    self.tape.release(s)
            if row is self.net.output_rows[0]:
                self.loss.before_output(self.frame.storage, row)
            self.region_edge(row.index - 1)
            self.variables(self.frames.before.get(row.index, ()))
            self.kept[row.index] = self.forward_row(row)
            self.variables(self.frames.after.get(row.index, ()))
            if self.body and row.layer.token_ids is not None:
                self.frame.storage[row.name].refs += 1
                self.held.append(self.frame.storage[row.name])
            for name in self.frames.release.get(row.index, ()):
                self.tape.release(self.frame.storage[name])
        self.frame.drop_dead()  # rows after the one output: the last one's unread result goes as forward returns
        self.loss.forward(self.frame.storage)
        self.forward_ends()
        self.amp.exit()  # the autocast context ends: its cached weight copies go, but those a node keeps

    def variables(self, names) -> None:
        """The Python variables `names` now reference their tensors (Frames)."""
        for name in names:
            self.frame.storage[name].refs += 1

    def forward_row(self, row: Row) -> Saved | ProgramSaved:
        """One row in training: a view, the layer's own program, or the generic rule (forward.py)."""
        view, before = self._layout(row)
        if view:
            self.view_row(row, self.frame)
            self.amp.view(row)
            return Saved()
        # a checkpointed region's rows keep nothing in forward (the checkpoint packs their inputs instead)
        outside = row.index - 1 not in self.checkpoints.of
        program = self.amp.program(row, self.inplace) if row.name in self.reach and outside else None
        if program is not None:  # the layer's own ops, one by one (under autocast each in its dtype)
            return self._program_row(row, program)
        recorded = records_node(row) and row.name in self.reach and outside
        return self.op_row(row, self.frame, TRAIN, recorded, before)[0]

    def _layout(self, row: Row) -> tuple[bool, object]:
        """(whether the row is a view, its input's layout: None where contiguous), its output's layout noted
        (layers/layout.py): a reshape of a permuted tensor copies, and a layer that needs a contiguous input
        (nn.Linear, the norms) copies a permuted one and keeps the copy."""
        layer, name = row.layer, row.name
        before, view = self.strides.get(row.inputs[0]), layer.is_view()
        after = layer.view(row.input, row.output, before) if view else None
        if after == layout.COPY:
            view, after = False, None
        if after is not None:
            self.strides[name] = after
        elif before is not None and layer.keeps_layout:
            self.strides[name] = before
        elif layer.output_layout(row.input) is not None:
            self.strides[name] = layer.output_layout(row.input)
        return view, before

    def _program_row(self, row: Row, program: Program) -> ProgramSaved:
        frame = self.frame
        ins = frame.inputs(row)
        run = Interpreter(self.tape, self.bytes_of, "activations", x=ins[0], dead=frame.dead, held=self.held,
                          cache=self.amp.cached, others={f"x{i}": s for i, s in enumerate(ins[1:], start=1)})
        live = run.run(program.forward, {})
        frame.dead = None
        out = live.pop("out")
        for s in ins:
            self.tape.release(s)
        frame.bind(row.name, out)
        if not records_node(row):  # no node holds what the program left alive (a frozen norm's γ factor): it goes now
            for s in live.values():
                self.tape.release(s)
            return ProgramSaved({}, ())
        return ProgramSaved(live, program.backward)

    def backward(self) -> None:
        """The loss's backward, then the rows' in reverse; the gradients left in buffers go at its end."""
        tape = self.tape
        tape.start("backward")
        scaled = self.amp.scale()
        ones = tape.new(tape.size(self.loss.width, 0), "temporaries")
        self.backward_starts()
        self.loss.backward(scaled, self.grads)
        for row in reversed(self.rows):
            self.backward_row(row)
        self.backward_ends()
        for s in (ones, scaled, self.loss.value):
            tape.release(s)
        self.grads.release()

    def optimize(self) -> None:
        """optimizer.step(), after a GradScaler's unscale_ under 16-mixed."""
        self.tape.start("optimizer")
        found_inf = self.amp.unscale()
        self.optimizer.step(self.tape, self.params)
        self.tape.release(found_inf)


def simulate(report: Network, batch: Value | None = None, inplace_sums: bool = True, *, foreach: bool = True,
             loss_inside: bool = False) -> Timeline:
    """The timeline of one training step of `report`'s network (see the package's docstring).

    `inplace_sums=False`: gradients that meet are always summed into a new tensor, as torch does while a
    TorchDispatchMode is active, which is how the CPU oracle sees them (see Gradients). `foreach=False`: Adam and
    AdamW as torch's for-loop implementation (its default for CPU parameters); `loss_inside`: a language model's
    loss computed by the model, as Hugging Face's Trainer runs it (`model(input_ids=ids, labels=ids).loss`). One
    process: under a parallel layout the package's `simulate` (ranks.py) runs each rank's step."""
    optimizer = optimizer_for(report.optimizer, str(report.device) == "cuda", foreach)
    return Step(report, batch, inplace_sums, optimizer=optimizer, loss_inside=loss_inside).run()
