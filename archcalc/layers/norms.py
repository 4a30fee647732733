"""Normalizations over a sample's own values: layer, group, instance and RMS normalization, and
AlexNet's local response normalization (torch.nn.LayerNorm, GroupNorm, InstanceNorm*d, RMSNorm,
LocalResponseNorm). LayerNorm and RMSNorm share LastAxesNorm (over the last axes, a scale per
normalized value); GroupNorm and InstanceNorm share batchnorm.py's ChannelAffine (γ and β per channel).

FlopCounterMode counts none of them (no matrix product). What each keeps for backward was
measured with saved_tensors_hooks on torch 2.13's CPU, in float32, float64 and bfloat16: the
statistics (mean and 1/std, one per normalized group) are kept in the model's dtype, except
RMSNorm's, which computes in float32 at least.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import choice, flag, real, size as whole, sizes
from ..core.num import Dim, Shape, Value
from .base import Inexpressible, Kept, Layer, ints, register, torch_argument
from .batchnorm import ChannelAffine
from .events import Convert, Drop, HandGradient, KeepInput, New, Program, When


def _normalized(layer, x: Shape) -> tuple:
    """normalized_shape, checked against the input's last axes (default: the last axis)."""
    shape = layer.normalized_shape if layer.normalized_shape is not None else x[-1:]
    tail = x[len(x) - len(shape):] if len(shape) <= len(x) else None
    if tail is None or any(num.is_concrete(a - b) and a != b for a, b in zip(tail, shape)):
        raise SpecError(
            f"normalized_shape {fmt.shape(shape)} is not the last axes of the input {fmt.shape(x)}",
            f"{layer.kind} normalizes over the input's last axes: normalized_shape = {list(map(num.to_json, x[-1:]))} "
            f"(the features of [T, d]), or leave it out",
            "normalized_shape",
        )
    return tuple(shape)


def _typed(fwd: list, bwd: list, amp: tuple[str, str] | None) -> Program:
    """A program, under autocast (amp = (autocast's dtype, the input's dtype)) with its storages named by dtype: the
    model's storage is the input's dtype, opmath and the parameters' float32, and When decided by the input's dtype."""
    if amp is None:
        return Program(tuple(fwd), tuple(bwd))
    low = amp[1] in ("bfloat16", "float16")
    names = {"model": amp[1], "opmath": "float32", "param": "float32"}

    def typed(events: list) -> tuple:
        out = []
        for event in events:
            if isinstance(event, When):
                if event.low != low:
                    continue
                event = event.event
            if isinstance(event, New):
                event = replace(event, storage=names.get(event.storage, event.storage))
            elif isinstance(event, Convert):
                event = replace(event, old=names.get(event.old, event.old), new=names.get(event.new, event.new))
            out.append(event)
        return tuple(out)

    return Program(typed(fwd), typed(bwd))


def _stats(elements: Dim, dtype: str = "model") -> tuple[Kept, Kept]:
    return (Kept("own", elements, dtype, what="mean (one per normalized group)"),
            Kept("own", elements, dtype, what="1/std (one per normalized group)"))


@dataclass(frozen=True, kw_only=True)
class LastAxesNorm(Layer):
    """What LayerNorm and RMSNorm share: each sample's values are normalized in groups over its last axes,
    `normalized_shape` (default: the last axis), with a scale γ per normalized value when `elementwise_affine`.
    A kind on this base declares the fields normalized_shape and elementwise_affine."""

    def output(self, x: Shape) -> Shape:
        _normalized(self, x)
        return x

    def weights(self, x: Shape) -> Dim:
        return num.mul(_normalized(self, x)) if self.elementwise_affine else 0

    def groups(self, x: Shape) -> Dim:
        """How many groups a sample's values are normalized in (the tokens of [T, d]): one per position of the axes before."""
        return num.mul(x[: len(x) - len(_normalized(self, x))])

    # Memory (archcalc/memory/timeline/): its facts and hooks
    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        return tuple(tuple(_normalized(self, x)) for _ in self.param_tensors(x))


@register
@dataclass(frozen=True, kw_only=True)
class LayerNorm(LastAxesNorm):
    """Normalizes each sample over its last axes; a scale and a shift per normalized value."""

    kind = "layernorm"
    torch_modules = ("LayerNorm",)
    torch_functions = torch_weighted = ("layer_norm",)
    normalized_shape: tuple | None = sizes(None, scalar=True)
    elementwise_affine: bool = flag(True)
    bias: bool = flag(True)

    def biases(self, x: Shape) -> Dim:
        return num.mul(_normalized(self, x)) if self.elementwise_affine and self.bias else 0

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not (grad or self.elementwise_affine):
            return ()
        # statistics in the parameters' dtype when they differ from the input's (CPU autocast: a 16-bit input with
        # float32 weights is layer_norm's mixed type, float32 statistics; measured); without weights, the input's
        return (Kept("input", num.mul(x), what="input"), *_stats(self.groups(x), "param" if self.elementwise_affine else "model"))

    def summary(self, x: Shape) -> str:
        parts = [f"over {fmt.shape(_normalized(self, x))}"]
        if not self.elementwise_affine:
            parts.append("affine=false")
        elif not self.bias:
            parts.append("no bias")
        return ", ".join(parts)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        shape = _normalized(self, x)
        n = fmt.group(num.mul(shape))
        lines = [("output", f"same shape: each of the {fmt.group(self.groups(x))} groups of {n} values (normalized_shape "
                            f"{fmt.shape(shape)}) is normalized on its own, per sample")]
        if not self.elementwise_affine:
            return [*lines, ("weights", "no parameters (elementwise_affine = false)")]
        product = f"{fmt.product(shape)} = " if len(shape) > 1 else ""
        lines.append(("weights", f"weights = normalized_shape = {product}{n} (a scale γ per normalized value, not per token)"))
        lines.append(("biases", f"biases = {n} (a shift β per normalized value)" if self.bias else "biases = 0 (bias = false)"))
        return lines

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if quantity not in ("params", "weights") or not self.elementwise_affine:
            return ()
        d = num.mul(_normalized(self, x))
        params = num.normal(d * (2 if self.bias else 1)) if quantity == "params" else d
        out = [(num.normal(num.div(num.mul(x), d) * params), f"counted per token: LayerNorm's γ{' and β' * (quantity == 'params' and self.bias)} "
                f"are one per normalized value ({fmt.group(d)}), shared by every position: {quantity} = {fmt.group(params)}")]
        if quantity == "params" and self.bias:
            out.append((d, f"γ only: LayerNorm has a scale γ and a shift β per normalized value, params = 2·{fmt.group(d)}"))
        return tuple(out)

    def to_torch(self, x: Shape, nn):
        return nn.LayerNorm(ints(_normalized(self, x)), elementwise_affine=self.elementwise_affine, bias=self.bias)

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.layer_norm(x, normalized_shape, weight, bias, eps) (aten's takes the same): ConvNeXt's LayerNorm2d."""
        shape = list(torch_argument(args, kwargs, 1, "normalized_shape"))
        weight, bias = torch_argument(args, kwargs, 2, "weight"), torch_argument(args, kwargs, 3, "bias")
        if weight is None and bias is not None:
            raise Inexpressible("with a bias and no weight: archcalc's layernorm has γ whenever it has β")
        fields = {"normalized_shape": shape[0] if len(shape) == 1 else shape}
        return fields | ({"elementwise_affine": False} if weight is None else {} if bias is not None else {"bias": False})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("layer_norm",)


@register
@dataclass(frozen=True, kw_only=True)
class GroupNorm(ChannelAffine):
    """Normalizes each sample over groups of channels (and all their positions); a scale and shift per channel."""

    kind = "groupnorm"
    torch_modules = ("GroupNorm",)
    torch_functions = torch_weighted = ("group_norm",)
    num_groups: Dim = whole()
    affine: bool = flag(True)

    def output(self, x: Shape) -> Shape:
        self.channels(x)
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not (grad or self.affine):
            return ()
        # a 16-bit input with float32 γ and β (autocast) keeps float32 statistics (group_norm's mixed types)
        return (Kept("input", num.mul(x), what="input"), *_stats(self.num_groups, "param" if self.affine else "model"))

    def channels(self, x: Shape) -> Dim:
        if num.is_concrete(x[0]) and num.is_concrete(self.num_groups) and x[0] % self.num_groups:
            raise SpecError(f"num_groups = {self.num_groups} does not divide the {fmt.group(x[0])} channels",
                            "the channels (the input's first axis) must divide into num_groups equal groups", "num_groups")
        if num.mul((num.div(x[0], self.num_groups), *x[1:])) == 1:
            raise SpecError("each group holds one value: normalizing it leaves 0 (PyTorch refuses it)",
                            "use fewer groups", "num_groups")
        return x[0]

    def summary(self, x: Shape) -> str:
        return f"{fmt.group(self.num_groups)} groups" + ("" if self.affine else ", affine=false")

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        c = self.channels(x)
        lines = [("output", f"same shape: {fmt.group(self.num_groups)} groups of {fmt.group(num.div(c, self.num_groups))} "
                            "channels, each normalized over its channels and positions, per sample")]
        if not self.affine:
            return [*lines, ("weights", "no parameters (affine = false)")]
        return [*lines, ("weights", f"weights = channels = {fmt.group(c)} (a scale γ per channel, not per group)"),
                ("biases", f"biases = channels = {fmt.group(c)} (a shift β per channel)")]

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        if quantity != "params" or not self.affine:
            return ()
        return ((num.normal(2 * self.num_groups), f"per group: GroupNorm's γ and β are per channel, "
                 f"params = 2·C = {fmt.group(2 * x[0])} (the groups only pool the statistics)"),)

    def to_torch(self, x: Shape, nn):
        return nn.GroupNorm(int(self.num_groups), int(self.channels(x)), affine=self.affine)

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.group_norm(x, num_groups, weight, bias, eps) (aten's takes the same)."""
        weight, bias = torch_argument(args, kwargs, 2, "weight"), torch_argument(args, kwargs, 3, "bias")
        if (weight is None) != (bias is None):
            raise Inexpressible("with one of weight and bias: archcalc's groupnorm has both or neither")
        return {"num_groups": torch_argument(args, kwargs, 1, "num_groups")} | ({"affine": False} if weight is None else {})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("group_norm",)
    contiguous_input = True  # measured: a permuted input is copied first, and the copy kept


@register
@dataclass(frozen=True, kw_only=True)
class InstanceNorm(ChannelAffine):
    """Normalizes each channel of each sample over its positions (no parameters unless affine)."""

    kind = "instancenorm"
    torch_modules = ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
    affine: bool = flag(False)
    track_running_stats: bool = flag(False)

    def output(self, x: Shape) -> Shape:
        if not 2 <= len(x) <= 4:
            raise SpecError(f"instancenorm needs an input [C, L], [C, H, W] or [C, D, H, W]; got {fmt.shape(x)}")
        if num.mul(x[1:]) == 1:
            raise SpecError("instancenorm over 1 value per channel: PyTorch refuses to train it",
                            "it needs more than one position per channel")
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not (grad or self.affine):
            return ()
        # torch runs batch norm on the input seen as [1, B·C, ...]: the parameters and running
        # statistics are repeated B times, new tensors that batch norm keeps
        # new tensors that batch norm keeps (in the parameters' dtype: float32 under autocast, as its statistics
        # are when γ is float32; without γ, autocast's 16-bit input has the running statistics cast to its dtype)
        repeated = [Kept("own", x[0], "param", what="γ repeated for each sample")] if self.affine else []
        if self.track_running_stats:
            stats = "param" if self.affine else "model"
            repeated += [Kept("own", x[0], stats, what="running mean repeated for each sample"),
                         Kept("own", x[0], stats, what="running variance repeated for each sample")]
        return (Kept("input", num.mul(x), what="input"), *repeated, *_stats(x[0], "param" if self.affine else "model"))

    def summary(self, x: Shape) -> str:
        return ", ".join(part for part, on in (("affine", self.affine), ("running stats", self.track_running_stats)) if on)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        lines = [("output", f"same shape: each of the {fmt.group(x[0])} channels normalized over its {fmt.group(num.mul(x[1:]))} "
                            "positions, per sample")]
        if not self.affine:
            return [*lines, ("weights", "no parameters (affine = false, PyTorch's default)")]
        c = fmt.group(x[0])
        return [*lines, ("weights", f"weights = channels = {c} (a scale γ per channel)"), ("biases", f"biases = channels = {c} (a shift β per channel)")]

    def to_torch(self, x: Shape, nn):
        return getattr(nn, f"InstanceNorm{len(x) - 1}d")(int(x[0]), affine=self.affine,
                                                         track_running_stats=self.track_running_stats)

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    contiguous_input = True  # measured: a permuted input is copied first, and the copy kept

    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        return 2 * x[0] * size + 8 if self.track_running_stats else 0

    def forward_scratch(self, x: Shape) -> Dim:
        return x[0] if self.affine else 0  # β repeated for each sample (γ's repeat is kept: keeps)

    def backward_scratch(self, x: Shape, grad: bool) -> Dim:
        return 2 * x[0] if self.affine else 0  # batch norm's backward on [1, B·C, ...]: γ and β gradients per sample

    def update_scratch(self, x: Shape) -> Dim:
        return x[0] if self.track_running_stats else 0  # running_mean.copy_(repeated.view(B, C).mean(0)), then var


@register
@dataclass(frozen=True, kw_only=True)
class RMSNorm(LastAxesNorm):
    """x / sqrt(mean(x²) + eps) over the last axes, times a scale per normalized value; no shift."""

    kind = "rmsnorm"
    torch_modules = ("RMSNorm", "LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "T5LayerNorm")
    torch_attributes = (("variance_epsilon", "eps"),)  # transformers' name
    normalized_shape: tuple | None = sizes(None, scalar=True)
    eps: Value | None = real(None, low=0)
    elementwise_affine: bool = flag(True)
    # "torch": torch.nn.RMSNorm; "llama": transformers' LlamaRMSNorm (Mistral's, Qwen2's), over the last axis: x in
    # float32, x·rsqrt(mean(x²) + eps) cast back to x's dtype, then times γ (in x's dtype: a 16-bit model keeps the
    # normalized values in 16 bits, torch's keeps them in float32)
    module: str = choice("torch", "llama", default="torch")

    def output(self, x: Shape) -> Shape:
        if self.module == "llama" and (len(_normalized(self, x)) != 1 or not self.elementwise_affine):
            raise SpecError("module = \"llama\" (transformers' LlamaRMSNorm) normalizes over the last axis, with γ",
                            "leave normalized_shape and elementwise_affine out", "module")
        return super().output(x)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        # torch 2.13 computes RMSNorm in float32 at least: a bfloat16 input is kept as a float32 copy
        groups = self.groups(x)
        llama = self.module == "llama"
        normalized = Kept("own", num.mul(x), "model" if llama else "opmath",
                          what="x/rms in x's dtype, times γ in backward" if llama else "x/rms, times γ in backward")
        if self.frozen and llama:  # γ's product keeps x/rms for γ's gradient alone
            normalized = None
        if not grad:
            return (normalized,) if self.elementwise_affine and normalized else ()
        kept = [Kept("input", num.mul(x), "opmath", what="input (in float32 at least)"),
                Kept("own", groups, "opmath", what="1/rms (one per normalized group)")]
        return (*kept, normalized) if self.elementwise_affine and normalized else tuple(kept)

    def summary(self, x: Shape) -> str:
        text = f"over {fmt.shape(_normalized(self, x))}" + ("" if self.elementwise_affine else ", affine=false")
        return text + (", Llama's" if self.module == "llama" else "")

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        shape = _normalized(self, x)
        lines = [("output", f"same shape: x / √(mean(x²) + eps) over normalized_shape {fmt.shape(shape)}, per sample"
                            + (" (in float32, cast back to x's dtype, then times γ: transformers' LlamaRMSNorm)"
                               if self.module == "llama" else ""))]
        if not self.elementwise_affine:
            return [*lines, ("weights", "no parameters (elementwise_affine = false)")]
        return [*lines, ("weights", f"weights = normalized_shape = {fmt.group(num.mul(shape))} (a scale γ; RMSNorm has no shift β)")]

    def to_torch(self, x: Shape, nn):
        eps = None if self.eps is None else float(self.eps)
        if self.module == "llama":
            return nn.LlamaRMSNorm(int(x[-1]), 1e-6 if eps is None else eps)
        return nn.RMSNorm(ints(_normalized(self, x)), eps=eps, elementwise_affine=self.elementwise_affine)

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        """transformers' RMSNorms (Llama's, Mistral's, Qwen2's; T5's T5LayerNorm, the same ops in float32) are module "llama"."""
        return {} if torch_name == "RMSNorm" else {"module": "llama"}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("rms_norm",)

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """torch 2.13 runs nn.RMSNorm as separate ops (F.rms_norm's composite, measured with a TorchDispatchMode):
        x.float() (x itself in float32: Convert), x², its mean, + eps in place, rsqrt, x·rsqrt (kept for γ's
        product), ·γ, then .type_as(x). Backward in reverse: the product's two gradients (γ's summed over the
        tokens, cast to γ's dtype), then x·rsqrt's, rsqrt's (r³ scaled), the mean's (divided), x²'s (2·x); x's
        two gradients meet in its buffer (in float32), or, for a 16-bit x, in x.float()'s, whose backward casts
        the sum back. Under autocast (no op of it on the CPU's lists) the same in its input's dtype, γ float32."""
        if self.module == "llama":
            return None if amp is not None else self._llama_program(x, grad, inplace)
        n = num.mul(x)
        d = num.mul(_normalized(self, x))
        groups = num.div(n, d)
        affine = self.elementwise_affine
        fwd: list = [Convert("xf", "x", n, "model", "opmath"), New("p", n, "opmath"), New("ms", groups, "opmath"),
                     New("r", groups, "opmath"), Drop("ms", "p"), New("xn", n, "opmath")]
        if affine:
            fwd.append(New("y", n, "opmath"))
        if not grad:  # x.float() is dropped after the last product, the rsqrt after the cast
            fwd.append(Drop("xf"))
        fwd += [Convert("out", "y", n, "opmath", "model"), Drop("y")] if affine else \
            [Convert("out", "xn", n, "opmath", "model"), Drop("xn")]
        if not grad:
            fwd.append(Drop("r"))
        bwd: list = [Convert("g32", "g", n, "model", "opmath"), Drop("g")]
        if affine:  # xn·γ
            bwd += [New("gwn", n, "opmath"), *([New("gxn", n, "opmath")] if grad else []),
                    New("grad.w", d, "opmath", per_sample=False), Drop("gwn"),
                    Convert("grad.weight", "grad.w", d, "opmath", "param", per_sample=False), Drop("grad.w", "g32", "xn")]
        else:
            bwd.append(Convert("gxn", "g32", n, "opmath", "opmath"))
            bwd.append(Drop("g32"))
        if not grad:
            return _typed(fwd, bwd, amp)
        bwd += [New("gr_n", n, "opmath"), New("gx1", n, "opmath"), New("gr", groups, "opmath"), Drop("gr_n", "gxn"),
                When(HandGradient("gx1"), low=False), When(Drop("gx1"), low=False),
                New("r3", groups, "opmath"), New("rs", groups, "opmath"), New("gms", groups, "opmath"),
                Drop("rs", "r3", "gr", "r"), New("gp", n, "opmath"), Drop("gms"),
                *_squares_backward(n, inplace)]
        return _typed(fwd, bwd, amp)

    def _llama_program(self, x: Shape, grad: bool, inplace: bool) -> Program:
        """transformers' LlamaRMSNorm op by op (measured with a TorchDispatchMode, torch 2.13): x.to(float32) (x itself in
        float32), x², its mean (x² freed), + eps out of place, rsqrt (the sum freed), x·rsqrt, .to(x's dtype), γ· that;
        the mean (a local) freed as it returns. Backward: γ's product (x's side first, then γ's, summed to γ's shape),
        the cast back, x·rsqrt's two (rsqrt's summed to its shape), rsqrt's (r³ scaled), the mean's (divided), x²'s;
        x's two gradients meet in x.float()'s buffer, for a 16-bit x cast back after."""
        n = num.mul(x)
        d = num.mul(_normalized(self, x))
        groups = num.div(n, d)
        fwd: list = [Convert("xf", "x", n, "model", "opmath"), New("p", n, "opmath"), New("ms", groups, "opmath"), Drop("p"),
                     New("v", groups, "opmath"), New("r", groups, "opmath"), Drop("v"), New("xn", n, "opmath")]
        if not grad:  # nothing before it needs a gradient: only γ's product keeps its factor
            fwd += [Drop("r", "xf")]
        fwd += [Convert("xb", "xn", n, "opmath", "model"), New("out", n), Drop("xn", "ms")]
        if self.frozen:  # γ needs no gradient: its product keeps no factor, makes no γ gradient
            fwd.append(Drop("xb"))
            bwd: list = [*([New("gxb", n)] if grad else []), Drop("g")]
        else:
            bwd = [*([New("gxb", n)] if grad else []), New("gwf", n), New("grad.weight", d, per_sample=False),
                   Drop("gwf"), Drop("g", "xb")]
        if not grad:
            return Program(tuple(fwd), tuple(bwd))
        bwd += [Convert("gxn", "gxb", n, "model", "opmath"), Drop("gxb"),
                New("grf", n, "opmath"), New("gx1", n, "opmath"), New("gr", groups, "opmath"), Drop("grf", "gxn"),
                When(HandGradient("gx1"), low=False), When(Drop("gx1"), low=False),
                New("r3", groups, "opmath"), New("r3s", groups, "opmath"), New("gv", groups, "opmath"), Drop("r3s", "r3", "gr", "r"),
                New("gp", n, "opmath"), Drop("gv"),
                *_squares_backward(n, inplace)]
        return Program(tuple(fwd), tuple(bwd))


@register
@dataclass(frozen=True, kw_only=True)
class LocalResponseNorm(Layer):
    """AlexNet's (2012) normalization across `size` neighbouring channels: b = a / (k + α/n·Σa²)^β."""

    kind = "lrn"
    torch_modules = ("LocalResponseNorm",)
    size: Dim = whole()
    alpha: Value = real(Fraction(1, 10000), low=0)
    beta: Value = real(Fraction(3, 4), low=0)
    k: Value = real(1, low=0)

    def output(self, x: Shape) -> Shape:
        if len(x) < 2:
            raise SpecError(f"lrn needs channels and positions, [C, L] or [C, H, W]; got {fmt.shape(x)}")
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not grad:
            return ()
        # F.local_response_norm in torch 2.13 is composite: it keeps the input, the squares padded
        # along the channels (C + size − 1 of them, for the average pooling), and the denominator
        # before and after the power β
        padded = num.normal((x[0] + self.size - 1) * num.mul(x[1:]))
        return (Kept("input", num.mul(x), what="input"), Kept("own", padded, what="squares, padded along the channels"),
                Kept("own", num.mul(x), what="k + α·mean of squares"), Kept("own", num.mul(x), what="(k + α·mean of squares)^β"))

    def summary(self, x: Shape) -> str:
        return f"size {fmt.group(self.size)}, α={fmt.group(self.alpha)}, β={fmt.group(self.beta)}, k={fmt.group(self.k)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"same shape: each value divided by (k + α·mean of the squares of {fmt.group(self.size)} "
                           "neighbouring channels)^β"),
                ("weights", "no parameters: α, β, k and size are fixed hyperparameters")]

    def to_torch(self, x: Shape, nn):
        return nn.LocalResponseNorm(int(self.size), alpha=float(self.alpha), beta=float(self.beta), k=float(self.k))

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """F.local_response_norm's ops one by one (torch 2.13, measured with a TorchDispatchMode): x·x, padded along
        the channels (constant_pad_nd), averaged over `size` of them (avg_pool2d/3d), ·α, + k, ^β, then x / that.
        Backward in reverse: the quotient's two gradients (the denominator's through x/d/d and −g), the power's,
        the scaling's, the pooling's (of the padded size), the pad's (cut), the square's two (x's gradients meet
        in its buffer with the quotient's). Under autocast: the generic rule (avg_pool3d runs in float32 there)."""
        if amp is not None:
            return None
        n = num.mul(x)
        padded = num.normal((x[0] + self.size - 1) * num.mul(x[1:]))
        if not grad:
            return Program((New("sq", n), New("pad", padded), Drop("sq"), New("pool", n), Drop("pad"), New("m", n),
                            New("a", n), Drop("m"), New("pw", n), Drop("a", "pool"), New("out", n), Drop("pw")), ())
        fwd = (KeepInput(), New("sq", n), New("pad", padded), Drop("sq"), New("pool", n), New("m", n),
               New("a", n), Drop("m"), New("pw", n), Drop("pool"), New("out", n))
        bwd = (New("q", n), New("q2", n), New("ng", n), New("gpw", n), Drop("ng", "q2", "q"), New("gx1", n),
               Drop("g", "pw"), HandGradient("gx1"), Drop("gx1"),
               New("pb", n), New("pbs", n), New("ga", n), Drop("pbs", "pb", "gpw", "a"),
               New("gm", n), Drop("ga"), New("gpad", padded), Drop("gm", "pad"), New("gsq", n), Drop("gpad"),
               New("gx2", n), New("gx3", n), Drop("gsq", "x"), HandGradient("gx2"), HandGradient("gx3"), Drop("gx2", "gx3"))
        return Program(fwd, bwd)


def _squares_backward(n, inplace: bool) -> list:
    """RMSNorm's last backward ops (its own and LlamaRMSNorm's): x²'s gradient (from "gp"), then x's two gradients
    ("gx1", "gx2") met in x.float()'s buffer, a 16-bit x's cast back after; "xf" (x in float32) freed."""
    bwd: list = [New("x1", n, "opmath"), New("x2s", n, "opmath"), New("gx2", n, "opmath"), Drop("x2s", "x1", "gp", "xf"),
                 When(HandGradient("gx2"), low=False), When(Drop("gx2"), low=False)]
    if inplace:  # x.float()'s buffer: the second gradient added into the first
        return [*bwd, When(Drop("gx2"), low=True), When(Convert("gx", "gx1", n, "opmath", "model"), low=True), When(Drop("gx1"), low=True)]
    return [*bwd, When(New("gs", n, "opmath"), low=True), When(Drop("gx1", "gx2"), low=True),
            When(Convert("gx", "gs", n, "opmath", "model"), low=True), When(Drop("gs"), low=True)]
