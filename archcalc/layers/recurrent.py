"""Recurrent layers over a sequence [T, features]: LSTM and GRU (torch.nn.LSTM, nn.GRU with batch_first).

Per layer and direction, each step multiplies the input by W_ih (gates·h × in) and the previous
hidden state by W_hh (gates·h × h), gates = 4 (LSTM) or 3 (GRU); a layer after the first reads
the h·directions outputs of the one before. So MACs = T·weights, the gates' element-wise work
not counted (as FlopCounterMode counts it for torch's own implementation).

On the CPU, torch 2.13 runs nn.LSTM through oneDNN: FlopCounterMode then counts 0 FLOPs and autograd
keeps an opaque workspace (28,672 bytes for the smallest LSTM). archcalc gives the numbers of torch's
native implementation instead (torch.backends.mkldnn.flags(enabled=False), the one nn.GRU always
uses), measured with saved_tensors_hooks for batches of 2 or more: per layer and direction it keeps
7·h values per step, and a copy of its input sequence (the first layer one per direction, a later
layer one shared by both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import flag, size
from ..core.num import Dim, Shape
from .base import Kept, Layer, register


@dataclass(frozen=True, kw_only=True)
class Recurrent(Layer):
    gates: ClassVar[int]
    torch_name: ClassVar[str]
    hidden_size: Dim = size()
    num_layers: Dim = size(1)
    bidirectional: bool = flag(False)
    bias: bool = flag(True)

    def output(self, x: Shape) -> Shape:
        self.in_features(x)
        return (x[0], num.normal(self.hidden_size * self.dirs))

    def weights(self, x: Shape) -> Dim:
        return num.add(self.parts(x))

    def biases(self, x: Shape) -> Dim:
        return num.normal(2 * self.gates * self.hidden_size * self.dirs * self.num_layers) if self.bias else 0

    def macs(self, x: Shape) -> Dim:
        return num.normal(x[0] * self.weights(x))

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # the weight gradients, one step at a time; the input gradients except the first layer's when
        # its input needs none, and except the hidden state of step 0 (zeros that need no gradient)
        first, later, hidden = self.parts(x)
        t = x[0]
        return num.normal(t * first * (2 if grad else 1) + 2 * t * later + (2 * t - 1) * hidden)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        t, h, d = x[0], self.hidden_size, self.dirs
        # batch_first: the input [B, T, in] turned to [T, B, in] is copied, once per direction; with
        # T = 1 that turn is still contiguous, and the input itself is kept
        sequence = (Kept("input", num.mul(x), what="input") if t == 1 else
                    Kept("own", num.normal(d * t * self.in_features(x)), what=f"the input sequence, a copy per direction ({d})"))
        return (
            sequence,
            Kept("own", num.normal((self.num_layers - 1) * t * h * d), what="the inputs of the layers after the first"),
            Kept("own", num.normal(self.num_layers * d * t * 7 * h), what="7·h values per step, layer and direction (gates, states)"),
        )

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def in_features(self, x: Shape) -> Dim:
        if len(x) != 2:
            raise SpecError(f"{self.kind} needs a sequence [T, features], got {fmt.shape(x)}",
                            'write the input as ["T", features], or reshape or permute to [T, features] first')
        return x[1]

    def parts(self, x: Shape) -> tuple[Dim, Dim, Dim]:
        """Weights of W_ih of the first layer, of W_ih of the later layers, and of every W_hh."""
        g, h, d = self.gates * self.hidden_size, self.hidden_size, self.dirs
        return (num.normal(d * g * self.in_features(x)), num.normal((self.num_layers - 1) * d * g * h * d),
                num.normal(self.num_layers * d * g * h))

    def summary(self, x: Shape) -> str:
        parts = [f"h={fmt.group(self.hidden_size)}"]
        if self.num_layers != 1:
            parts.append(f"{fmt.group(self.num_layers)} layers")
        if self.bidirectional:
            parts.append("bidirectional")
        if not self.bias:
            parts.append("no bias")
        return ", ".join(parts)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        g, h, d = self.gates, fmt.term(self.hidden_size), self.dirs
        dirs = f"{d}·" if d != 1 else ""
        lines = [("output", f"[T, h·directions] = [{fmt.term(x[0])}, {h}·{d}]: the hidden state at every step")]
        text = f"weights = {dirs}{g}·h·(in + h) = {dirs}{g}·{h}·({fmt.term(self.in_features(x))} + {h})"
        if self.num_layers != 1:
            text += f" + ({fmt.term(self.num_layers)} − 1)·{dirs}{g}·{h}·({h}·{d} + {h}) (later layers read h·directions)"
        lines.append(("weights", f"{text} = {fmt.group(self.weights(x))} ({g} gates)"))
        lines.append(("biases", f"biases = 2·{g}·h·directions·layers = {fmt.group(self.biases(x))} (b_ih and b_hh, as torch has both)"
                      if self.bias else "biases = 0 (bias = false)"))
        lines.append(("macs", f"MACs = T·weights = {fmt.term(x[0])}·{fmt.group(self.weights(x))} = {fmt.group(self.macs(x))} "
                              "(every step multiplies by W_ih and W_hh)"))
        return lines

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if quantity not in ("params", "biases") or not self.bias:
            return ()
        once = num.normal(self.gates * self.hidden_size * self.dirs * self.num_layers)
        wrong = once if quantity == "biases" else num.normal(self.weights(x) + once)
        return ((wrong, f"one bias per gate: torch's {self.kind} has two, b_ih and b_hh, so biases = "
                        f"2·{self.gates}·h·directions·layers = {fmt.group(self.biases(x))}"),)

    def to_torch(self, x: Shape, nn):
        args = dict(num_layers=int(self.num_layers), bias=self.bias, batch_first=True, bidirectional=self.bidirectional)
        module = _outputs(nn, self.torch_name)(int(self.in_features(x)), int(self.hidden_size), **args)
        shown = ", ".join(f"{k}={v}" for k, v in args.items() if k == "batch_first" or v != {"num_layers": 1, "bias": True}.get(k, False))
        # for export: the torch class's constructor, and the call that keeps the output sequence
        module.exported = (f"nn.{self.torch_name}({int(self.in_features(x))}, {int(self.hidden_size)}, {shown})", "{}(x)[0]")
        return module

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (self.kind,)  # lstm, gru: in 16 bits under autocast (the CPU's mkldnn_rnn_layer, CUDA's fused cells)


_WRAPPERS: dict = {}


def _outputs(nn, name: str):
    """torch's LSTM or GRU, returning only its output sequence (they return (output, state)); the
    parameters keep torch's names (weight_ih_l0, ...)."""
    if (nn, name) not in _WRAPPERS:
        class Sequence(getattr(nn, name)):
            def forward(self, x):
                return super().forward(x)[0]

        Sequence.__name__ = Sequence.__qualname__ = name
        _WRAPPERS[nn, name] = Sequence
    return _WRAPPERS[nn, name]


@register
@dataclass(frozen=True, kw_only=True)
class LSTM(Recurrent):
    kind = "lstm"
    gates = 4
    torch_name = "LSTM"


@register
@dataclass(frozen=True, kw_only=True)
class GRU(Recurrent):
    kind = "gru"
    gates = 3
    torch_name = "GRU"
