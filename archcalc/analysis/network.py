"""A spec's network, analysed: one frozen Row per layer (shapes, parameters, MACs), and totals computed from the rows.

What the memory model reads (archcalc/memory/) and what archcalc.report.Report extends with memory and JSON."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property

from ..core import num, untrusted
from ..core.dtypes import Device, DType, Optimizer
from ..core.num import Dim, Shape, Value
from ..core.parallel import Layout
from ..layers import Layer
from ..layers.receptive_field import Field
from ..spec.finetune import Finetune
from ..spec.graph import Use
from . import receptive

QUANTITIES = ("weights", "biases", "params", "macs", "flops", "training_flops")


@dataclass(frozen=True)
class Row:
    index: int  # counted from 1, as in the spec: the report's rows[index - 1]
    layer: Layer
    input: Shape
    output: Shape
    weights: Dim
    biases: Dim
    macs: Dim
    inputs: tuple[str, ...]  # the full names of the tensors it reads, never none ("input": the model's input)
    requires_grad: bool = False  # whether the input needs a gradient: some layer upstream has parameters
    grads: tuple[bool, ...] = ()  # per input, whether it requires grad
    backward: bool = True  # whether the backward pass runs through it: its output feeds the model's output
    recomputed: bool = False  # its layer's op runs again in backward (activation checkpointing, archcalc/analysis/checkpoint.py)

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The shape of each input (a merge layer's `input` is already this tuple)."""
        return self.input if self.layer.merges else (self.input,)

    @property
    def grad(self):
        """What `Layer.keeps` and `backward_macs` take: one flag, or one per input for a merge layer."""
        return self.grads if self.layer.merges else self.requires_grad

    def __post_init__(self):  # the one place a row's numbers are made normal: no sympy number gets past it
        if not self.inputs:  # the one input-name rule: the engine names what every row reads (the previous row's output)
            raise ValueError(f"row {self.index} ({self.layer.name}) names no input: give Row(inputs=...)")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        for field in ("input", "output"):
            object.__setattr__(self, field, num.shape(getattr(self, field)))
        for field in ("weights", "biases", "macs"):
            object.__setattr__(self, field, num.normal(getattr(self, field)))

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def params(self) -> Dim:
        return num.normal(self.weights + self.biases)

    @property
    def flops(self) -> Dim:
        """Forward FLOPs as torch's FlopCounterMode counts them: 2 per multiply-accumulate."""
        return num.normal(2 * self.macs)

    @property
    def trainable_params(self) -> Dim:
        """The parameters that get a gradient: all of them, but a frozen layer's own (fine-tuning: LoRA's adapters)."""
        return num.normal(self.params if self.layer.tuning is None else self.layer.trained_params(self.input))

    @cached_property  # the backward pass's formula is worked out from the layer's windows: once per row
    def training_flops(self) -> Dim:
        """Forward and backward FLOPs, as FlopCounterMode counts a training step (a recomputed forward included)."""
        recorded = any(self.grads if self.layer.merges else (self.requires_grad,)) or self.trainable_params != 0
        backward = self.layer.backward_macs(self.input, self.grad) if self.backward and recorded else 0
        return num.normal(2 * (self.macs + backward) + self.recompute_flops)

    @property
    def recompute_flops(self) -> Dim:
        """The forward FLOPs run again in backward when the row is in a checkpointed region that reruns it."""
        return self.flops if self.recomputed and self.backward else 0

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "type": self.kind,
            "inputs": list(self.inputs),
            "input": [[num.to_json(d) for d in x] for x in self.input] if self.layer.merges else [num.to_json(d) for d in self.input],
            "output": [num.to_json(d) for d in self.output],
        }
        return out | {q: num.to_json(getattr(self, q)) for q in QUANTITIES}


@dataclass(frozen=True)
class Network:
    model: str
    input: Shape
    rows: tuple[Row, ...]
    dtype: DType = DType.float32
    batch: Dim | None = None  # None: the batch size stays the symbol B
    values: tuple[tuple[str, Value], ...] = ()  # the names that were known: [vars] and given values
    path: str | None = None
    optimizer: Optimizer = Optimizer.sgd
    device: Device = Device.cpu
    uses: tuple[Use, ...] = ()  # the block uses, in order of their end (inner before outer)
    course: bool = False  # show the course's memory formula (its own specs, or --course)
    autocast: DType | None = None  # mixed precision: the step under torch.autocast in this dtype (parameters: dtype)
    names: tuple[tuple[str, str], ...] = ()  # the spec's [names]: torch's module path of a layer path (build names modules so)
    outputs: tuple[str, ...] = ()  # the layers whose outputs the model returns ([model] outputs; () or one: the last)
    finetune: Finetune | None = None  # what trains, as [finetune] and the flags asked (archcalc/analysis/finetune.py)
    parallel: Layout | None = None  # the step spread over GPUs (core/parallel.py); None: one process

    @cached_property
    def fields(self) -> tuple[Field | None, ...]:
        """Each row's receptive field and jump, over the worst path (receptive.py)."""
        return receptive.fields(self)

    @cached_property
    def totals(self) -> dict[str, Dim]:
        """The sums of QUANTITIES over the rows, and `trainable_params` (fine-tuning: what gets a gradient)."""
        totals = {q: num.add(getattr(row, q) for row in self.rows) for q in QUANTITIES}
        return totals | {"trainable_params": num.add(row.trainable_params for row in self.rows)}

    def percent(self, params: Dim) -> Value:
        """`params` in % of all parameters, exactly: a Fraction, or a formula (0 when there are no parameters)."""
        total = self.totals["params"]
        return 0 if total == 0 else num.div(100 * params, total)

    def share(self, params: Dim) -> float | None:
        """`params` in % of all parameters when both are numbers (`percent`, as a float), else None."""
        total, share = self.totals["params"], self.percent(params)
        return float(share) if num.is_concrete(total) and total != 0 and num.is_concrete(share) else None

    @cached_property
    def by_type(self) -> dict[str, Dim]:
        """Parameters per layer type, in order of first appearance."""
        out: dict[str, Dim] = {}
        for row in self.rows:
            out[row.kind] = num.normal(out.get(row.kind, 0) + row.params)
        return out

    def group(self, name: str) -> tuple[Row, ...]:
        """The rows under a path prefix ("layer1", "layer1.0"), or inside the uses of a block ("basic")."""
        rows = tuple(row for row in self.rows if row.name.startswith(name + "."))
        if rows:
            return rows
        inside = sorted({i for use in self.uses if use.block == name for i in range(use.first, use.stop)})
        return tuple(self.rows[i] for i in inside)

    def row(self, name: str) -> Row:
        """The row of the layer named `name` (its full, dotted name: "layer1.0.conv1")."""
        if not isinstance(name, str):
            raise TypeError(f"row(name): name must be a layer's name (a str), got {type(name).__name__}")
        for row in self.rows:
            if row.name == name:
                return row
        close = difflib.get_close_matches(name[:100], [row.name for row in self.rows], n=1)
        raise KeyError(f"no layer is named {untrusted.one_line(repr(name[:100]))}" + (f"; did you mean {close[0]!r}?" if close else ""))

    @property
    def output(self) -> Shape:
        """The model's output: its last layer's, or the first of several ([model] outputs)."""
        return self.output_rows[0].output

    @cached_property
    def output_rows(self) -> tuple[Row, ...]:
        """The rows whose outputs the model returns, in [model] outputs' order (one: the last row)."""
        if not self.outputs or self.outputs == (self.rows[-1].name,):
            return (self.rows[-1],)
        return tuple(self.row(name) for name in self.outputs)
