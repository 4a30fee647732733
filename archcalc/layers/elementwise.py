"""Layers that keep the shape: the element-wise base (dropout, activation functions; hf.py's gelu_new), and PReLU."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, choice, real, size
from ..core.num import Dim, Shape, Value
from .base import ACTIVATIONS, Kept, Layer, Storage, Tensor, register, torch_activation
from .receptive_field import Field
from .shape import from_torch_axis, sample_axis, torch_axis


@dataclass(frozen=True, kw_only=True)
class ElementWise(Layer):
    """A function of each value on its own (activation functions, Hugging Face's gelu_new, dropout): the output
    has the input's shape, receptive field and layout."""

    def output(self, x: Shape) -> Shape:
        return x

    def receptive(self, x: Shape, field: Field) -> Field:
        return field

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    keeps_layout = True  # TensorIterator and empty_like keep the input's strides


@register
@dataclass(frozen=True, kw_only=True)
class Dropout(ElementWise):
    """Zeroes each value with probability p at training time and scales the rest by 1/(1 − p)."""

    kind = "dropout"
    joins_box_before = True
    torch_modules = ("Dropout",)
    # on CPU the mask is an input of the multiplication that makes the output (native_dropout on CUDA makes both)
    own_kept_before_output = ("cpu",)
    p: Value = real(Fraction(1, 2), low=0, high=1)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        # On CPU torch keeps the scaled mask in the input's dtype; on CUDA, native_dropout keeps a bool mask.
        return (Kept(Tensor.own, num.mul(x), Storage.mask, what="dropout mask"),) if grad and self.p != 0 else ()

    def summary(self, x: Shape) -> str:
        return f"p={fmt.group(self.p)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"same shape: dropped values become 0 and the others are scaled by 1/(1 − {fmt.group(self.p)}) in training")]

    def to_torch(self, x: Shape, nn):
        return nn.Dropout(p=float(self.p))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    returns_input_in_eval = True  # in eval, nn.Dropout returns its input

    def is_view(self) -> bool:
        return self.p == 0  # nn.Dropout(p=0) returns its input itself


OPTIONS = ("negative_slope", "alpha", "approximate", "dim")  # each function's own (Function.options)


@register
@dataclass(frozen=True, kw_only=True)
class Activation(ElementWise):
    """An element-wise function; the `activation = "..."` field of other layers is this with torch's defaults."""

    kind = "activation"
    joins_box_before = True
    torch_modules = tuple(f.torch for f in ACTIVATIONS.values())
    function: str = choice(*ACTIVATIONS)
    negative_slope: Value | None = real(None)  # leaky_relu (torch's default 0.01)
    alpha: Value | None = real(None)  # elu (1.0)
    approximate: str | None = choice("none", "tanh", default=None)  # gelu ("none")
    dim: int | None = axis(None)  # softmax, log_softmax: an axis of one sample (default 0, the channels or features)

    def output(self, x: Shape) -> Shape:
        options = self.options()
        if "dim" in options:
            sample_axis(options["dim"], x, "dim")
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        return (Kept(ACTIVATIONS[self.function].saves, num.mul(x), what=f"{self.function} {ACTIVATIONS[self.function].saves}"),)

    def options(self) -> dict[str, object]:
        """The options given, checked against the function: {"negative_slope": 0.2}."""
        given = {name: getattr(self, name) for name in OPTIONS if getattr(self, name) is not None}
        for name in given:
            if name not in ACTIVATIONS[self.function].options:
                takes = [f for f, fn in ACTIVATIONS.items() if name in fn.options]
                raise SpecError(f"{self.function} takes no {name}", f"{name} is an option of {' and '.join(takes)}", name)
        return given

    def summary(self, x: Shape) -> str:
        options = self.options()
        return self.function + "".join(f", {name}={fmt.group(v) if name != 'approximate' else v}" for name, v in options.items())

    def to_torch(self, x: Shape, nn):
        options = {name: float(v) if name in ("negative_slope", "alpha") else v for name, v in self.options().items()}
        if "dim" in options:
            options["dim"] = torch_axis(options["dim"])
        return torch_activation(self.function, nn, **options)

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"function": next(name for name, f in ACTIVATIONS.items() if f.torch == torch_name)}

    @classmethod
    def torch_value(cls, field: str, value):
        if field != "dim" or value is None:
            return value
        return None if value == 1 else from_torch_axis(value)  # torch's dim=1 is archcalc's default

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    gives_scores = False  # an element-wise function's values, not logits

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (self.function,)


@register
@dataclass(frozen=True, kw_only=True)
class PReLU(Layer):
    """A leaky ReLU whose negative slope is learned: one for all channels, or one per channel."""

    kind = "prelu"
    torch_modules = ("PReLU",)
    num_parameters: Dim = size(1)
    init: Value = real(Fraction(1, 4))

    def output(self, x: Shape) -> Shape:
        if self.num_parameters != 1 and num.is_concrete(x[0] - self.num_parameters) and x[0] != self.num_parameters:
            raise SpecError(
                f"num_parameters = {fmt.group(self.num_parameters)}, but the input has {fmt.group(x[0])} channels",
                "give 1 (one slope shared by all) or the channels, the input's first axis (one slope each)",
                "num_parameters",
            )
        return x

    def weights(self, x: Shape) -> Dim:
        return self.num_parameters

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        return (Kept("input", num.mul(x), what="input (for the slope's gradient too)"),)

    def summary(self, x: Shape) -> str:
        return "one slope" if self.num_parameters == 1 else f"{fmt.group(self.num_parameters)} slopes"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        what = "one slope shared by every channel" if self.num_parameters == 1 else "a slope per channel"
        return [("weights", f"weights = num_parameters = {fmt.group(self.num_parameters)} ({what}, learned)")]

    def to_torch(self, x: Shape, nn):
        return nn.PReLU(int(self.num_parameters), init=float(self.init))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    gives_scores = False
    autocast_op_names = ("prelu",)
    autocast_kept = (0,)  # its node keeps the slope's 16-bit copy

    def backward_scratch(self, x: Shape, grad: bool) -> Dim:
        # _prelu_kernel_backward: the weight's gradient per element, summed afterwards, and the input's
        # gradient even where the input needs none (freed unused)
        return num.mul(x) * (1 if grad else 2)

    def sums_scratch_first(self, grad: bool) -> bool:
        return grad  # measured: the sum comes first; without an input gradient, after the unused one is freed

