"""Fully connected layer over a flat input, or per token over a sequence [T, d] (torch.nn.Linear)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import flag, ref, size
from ..core.num import Dim, Shape
from . import layout
from .base import (
    ACTIVATIONS,
    Inexpressible,
    Kept,
    Layer,
    Storage,
    Tensor,
    TorchTensor,
    activation_field,
    activation_keeps,
    register,
    torch_argument,
    with_activation,
)
from .events import Convert, Drop, New, Program
from .receptive_field import Field
from .tuning import Lora, base_backward, base_forward


@register
@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    kind = "dense"
    mistakes = frozenset({"bias_per_input"})
    asks_shape = False  # its output is out_features, as the spec writes it
    colour = "#8fb3de"
    torch_modules = ("Linear", "Conv1D")  # Conv1D: Hugging Face's (GPT-2's), its weight [in, out]
    torch_attributes = (("nf", "out_features"),)  # Conv1D's name
    torch_functions = torch_weighted = ("linear",)
    out_features: Dim = size()
    # the input's last axis, given: then any input, the layer applied per position over its other axes as nn.Linear
    # (ConvNeXt's on [H, W, C]); without it, an input of 3 axes or more is refused (a CNN that forgot flatten)
    in_features: Dim | None = size(None)
    bias: bool = flag(True)
    activation: str | None = activation_field()
    tie: str | None = ref(None)  # an earlier layer whose weight this one shares (GPT-2's output layer: tie = "wte")
    # the weight held as [in_features, out_features] and applied by addmm, as Hugging Face's Conv1D (GPT-2's c_attn,
    # c_fc, c_proj) holds it: the same numbers, another state_dict shape
    transposed: bool = flag(False)

    def output(self, x: Shape) -> Shape:
        self.features(x)
        return (*x[:-1], self.out_features)

    def weights(self, x: Shape) -> Dim:
        own = 0 if self.tie else self.features(x) * self.out_features
        return num.normal(own + num.add(self.adapter_tensors(x)))

    def biases(self, x: Shape) -> Dim:
        return self.out_features if self.bias else 0

    def weight_shape(self, x: Shape) -> Shape:
        return (self.features(x), self.out_features) if self.transposed else (self.out_features, self.features(x))

    def macs(self, x: Shape) -> Dim:
        return num.normal(self.tokens(x) * (self.features(x) * self.out_features + num.add(self.adapter_tensors(x))))

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        # the weight's gradient (none when frozen) and the input's (when it needs one); LoRA: lora_B's weight and
        # input gradients, lora_A's weight gradient and its input's
        base = num.normal(self.tokens(x) * self.features(x) * self.out_features)
        adapters = self.adapter_tensors(x)
        lora = num.normal(self.tokens(x) * (2 * adapters[1] + adapters[0] * (2 if grad else 1))) if adapters else 0
        return num.normal(base * ((0 if self.frozen else 1) + (1 if grad else 0)) + lora)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        # nn.Linear keeps its input for its weight's gradient only (a frozen weight: none; measured, torch 2.13)
        act = activation_keeps(self.activation, y)
        if self.tuning is None:
            return (Kept(Tensor.input, num.mul(x), what="input"), *act)
        kept = [] if self.frozen else [Kept(Tensor.input, num.mul(x), what="input")]
        if self.tuning.quantized == "int8" and grad:
            kept.append(Kept(Tensor.input, num.mul(x), what="input (bitsandbytes' MatMul8bitLt keeps it)"))
        if self.adapter is not None:
            kept += lora_kept(self.adapter, num.mul(x), self.tokens(x), True, grad)
        return (*kept, *act)

    def features(self, x: Shape) -> Dim:
        """The input's features: its last axis (checked against in_features where the spec gives it)."""
        if self.in_features is not None:
            if num.is_concrete(x[-1] - self.in_features) and x[-1] != self.in_features:
                raise SpecError(f"in_features = {fmt.group(self.in_features)}, but the input {fmt.shape(x)} has "
                                f"{fmt.group(x[-1])} on its last axis", "nn.Linear reads the last axis", "in_features")
            return x[-1]
        if len(x) > 2:
            raise SpecError(f"dense needs a flat input, got {fmt.shape(x)} (or a sequence [T, features], applied per token)",
                            "add a flatten layer before it (or, to apply it per position over the last axis as nn.Linear "
                            "does, say so: in_features = " + fmt.group(x[-1]) + ")")
        return x[-1]

    def tokens(self, x: Shape) -> Dim:
        """How many times the layer is applied: once on a flat input, once per token on [T, d] (as nn.Linear)."""
        self.features(x)
        return num.mul(x[:-1])

    def summary(self, x: Shape) -> str:
        where = ", per token" if len(x) == 2 else ", per position" if len(x) > 2 else ""
        text = f"{fmt.group(self.features(x))}→{fmt.group(self.out_features)}{where}"
        text += f", tied to {self.tie}" if self.tie else ""
        text += f", LoRA r={fmt.group(self.adapter.rank)}" if self.adapter is not None else ""
        text += ", Conv1D" if self.transposed else ""
        return with_activation(text + ("" if self.bias else ", no bias"), self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        factors = f"{fmt.term(self.out_features)}·{fmt.term(self.features(x))}"
        weights = f"weights = out_features·in_features = {factors} = {fmt.group(self.features(x) * self.out_features)}"
        lines = [
            ("weights", f"weights = 0: shares {self.tie}'s weight ({weights}, counted there)" if self.tie else weights),
            ("biases", f"biases = out_features = {fmt.group(self.out_features)}" if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = out_features·in_features = {factors} = {fmt.group(self.macs(x))}"),
        ]
        if len(x) > 2:
            lines[-1] = ("macs", f"MACs = positions·out_features·in_features = {fmt.product(x[:-1])}·{factors} = "
                                 f"{fmt.group(self.macs(x))}")
            lines.insert(0, ("output", f"per position: the same weights applied over the last axis at each of the "
                                       f"{fmt.product(x[:-1])} positions, as nn.Linear does"))
        if len(x) == 2:
            lines[-1] = ("macs", f"MACs = T·out_features·in_features = {fmt.term(x[0])}·{factors} = {fmt.group(self.macs(x))}")
            lines.insert(0, ("output", f"per token: the same weights applied to each of the T = {fmt.group(x[0])} rows, "
                                       f"as nn.Linear does on [B, T, d]; weights do not grow with T"))
        return lines

    def receptive(self, x: Shape, field: Field) -> Field:
        return field  # element-wise: over a flat input every output already sees the whole input

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if len(x) != 2:
            return ()
        t = fmt.group(x[0])
        if quantity == "params":
            return ((num.normal(x[0] * (self.weights(x) + self.biases(x))), f"counted per token: one weight matrix serves "
                     f"all T = {t} tokens, params = {fmt.group(self.weights(x) + self.biases(x))}"),)
        if quantity in ("macs", "flops"):
            once = num.normal(self.weights(x) * (2 if quantity == "flops" else 1))
            return ((once, f"one token only: the layer runs on each of the T = {t} tokens, {quantity} ×{t}"),)
        return ()

    def to_torch(self, x: Shape, nn):
        base = nn.Conv1D(int(self.features(x)), int(self.out_features), bias=self.bias) if self.transposed \
            else nn.Linear(int(self.features(x)), int(self.out_features), bias=self.bias)
        if self.adapter is None:
            return base
        a = self.adapter
        return nn.LoraLinear(base, int(a.rank), float(a.alpha), float(a.dropout))

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"transposed": True} if torch_name == "Conv1D" else {}

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.linear(x, weight, bias) (timm's Linear, a subclass that calls it): out_features from the weight's shape."""
        x, weight, bias = args[0], torch_argument(args, kwargs, 1, "weight"), torch_argument(args, kwargs, 2, "bias")
        if not (isinstance(weight, TorchTensor) and weight.held and weight.shape is not None and len(weight.shape) == 2):
            raise Inexpressible("with a weight that is not a parameter [out, in]")
        out, features = weight.shape
        fields = {"out_features": out}
        if isinstance(x, TorchTensor) and x.rank is not None and x.rank > 3:
            fields["in_features"] = features
        return fields | ({} if bias is not None else {"bias": False})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("linear",)
    contiguous_input = True  # nn.Linear reshapes [B, T, d] to [B·T, d]: a permuted input is copied, and the copy kept
    takes_lora = True  # LoRA may adapt it (peft's LoraLinear around nn.Linear)
    tensor_parallel = "columns"  # Megatron's MLP: column-parallel, then row-parallel

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """A frozen projection with LoRA beside it or a quantized weight (archcalc/layers/tuning.py), op by op: the
        base (bitsandbytes' ops where quantized), peft's adapter, the activation; backward in reverse. None: the
        generic rule (a trained or simply frozen layer)."""
        tuning = self.tuning
        if tuning is None or (tuning.adapter is None and tuning.quantized is None) or amp is not None:
            return None
        t, fan_in, fan_out = self.tokens(x), self.features(x), self.out_features
        act = self.activation
        result = "r" if act else "out"
        fwd = base_forward(tuning.quantized, "x", "y" if tuning.adapter else result, t, fan_in, fan_out, False, grad)
        lora = Lora(tuning.adapter, t, fan_in, fan_out, "lora.", device == "cuda") if tuning.adapter else None
        if lora is not None:
            fwd += lora.forward("x", "y", result, grad)
        n = num.mul(self.output(x))
        bwd: list = []
        g = "g"
        if act:  # the activation keeps its output (an alias of "out") or its input ("r", kept alive)
            saves_output = ACTIVATIONS[act].saves == Tensor.output
            fwd.append(New("out", n))
            fwd += [Convert("act", "out", n, "model", "model"), Drop("r")] if saves_output else []
            bwd += [New("gr", n), Drop("g", "act" if saves_output else "r")]
            g = "gr"
        if lora is not None:
            events, g, _ = lora.backward(g, grad)
            bwd += events
        if grad:
            bwd += base_backward(tuning.quantized, g, "gx", t, fan_in, fan_out)
        if g is not None:
            bwd.append(Drop(g))
        if tuning.quantized == "int8" and grad:
            bwd.append(Drop("x"))
        return Program(tuple(fwd), tuple(bwd))

    def param_tensors(self, x: Shape) -> tuple[Dim, ...]:
        own = 0 if self.tie else num.normal(self.features(x) * self.out_features)
        return (*(n for n in (own, self.biases(x)) if n != 0), *self.adapter_tensors(x))

    def adapter_tensors(self, x: Shape) -> tuple[Dim, ...]:
        return () if self.adapter is None else self.adapter.tensors(self.features(x), self.out_features)

    def quantized_weights(self, x: Shape) -> tuple[tuple[int, Dim], ...]:
        return () if self.tie else ((0, self.out_features),)

    def scores_axis(self, y: Shape) -> int:
        return len(y) - 1  # per token on [T, d]: a language model's [T, V] scores

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        return (0,) if grad else ()  # AddmmBackward keeps the weight for the input's gradient only

    def copies_input(self, x: Shape, strides) -> bool:
        return not layout.folds(x, strides)  # a slice of the features, or a selected token, is read as it is

    def unfused_bias(self) -> bool:
        return self.bias  # F.linear on a non-contiguous [B, T, d]: matmul, then the bias added out of place

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        return (*(() if self.tie else (self.weight_shape(x),)), *(((self.out_features,),) if self.bias else ()))


def lora_kept(adapter, elements, tokens, of_input: bool, grad: bool) -> list[Kept]:
    """What peft's LoRA layer keeps beside a frozen projection of `elements` input values (per sample) over `tokens`:
    lora_A's input (the projection's input, `of_input`: the row's; its float32 copy beside a 16-bit base; with dropout
    the dropped copy, and the mask where the input needs a gradient) and lora_A's output (lora_B's)."""
    store = Storage.float32 if adapter.dtype == "float32" else Storage.model
    kept = []
    if adapter.dropout != 0:
        mask = Storage.float32 if adapter.dtype == "float32" else Storage.mask
        kept += [Kept(Tensor.own, elements, mask, what="LoRA's dropout mask")] if grad else []
        kept.append(Kept(Tensor.own, elements, store, what="the input, dropped (lora_A's)"))
    elif adapter.dtype == "float32":
        kept.append(Kept(Tensor.own, elements, store, what="the input in float32 (lora_A's)"))
    elif of_input:
        kept.append(Kept(Tensor.input, elements, what="input (lora_A's)"))
    kept.append(Kept(Tensor.own, num.normal(tokens * adapter.rank), store, what="lora_A's output (lora_B's)"))
    return kept
