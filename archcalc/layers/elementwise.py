"""Layers that keep the shape: the element-wise base (dropout, activation functions; hf.py's gelu_new), and PReLU."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import axis, choice, real, size
from ..core.num import Dim, Shape, Value
from .base import ACTIVATIONS, Inexpressible, Kept, Layer, Storage, Tensor, register, torch_activation, torch_argument, torch_float
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
    torch_functions = ("dropout",)
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

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        if torch_argument(args, kwargs, 2, "training", True) is False:
            return None  # F.dropout(x, p, training=False): x itself
        return {"p": torch_float(torch_argument(args, kwargs, 1, "p", 0.5))}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    returns_input_in_eval = True  # in eval, nn.Dropout returns its input
    tensor_parallel = "columnwise"

    def is_view(self) -> bool:
        return self.p == 0  # nn.Dropout(p=0) returns its input itself


@register
@dataclass(frozen=True, kw_only=True)
class StochasticDepth(ElementWise):
    """Drops a whole residual branch at training time (torchvision's StochasticDepth, timm's DropPath): each sample's
    ("row") or the batch's ("batch") values are multiplied by one noise value, 0 with probability p, else 1/(1 − p).

    In torch: `noise = torch.empty([B, 1, …, 1]).bernoulli_(1 − p).div_(1 − p); return x * noise` ([1, …, 1] in batch
    mode), the input itself in eval or with p = 0. The product's node keeps the noise (the input needs a gradient)."""

    kind = "stochastic_depth"
    joins_box_before = True
    torch_modules = ("StochasticDepth", "DropPath")
    torch_attributes = (("drop_prob", "p"),)  # timm's DropPath(drop_prob, scale_by_keep): row mode
    torch_functions = ("stochastic_depth", "drop_path")
    own_kept_before_output = ("cpu", "cuda")  # the noise is an input of the product that makes the output
    p: Value = real(low=0, high=1)
    mode: str = choice("row", "batch", default="row")

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad or self.p == 0:
            return ()
        return (Kept(Tensor.own, 1, per_sample=self.mode == "row",
                     what="noise, one value per sample" if self.mode == "row" else "noise, one value for the batch"),)

    def summary(self, x: Shape) -> str:
        return f"p={fmt.group(self.p)}, {self.mode}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        noise = "[B" + ", 1" * len(x) + "]" if self.mode == "row" else "[" + ", ".join("1" * (len(x) + 1)) + "]"
        return [("output", f"same shape: in training the input times a noise tensor {noise}, each value 0 with probability "
                           f"p = {fmt.group(self.p)} (the branch dropped) or 1/(1 − p); in eval the input itself"),
                ("macs", "MACs = 0: an element-wise product, not counted; the noise is kept for backward")]

    def to_torch(self, x: Shape, nn):
        return nn.StochasticDepth(float(self.p), self.mode)

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"mode": "row"} if torch_name == "DropPath" else {}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    returns_input_in_eval = True  # in eval, torchvision's and timm's return their input

    def is_view(self) -> bool:
        return self.p == 0  # torchvision and timm return the input itself


OPTIONS = ("negative_slope", "alpha", "approximate", "dim")  # each function's own (Function.options)


TORCH_DEFAULTS = {"negative_slope": 0.01, "alpha": 1, "approximate": "none"}  # left out of a spec, as its defaults


@register
@dataclass(frozen=True, kw_only=True)
class Activation(ElementWise):
    """An element-wise function; the `activation = "..."` field of other layers is this with torch's defaults."""

    kind = "activation"
    joins_box_before = True
    torch_modules = tuple(f.torch for f in ACTIVATIONS.values())
    torch_functions = (*ACTIVATIONS, *(f"{name}_" for name in ACTIVATIONS), "_softmax", "_log_softmax")
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

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.relu(x), x.relu_(), F.leaky_relu(x, 0.2), F.gelu(x, approximate="tanh"), F.softmax(x, dim=-1): the options
        as the module's, torch's defaults left out; aten's hardtanh(x, 0, 6) is relu6."""
        function = name.strip("_")
        if function == "hardtanh":
            low, high = torch_argument(args, kwargs, 1, "min_val", -1), torch_argument(args, kwargs, 2, "max_val", 1)
            if (low, high) == (0, 6):
                return {"function": "relu6"}
            if (low, high) != (-1, 1):
                raise Inexpressible(f"({low}, {high}): archcalc's hardtanh clamps to [-1, 1] and relu6 to [0, 6]")
        fields = {"function": function}
        for option in ACTIVATIONS[function].options:
            value = args[1] if option != "approximate" and len(args) > 1 else kwargs.get(option)
            value = cls.torch_value(option, torch_float(value))
            if value is not None and value != TORCH_DEFAULTS.get(option):
                fields[option] = value
        return fields

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    gives_scores = False  # an element-wise function's values, not logits
    tensor_parallel = "columnwise"

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

