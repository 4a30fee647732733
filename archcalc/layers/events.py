"""A layer's step as memory events: what a kind with its own ops (Layer.program) allocates and frees, op by op.

Most kinds need none: the memory timeline (archcalc/memory/timeline/) runs their op by one generic rule from
what they keep (Layer.keeps). A kind whose ops make tensors that rule does not know (attention's heads, a norm
written as separate ops, GPT-2's gelu_new) describes its forward and its backward as a Program of these events,
measured against torch with a TorchDispatchMode (tests/oracle/timeline_probe.py). The timeline's interpreter
(archcalc/memory/timeline/program.py) runs them; the kinds only construct them.

Names are the program's own, but for these: "x" is the row's input ("x1", "x2"... a merging layer's others, bound
by KeepInput), "g" (backward) the gradient of its output, "out" (forward) its output, which the program must make;
a tensor named "gx" still alive when the backward ends is the (first) input's gradient, handed to its buffer then.
A program's names live from one event to a Drop: what the forward leaves alive (but "out") is what its nodes keep
for the backward, which starts with it.

A storage is one of layers.base.Storage's names ("model", "int64", "float32", "mask", "opmath", "param") or, in a
program written for autocast, a dtype's name ("bfloat16", "float32"...).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.num import Dim


@dataclass(frozen=True)
class New:
    """A new tensor `name` of `elements` elements stored as `storage`, per sample (its bytes grow with the batch)
    unless `per_sample` is False. A name that starts with "grad." is a parameter's gradient."""

    name: str
    elements: Dim
    storage: str = "model"
    per_sample: bool = True


@dataclass(frozen=True, init=False)
class Drop:
    """The program drops its reference to each of `names`: a tensor is freed when nothing else holds it."""

    names: tuple[str, ...]

    def __init__(self, *names: str):
        object.__setattr__(self, "names", names)


@dataclass(frozen=True)
class KeepInput:
    """Autograd keeps one of the row's inputs for the backward: the program holds one more reference to it, by its
    `name`: "x" the row's (first) input, "x1", "x2"... a merging layer's others by position (the rotary tables an
    attention layer reads beside its tokens)."""

    name: str = "x"


@dataclass(frozen=True)
class Convert:
    """`source.to(new)` for a tensor stored as `old`: the source itself, one more reference, where both storages
    are as wide; else a new tensor `name` as New makes it. A source the program has not named is the input."""

    name: str
    source: str
    elements: Dim
    old: str
    new: str
    per_sample: bool = True


@dataclass(frozen=True)
class CastWeight:
    """Under autocast, its copy of a weight of `elements` elements in `dtype`: in autocast's cache until the
    context exits (after the loss), and the program's as `name` until it drops it."""

    name: str
    elements: Dim
    dtype: str


@dataclass(frozen=True)
class When:
    """`event` only where the model's dtype is narrower than float32 (`low`: bfloat16, float16), or only where it
    is not (RMSNorm computes in float32 at least: a 16-bit input is converted, a float32 one is not)."""

    event: Event
    low: bool


@dataclass(frozen=True)
class HandGradient:
    """Backward: the tensor `name` is a gradient of the input, added to the input's gradient buffer now
    (InputBuffer::accumulate); the program keeps its own reference until it drops it."""

    name: str


@dataclass(frozen=True)
class Hold:
    """The model's body holds `name` until it returns, which the timeline takes as just before the last row runs
    (GPT-2's position embeddings: a local of the transformer's forward)."""

    name: str


Event = New | Drop | KeepInput | Convert | CastWeight | When | HandGradient | Hold


@dataclass(frozen=True)
class Program:
    """A row's forward and backward, event by event (see the module's docstring)."""

    forward: tuple[Event, ...]
    backward: tuple[Event, ...]
