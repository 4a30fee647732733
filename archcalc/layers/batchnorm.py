"""Batch normalization over the channels (torch.nn.BatchNorm1d/2d/3d), and the ChannelAffine base it shares
with group and instance normalization (norms.py): a scale γ and a shift β per channel."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.fields import flag
from ..core.num import Dim, Shape
from .base import Inexpressible, Kept, Layer, Storage, Tensor, activation_field, activation_keeps, register, torch_argument, with_activation
from .receptive_field import Field


@dataclass(frozen=True, kw_only=True)
class ChannelAffine(Layer):
    """A normalization with a scale γ (its weights) and a shift β (its biases) per channel when `affine`:
    batch, group and instance normalization. A kind on this base declares the field `affine`."""

    def weights(self, x: Shape) -> Dim:
        return self.channels(x) if self.affine else 0

    def biases(self, x: Shape) -> Dim:
        return self.channels(x) if self.affine else 0

    def channels(self, x: Shape) -> Dim:
        """The input's channels, its first axis."""
        return x[0]


@register
@dataclass(frozen=True, kw_only=True)
class BatchNorm(ChannelAffine):
    """A scale and a shift per channel (the weights and biases); running statistics are buffers, not parameters."""

    kind = "batchnorm"
    colour = "#b6d7a8"
    joins_box_before = True
    torch_modules = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
    torch_functions = torch_weighted = ("batch_norm",)
    affine: bool = flag(True)
    activation: str | None = activation_field()

    def output(self, x: Shape) -> Shape:
        return x

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        if not (grad or self.affine):
            return ()
        stats = (Kept(Tensor.own, x[0], Storage.param, per_sample=False, what="batch mean"),
                 Kept(Tensor.own, x[0], Storage.param, per_sample=False, what="batch 1/std"))
        return (Kept(Tensor.input, num.mul(x), what="input"), *stats, *activation_keeps(self.activation, y))

    def summary(self, x: Shape) -> str:
        return with_activation("" if self.affine else "affine=false", self.activation)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        if not self.affine:
            return [("weights", "no parameters (affine = false); running mean and variance are buffers")]
        c = fmt.group(x[0])
        return [
            ("weights", f"weights = channels = {c} (a scale γ per channel)"),
            ("biases", f"biases = channels = {c} (a shift β per channel); running mean and variance are buffers"),
        ]

    def receptive(self, x: Shape, field: Field) -> Field:
        return field  # element-wise

    def to_torch(self, x: Shape, nn):
        return getattr(nn, f"BatchNorm{max(len(x) - 1, 1)}d")(int(x[0]), affine=self.affine)

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps), or aten.batch_norm(x, weight,
        bias, running_mean, running_var, training, momentum, eps, cudnn_enabled) (nine arguments): timm's
        BatchNormAct2d. In training, with running statistics, as nn.BatchNorm's forward calls it."""
        if len(args) == 9:  # aten's order
            weight, bias, mean, var, training = args[1:6]
        else:
            mean, var = torch_argument(args, kwargs, 1, "running_mean"), torch_argument(args, kwargs, 2, "running_var")
            weight, bias = torch_argument(args, kwargs, 3, "weight"), torch_argument(args, kwargs, 4, "bias")
            training = torch_argument(args, kwargs, 5, "training", False)
        if training is not True:
            raise Inexpressible("with training=False (the running statistics used): archcalc's batchnorm trains")
        if mean is None or var is None:
            raise Inexpressible("without running statistics: archcalc's batchnorm keeps them (track_running_stats)")
        if (weight is None) != (bias is None):
            raise Inexpressible("with one of weight and bias: archcalc's batchnorm has both or neither")
        return {} if weight is not None else {"affine": False}

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        return 2 * x[0] * size + 8  # running mean and variance per channel, and an int64 step counter
