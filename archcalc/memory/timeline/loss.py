"""The step's loss: which one (Loss, loss_of), and its part of the timeline (its targets, its forward, the start
of the backward).

- cross-entropy: log_softmax allocates its output (kept by two nodes), nll_loss a scalar loss and a scalar total
  weight (kept); the network's output is then dropped. Backward: log_softmax's gradient, then the output's.
- MSE (an output that is no class scores, see Loss): its result's storage is the output's size, and its node
  keeps the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core import num
from .tape import Allocation

if TYPE_CHECKING:
    from ...analysis.network import Network
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


def loss_of(report: Network) -> Loss:
    """The loss of `report`'s training step (see Loss); a language model (token ids in, [T, V] scores out) is
    trained on its own input, as Hugging Face's causal LM loss does it (labels = the ids, shifted by one)."""
    row = report.rows[-1]
    y = tuple(report.output)
    axis = row.layer.scores_axis(y) if y else 0
    scores = row.layer.gives_scores and row.layer.activation is None  # an activation's values are no logits
    if not y or not scores or (num.is_concrete(y[axis]) and y[axis] <= 1):
        return Loss("mse")
    if len(y) == 2 and axis == 1 and any(r.layer.token_ids is not None for r in report.rows):
        return Loss("causal_lm", 1)
    return Loss("cross_entropy", axis)


class LossStep:
    """A loss along a pass: its targets (alive before the step), its forward on the model's output `y` (after
    which the output is dropped), and its backward, which makes the output's gradient. `value`: the loss,
    alive to the end of the backward."""

    def __init__(self, step: Pass, loss: Loss):
        self.loss, self.tape, self.amp, self.size = loss, step.tape, step.amp, step.size
        self.output, self.name = step.rows[-1].output, step.rows[-1].name
        self.value: Allocation | None = None

    def per_sample(self, elements, width: int | None = None):
        return self.tape.size(0, elements * (self.size if width is None else width))

    def targets(self) -> None:
        raise NotImplementedError

    def forward(self, y: Allocation) -> None:
        raise NotImplementedError

    def backward(self, scaled: Allocation | None) -> Allocation:
        raise NotImplementedError


class MeanSquaredError(LossStep):
    def targets(self) -> None:  # a random target of the output's shape and dtype
        self.tape.new(self.per_sample(num.mul(self.output)), "batch", mark=False)

    def forward(self, y: Allocation) -> None:
        # mse_loss: its result's storage is the output's size (the squared errors, reduced in place), kept
        # by `loss` to the end of backward; MseLossBackward keeps the output (under autocast, mse_loss runs in
        # float32: a 16-bit output's float32 copy, kept instead)
        copy = self.amp.loss_input(self.output, self.name)
        self.kept = y if copy is None else copy
        if copy is None:
            y.refs += 1
        self.value = self.tape.new(self.per_sample(num.mul(self.output)), "temporaries")
        self.tape.release(y)

    def backward(self, scaled: Allocation | None) -> Allocation:
        tape = self.tape
        # with a GradScaler, the scaling's MulBackward hands mse_loss's node a gradient of its own (a float32 scalar)
        through = None if scaled is None else tape.new(tape.size(4, 0), "temporaries", mark=False)
        g_y = tape.new(self.per_sample(num.mul(self.output)), "activation gradients")
        tape.release(through)
        tape.release(self.kept)
        return self.amp.loss_gradient(g_y, self.output, self.name)  # the copy's backward: in the output's dtype


class CrossEntropy(LossStep):
    """Cross-entropy; a language model ([T] ids in, [T, V] logits out) is trained as Hugging Face's causal LM loss
    does it (loss_utils.ForCausalLMLoss, labels = the ids): the labels padded by one ignore_index and shifted, a
    contiguous copy that nll_loss keeps; no other targets."""

    def targets(self) -> None:
        if self.loss.kind != "causal_lm":  # int64 classes, one per position of the output but its classes' axis
            axis = self.loss.axis
            self.tape.new(self.per_sample(num.mul(self.output[:axis] + self.output[axis + 1:]), 8), "batch", mark=False)

    def forward(self, y: Allocation) -> None:
        tape, lm = self.tape, self.loss.kind == "causal_lm"
        copy = self.amp.loss_input(self.output, self.name)  # under autocast: in float32, on a float32 copy of the logits
        padded = tape.new(self.per_sample(self.output[0] + 1, 8), "temporaries") if lm else None
        self.shifted = tape.new(self.per_sample(self.output[0], 8), "temporaries") if lm else None
        self.logits = tape.new(self.per_sample(num.mul(self.output)), "activations", refs=2)
        self.value = tape.new(tape.size(self.size, 0), "temporaries", mark=False)
        self.total_weight = tape.new(tape.size(self.size, 0), "temporaries")
        tape.release(copy)
        tape.release(padded)
        tape.release(y)

    def backward(self, scaled: Allocation | None) -> Allocation:
        tape = self.tape
        g_logits = tape.new(self.per_sample(num.mul(self.output)), "activation gradients")
        tape.release(self.logits)
        tape.release(self.total_weight)
        tape.release(self.shifted)
        g_y = tape.new(self.per_sample(num.mul(self.output)), "activation gradients")
        tape.release(g_logits)
        tape.release(self.logits)
        return self.amp.loss_gradient(g_y, self.output, self.name)  # the copy's backward: in the logits' dtype


def loss_step(step: Pass, loss: Loss) -> LossStep:
    return (MeanSquaredError if loss.kind == "mse" else CrossEntropy)(step, loss)
