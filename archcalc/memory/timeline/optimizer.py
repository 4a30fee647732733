"""The optimizer: its state (alive before the step) and its phase, torch.optim's foreach implementation.

Foreach SGD (with or without momentum) adds in place: no temporaries. Adam and AdamW hold one list of
temporaries the size of every gradient at a time (`_foreach_mul(grads, 1 - beta2)`, then
`_foreach_sqrt(exp_avg_sqs)`); on the CPU the step counters are float32 scalars in the state and
`torch.tensor(1.0)` is allocated to increment them. Each is a policy of the step: a sharded optimizer
(ZeRO) or one for a few trained tensors (LoRA) is another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core.dtypes import Optimizer

if TYPE_CHECKING:
    from .peaks import Pair
    from .tape import Tape


class Foreach:
    """An optimizer's part of the step: its state, made before the step, and its step, the optimizer phase. As
    torch.optim's foreach SGD (`states` 0) and SGD with momentum (1: a momentum buffer per parameter) do it."""

    def __init__(self, optimizer: Optimizer, cuda: bool):
        self.states, self.cuda = optimizer.states, cuda

    def state(self, tape: Tape, params: list[Pair]) -> None:
        """The state kept per trained parameter tensor (`params`: their sizes), made before the step."""
        for p in params:
            for _ in range(self.states):
                tape.new(p, "optimizer state", mark=False)

    def step(self, tape: Tape, params: list[Pair]) -> None:
        """optimizer.step(): in place."""


class ForeachAdam(Foreach):
    """Adam and AdamW: two moments per parameter, a step counter per parameter on the CPU."""

    def state(self, tape: Tape, params: list[Pair]) -> None:
        for p in params:
            for _ in range(self.states):
                tape.new(p, "optimizer state", mark=False)
            if not self.cuda:  # Adam's step counter: a float32 scalar on the CPU (on CUDA it is on the CPU too)
                tape.new(tape.size(4, 0), "optimizer state", mark=False)

    def step(self, tape: Tape, params: list[Pair]) -> None:
        if not params:  # a ZeRO rank that owns no tensor: torch's _multi_tensor_adam returns at once
            return
        if not self.cuda:
            tape.transient(tape.size(4, 0), "temporaries")  # torch.tensor(1.0): the step counters' increment
        temporaries = [tape.new(p, "temporaries", mark=False) for p in params]
        tape.mark()
        for t in temporaries:
            tape.release(t)


class ForLoopAdam(ForeachAdam):
    """Adam and AdamW as torch.optim's for-loop implementation runs them (foreach=False: torch's default for
    parameters on the CPU): one parameter at a time, in place, but `denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt)
    .add_(eps)`: the square root and the quotient (new tensors of the parameter's size), the square root freed, the
    previous parameter's denom freed only once the new one is bound. The step counters are incremented in place."""

    def step(self, tape: Tape, params: list[Pair]) -> None:
        previous = None
        for p in params:
            root = tape.new(p, "temporaries")
            denom = tape.new(p, "temporaries")
            tape.release(root)
            tape.release(previous)
            previous = denom
        tape.release(previous)


def optimizer_for(optimizer: Optimizer, cuda: bool, foreach: bool = True) -> Foreach:
    """The optimizer's policy: torch's foreach implementation (its default on CUDA), or its for-loop one (`foreach`
    False: its default on the CPU; SGD's makes no temporaries either way)."""
    if optimizer.states == 2:
        return (ForeachAdam if foreach else ForLoopAdam)(optimizer, cuda)
    return Foreach(optimizer, cuda)
