"""The step's loss: which one (Loss, loss_of), and its part of the timeline (its targets, its forward, the start
of the backward).

- cross-entropy: log_softmax allocates its output (kept by two nodes), nll_loss a scalar loss and a scalar total
  weight (kept); the network's output is then dropped. Backward: log_softmax's gradient, then the output's.
- MSE (an output that is no class scores, see Loss): its result's storage is the output's size, and its node
  keeps the output.
- several outputs ([model] outputs): each one's loss in turn, summed (Losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core import num
from ...core.errors import SpecError
from .tape import Allocation

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from .backward import Gradients
    from .forward import Pass


@dataclass(frozen=True)
class Loss:
    """The step's loss (what `bench` computes and the timeline simulates), from the network's last layer:
    cross-entropy against random int64 classes where its output can be class scores (no element-wise
    function ends it and it has more than one feature), over the output's `axis`: the channels (per pixel
    for [C, H, W]), the last axis per token for [T, V] (`cross_entropy(y.flatten(0, -2), t.flatten())`);
    otherwise the mean squared error against a random target of the output's shape (DCGAN's image)."""

    kind: str  # "cross_entropy", "causal_lm" or "mse"
    axis: int = 0  # the classes' axis of one sample's output


def loss_of(report: Network, row: Row | None = None) -> Loss:
    """The loss of `report`'s training step (see Loss), of its output (of `row`'s, one of several); a language model
    (token ids in, [T, V] scores out) is trained on its own input, as Hugging Face's causal LM loss does it (labels =
    the ids, shifted by one)."""
    row = report.output_rows[0] if row is None else row
    y = tuple(row.output)
    axis = row.layer.scores_axis(y) if y else 0
    scores = row.layer.gives_scores and row.layer.activation is None  # an activation's values are no logits
    if not y or not scores or (num.is_concrete(y[axis]) and y[axis] <= 1):
        return Loss("mse")
    if len(y) == 2 and axis == 1 and any(r.layer.token_ids is not None for r in report.rows):
        return Loss("causal_lm", 1)
    return Loss("cross_entropy", axis)


class LossStep:
    """A loss along a pass: its targets (alive before the step), its forward on the model's output (after which the
    output is dropped), and its backward, which hands the output's gradient to its buffer. `value`: the loss, alive
    to the end of the backward; `width`: bytes of its dtype (the backward's ones scalar's)."""

    def __init__(self, step: Pass, loss: Loss, row: Row | None = None):
        row = step.net.output_rows[0] if row is None else row  # the one output, wherever it lies
        self.loss, self.tape, self.amp, self.size, self.batch = loss, step.tape, step.amp, step.size, step.batch
        self.output, self.name = row.output, row.name
        self.value: Allocation | None = None
        self.width = self.size

    def per_sample(self, elements, width: int | None = None):
        return self.tape.size(0, elements * (self.size if width is None else width))

    def targets(self) -> None:
        raise NotImplementedError

    def before_output(self, storage: dict[str, Allocation], row: Row) -> None:
        """Before the last row runs (`storage`: the model's names): what a loss computed inside the model holds."""

    def forward(self, storage: dict[str, Allocation]) -> None:
        """The loss of the output (`storage`: the model's names), after which the output is dropped."""
        raise NotImplementedError

    def backward(self, scaled: Allocation | None, grads: Gradients) -> None:
        """The loss's backward: the output's gradient into its buffer."""
        raise NotImplementedError


class MeanSquaredError(LossStep):
    def targets(self) -> None:  # a random target of the output's shape and dtype
        self.tape.new(self.per_sample(num.mul(self.output)), "batch", mark=False)

    def forward(self, storage: dict[str, Allocation]) -> None:
        # mse_loss: its result's storage is the output's size (the squared errors, reduced in place), kept
        # by `loss` to the end of backward; MseLossBackward keeps the output (under autocast, mse_loss runs in
        # float32: a 16-bit output's float32 copy, kept instead)
        y = storage[self.name]
        copy = self.amp.loss_input(self.output, self.name)
        self.kept = y if copy is None else copy
        if copy is None:
            y.refs += 1
        self.value = self.tape.new(self.per_sample(num.mul(self.output)), "temporaries")
        self.tape.release(y)

    def backward(self, scaled: Allocation | None, grads: Gradients) -> None:
        tape = self.tape
        # with a GradScaler, the scaling's MulBackward hands mse_loss's node a gradient of its own (a float32 scalar)
        through = None if scaled is None else tape.new(tape.size(4, 0), "temporaries", mark=False)
        g_y = tape.new(self.per_sample(num.mul(self.output)), "activation gradients")
        tape.release(through)
        tape.release(self.kept)
        grads.buffers[self.name] = (self.amp.loss_gradient(g_y, self.output, self.name), False)  # in the output's dtype


class CrossEntropy(LossStep):
    """Cross-entropy; a language model ([T] ids in, [T, V] logits out) is trained as Hugging Face's causal LM loss
    does it (loss_utils.ForCausalLMLoss, labels = the ids): the labels padded by one ignore_index and shifted, a
    contiguous copy that nll_loss keeps (for one sample the shifted slice is contiguous already: a view); no other
    targets. It upcasts 16-bit logits itself (logits.float()): the loss is float32 from there on."""

    def targets(self) -> None:
        if self.loss.kind != "causal_lm":  # int64 classes, one per position of the output but its classes' axis
            axis = self.loss.axis
            self.tape.new(self.per_sample(num.mul(self.output[:axis] + self.output[axis + 1:]), 8), "batch", mark=False)

    def forward(self, storage: dict[str, Allocation]) -> None:
        tape, lm, y = self.tape, self.loss.kind == "causal_lm", storage[self.name]
        copy = self.amp.loss_input(self.output, self.name)  # under autocast: in float32, on a float32 copy of the logits
        self.upcast = lm and copy is None and self.size < 4
        if self.upcast:  # the 16-bit logits go with it (the loss's argument, rebound: nothing else holds them)
            copy = tape.new(self.per_sample(num.mul(self.output), 4), "temporaries")
            tape.release(y)
            y = None
        self.width = 4 if self.upcast else self.size
        padded = tape.new(self.per_sample(self.output[0] + 1, 8), "temporaries") if lm else None
        one = self.batch == 1  # labels[..., 1:].contiguous(): one sample's slice is contiguous, no copy
        self.shifted = tape.new(self.per_sample(self.output[0], 8), "temporaries") if lm and not one else None
        self.logits = tape.new(self.per_sample(num.mul(self.output), self.width), "activations", refs=2)
        self.value = tape.new(tape.size(self.width, 0), "temporaries", mark=False)
        self.total_weight = tape.new(tape.size(self.width, 0), "temporaries")
        tape.release(copy)
        tape.release(padded)
        tape.release(y)

    def backward(self, scaled: Allocation | None, grads: Gradients) -> None:
        tape, elements = self.tape, num.mul(self.output)
        g_logits = tape.new(self.per_sample(elements, self.width), "activation gradients")
        tape.release(self.logits)
        tape.release(self.total_weight)
        tape.release(self.shifted)
        g_y = tape.new(self.per_sample(elements, self.width), "activation gradients")
        tape.release(g_logits)
        tape.release(self.logits)
        g_y = self.amp.loss_gradient(g_y, self.output, self.name)  # the copy's backward: in the logits' dtype
        if self.upcast:  # logits.float()'s ToCopyBackward
            g_low = tape.new(self.per_sample(elements), "activation gradients")
            tape.release(g_y)
            g_y = g_low
        grads.buffers[self.name] = (g_y, False)


class CausalLMInside(CrossEntropy):
    """Hugging Face's causal LM loss computed inside the model, `model(input_ids=ids, labels=ids).loss` (what its
    Trainer runs), rather than bench's loss of the returned logits: the model's forward holds its last hidden state
    (the output layer's input: `hidden_states`) and the logits as the output layer made them (`logits`) until it
    returns, after the loss. Where the output layer keeps its input (its weight trains) and the logits are float32
    the two are the same; a frozen output layer and 16-bit logits (a 16-bit base, fine-tuning) differ."""

    def before_output(self, storage: dict[str, Allocation], row: Row) -> None:
        self.hidden = storage[row.inputs[0]]
        self.hidden.refs += 1

    def forward(self, storage: dict[str, Allocation]) -> None:
        logits = storage[self.name]
        logits.refs += 1  # the model's `logits`, until it returns
        super().forward(storage)
        self.tape.release(logits)
        self.tape.release(self.hidden)


class Losses(LossStep):
    """Several outputs ([model] outputs, returned as a dict), trained on the sum of their losses as bench computes it
    (backends/bench.py summed_losses): each output's loss in turn (cross-entropy or MSE, as loss_of says for its
    layer), the losses added one by one (each partial sum a scalar, the one before it freed), then the outputs go
    (but what a loss's node keeps) and the losses themselves. Backward: the sum hands its gradient to every loss,
    whose backward runs the last made first. In the model's dtype, without autocast (refused otherwise)."""

    def __init__(self, step: Pass, loss: Loss):
        super().__init__(step, loss)
        net = step.net
        self.parts = [(row, loss_of(net, row)) for row in net.output_rows]
        if net.autocast is not None or any(fn.kind == "causal_lm" for _, fn in self.parts):
            raise SpecError("the training step of several outputs is modelled in the model's dtype, with cross-entropy "
                            "or MSE losses", "without autocast; or one output", "outputs", where="[model]", path=net.path)
        self.made: list = []

    def targets(self) -> None:
        for row, fn in self.parts:
            out = row.output
            if fn.kind == "mse":  # a random target of the output's shape and dtype
                self.tape.new(self.per_sample(num.mul(out)), "batch", mark=False)
            else:  # int64 classes, one per position of the output but its classes' axis
                self.tape.new(self.per_sample(num.mul(out[:fn.axis] + out[fn.axis + 1:]), 8), "batch", mark=False)

    def forward(self, storage: dict[str, Allocation]) -> None:
        tape = self.tape
        for row, fn in self.parts:
            elements = num.mul(row.output)
            if fn.kind == "mse":  # its result's storage is the output's size; its node keeps the output
                y = storage[row.name]
                y.refs += 1
                self.made.append((row, fn, y, tape.new(self.per_sample(elements), "temporaries"), None))
            else:  # log_softmax's output (kept by two nodes), nll_loss's scalar and total weight
                logits = tape.new(self.per_sample(elements), "activations", refs=2)
                loss = tape.new(tape.size(self.size, 0), "temporaries", mark=False)
                self.made.append((row, fn, logits, loss, tape.new(tape.size(self.size, 0), "temporaries")))
        total = self.made[0][3]
        total.refs += 1
        for _ in self.made[1:]:
            added = tape.new(tape.size(self.size, 0), "temporaries")
            tape.release(total)
            total = added
        for row, _ in self.parts:
            tape.release(storage[row.name])
        for entry in self.made:
            tape.release(entry[3])
        self.value = total

    def backward(self, scaled: Allocation | None, grads: Gradients) -> None:
        tape = self.tape
        for row, fn, kept, _, weight in reversed(self.made):
            out = self.per_sample(num.mul(row.output))
            if fn.kind == "mse":
                g_y = tape.new(out, "activation gradients")
                tape.release(kept)
            else:
                g_logits = tape.new(out, "activation gradients")
                tape.release(kept)
                tape.release(weight)
                g_y = tape.new(out, "activation gradients")
                tape.release(g_logits)
                tape.release(kept)
            grads.add(row.name, g_y, False)
            tape.release(g_y)


def loss_step(step: Pass, inside: bool = False) -> LossStep:
    """The step's loss policy: one output's loss, or the sum of several outputs' (Losses); `inside`: a language
    model's causal LM loss computed by the model itself (CausalLMInside: Hugging Face's `model(ids, labels=ids)`)."""
    net = step.net
    if len(net.output_rows) > 1:
        return Losses(step, loss_of(net))
    loss = loss_of(net)
    if inside and loss.kind == "causal_lm":
        return CausalLMInside(step, loss)
    return (MeanSquaredError if loss.kind == "mse" else CrossEntropy)(step, loss)
