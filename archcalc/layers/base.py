"""The Layer base class and the registry of layer kinds.

A layer kind is one frozen dataclass with `@register`: its fields (declared with
the helpers of `archcalc.fields`) are the spec's fields, and its methods give the
output shape, weights, biases and multiply-accumulates for an input shape `x`
(one sample, no batch axis). Every formula for a kind lives in its class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .. import fmt, num
from ..errors import SpecError
from ..fields import choice
from ..num import Dim, Shape

LAYERS: dict[str, type[Layer]] = {}

@dataclass(frozen=True)
class Function:
    """An element-wise function: which tensor autograd keeps for its backward pass, and its torch module."""

    saves: str  # "output" or "input" (measured with saved_tensors_hooks on CPU, torch 2.13)
    torch: str  # the torch.nn class
    dim: bool = False  # takes dim=1 (softmax over the channels / features)


# The `activation` layer and the `activation` field of conv, dense and batchnorm.
ACTIVATIONS: dict[str, Function] = {
    "relu": Function("output", "ReLU"),
    "sigmoid": Function("output", "Sigmoid"),
    "tanh": Function("output", "Tanh"),
    "softmax": Function("output", "Softmax", dim=True),
    "log_softmax": Function("output", "LogSoftmax", dim=True),
    "gelu": Function("input", "GELU"),
    "silu": Function("input", "SiLU"),
    "leaky_relu": Function("input", "LeakyReLU"),
    "elu": Function("input", "ELU"),
    "relu6": Function("input", "ReLU6"),
    "hardtanh": Function("input", "Hardtanh"),
    "softplus": Function("input", "Softplus"),
    "mish": Function("input", "Mish"),
}


def torch_activation(name: str, nn):
    """The torch module for an activation function, from the torch.nn namespace `nn`."""
    function = ACTIVATIONS[name]
    return getattr(nn, function.torch)(dim=1) if function.dim else getattr(nn, function.torch)()


@dataclass(frozen=True)
class Kept:
    """A tensor autograd keeps for a layer's backward pass (see archcalc/memory.py for how they add up)."""

    tensor: str  # "input", "output", "pre" (before the layer's activation), or "own" (mask, indices, statistics)
    elements: Dim  # per sample, or in all when not per_sample
    dtype: str = "model"  # "model": the network's dtype; "int64"; "mask": the model's dtype on CPU, 1 byte on CUDA
    per_sample: bool = True
    what: str = ""  # for --explain: "input", "max-pooling indices", ...
    arg: int = 0  # which input, for "input" of a layer with several (a merge layer)


def activation_keeps(activation: str | None, y: Shape) -> tuple[Kept, ...]:
    """What the activation applied to a layer's output keeps: that output, or its own input ("pre")."""
    if activation is None:
        return ()
    if ACTIVATIONS[activation].saves == "output":
        return (Kept("output", num.mul(y), what=f"{activation} output"),)
    return (Kept("pre", num.mul(y), what=f"{activation} input"),)


def register(cls: type[Layer]) -> type[Layer]:
    LAYERS[cls.kind] = cls
    return cls


def activation_field():
    return choice(*ACTIVATIONS, default=None)


@dataclass(frozen=True, kw_only=True)
class Layer:
    kind: ClassVar[str]
    # the torch.nn classes this kind is (`archcalc import`): their attributes of the spec's field names are its fields
    torch_modules: ClassVar[tuple[str, ...]] = ()
    merges: ClassVar[bool] = False  # reads several tensors: x is then the tuple of their shapes, grad one flag each
    name: str

    @classmethod
    def spec_fields(cls) -> dict[str, object]:
        """Field name -> its kind (how to read and bind it), for every field a spec may set."""
        return {f.name: f.metadata["kind"] for f in dataclasses.fields(cls) if "kind" in f.metadata}

    def output(self, x: Shape) -> Shape:
        raise NotImplementedError

    def weights(self, x: Shape) -> Dim:
        return 0

    def biases(self, x: Shape) -> Dim:
        return 0

    def macs(self, x: Shape) -> Dim:
        """Multiply-accumulates for one sample (FLOPs are twice this, as torch counts them)."""
        return 0

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        """MACs of the backward pass as FlopCounterMode counts them; `grad`: the input needs a gradient."""
        return 0

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        """The tensors autograd keeps for the backward pass; `grad`: the input requires grad
        (a layer with no parameters of its own keeps nothing when nothing before it has any)."""
        return ()

    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        """Bytes of the layer's buffers (state that is not trained), for values of `size` bytes."""
        return 0

    def is_view(self) -> bool:
        """Whether the output shares its input's storage (flatten, reshape: views; dropout with p = 0)."""
        return False

    def is_view_in_eval(self) -> bool:
        """Whether, in eval mode, the output is the input itself or a view of it (dropout returns its input)."""
        return self.is_view()

    def passes_gradient(self) -> str:
        """How backward hands the output's gradient to the inputs without a new tensor (the memory
        timeline, archcalc/timeline.py): "same" (add: the gradient itself, where no broadcasting
        reduces it), "slice" (concat: a view of it), "" (a new tensor per input)."""
        return ""

    def summary(self, x: Shape) -> str:
        """The hyperparameters in short form, for the table: '11×11/4, p2, relu'."""
        return ""

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        """How the numbers come out, as (quantity, text) lines for --explain."""
        return []

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        """The fields a torch class fixes by being that class (MaxPool2d: op = "max"), for `archcalc import`."""
        return {}

    def to_torch(self, x: Shape, nn):
        """The torch module for this layer (without its `activation`), from the torch.nn namespace `nn`."""
        raise NotImplementedError(self.kind)


def spatial(x: Shape, kind: str) -> int:
    """The number of spatial axes of `x` = [C, *spatial], for layers that need 1 to 3 of them."""
    if not 2 <= len(x) <= 4:
        raise SpecError(
            f"{kind} needs an input [C, L], [C, H, W] or [C, D, H, W]; got {fmt.shape(x)}",
            "a flat input (after flatten or dense) has no spatial axes: use reshape to give it some"
            if len(x) == 1
            else None,
        )
    return len(x) - 1


def ints(values) -> tuple[int, ...]:
    """Sizes as the ints torch wants (a spec given to torch has no free symbols left)."""
    return tuple(int(v) for v in values)


def per_axis(value, n: int, field: str) -> tuple:
    """A field's value for each of `n` spatial axes: 3 -> (3, 3); [3, 5] stays (3, 5)."""
    if isinstance(value, tuple):
        if len(value) != n:
            raise SpecError(
                f"gives {len(value)} values, but the input has {n} spatial axes", "give one value, or one per axis", field
            )
        return value
    return (value,) * n


def with_activation(text: str, activation: str | None) -> str:
    return ", ".join(part for part in (text, activation) if part)


def axes_text(values: tuple) -> str:
    """(2, 2) -> '2'; (1, 2) -> '1×2'."""
    if len(set(map(str, values))) == 1:
        return fmt.group(values[0])
    return "×".join(map(fmt.term, values))
