"""Upsampling by a scale factor or to a size (torch.nn.Upsample, F.interpolate: segmentation's heads resize to the
input with `F.interpolate(x, size=..., mode="bilinear", align_corners=False)`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import choice, flag, real, sizes
from ..core.num import Shape
from .base import Inexpressible, Layer, TorchSize, ints, per_axis, register, spatial, torch_argument, torch_float
from .receptive_field import Field

MODES = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}  # mode -> spatial axes


@register
@dataclass(frozen=True, kw_only=True)
class Upsample(Layer):
    kind = "upsample"
    asks_shape = True
    colour = "#b4a7d6"
    torch_modules = ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")
    # F.interpolate, and the ATen operations it becomes (aten.upsample_bilinear2d.vec(x, size, align_corners, scales))
    torch_functions = ("interpolate", "upsample", *(f"upsample_{m}" for m in ("nearest1d", "nearest2d", "nearest3d", "linear1d",
                                                                              "bilinear2d", "bicubic2d", "trilinear3d")),
                       *(f"_upsample_nearest_exact{n}d" for n in (1, 2, 3)))
    scale_factor: object = real(None, low=0, per_axis=True)
    size: tuple | None = sizes(None)
    mode: str = choice(*MODES, default="nearest")
    align_corners: bool = flag(False)  # the interpolating modes (linear, bilinear, bicubic, trilinear) only, as in torch

    def output(self, x: Shape) -> Shape:
        n = spatial(x, self.kind)
        if (self.scale_factor is None) == (self.size is None):
            raise SpecError("give either scale_factor or size (one of them, not both)", None, "scale_factor")
        if MODES[self.mode] not in (None, n):
            axes = MODES[self.mode]
            fitting = ", ".join(repr(mode) for mode, needs in MODES.items() if needs in (None, n))
            raise SpecError(f"mode {self.mode!r} works on {axes} spatial ax{'is' if axes == 1 else 'es'}, the input has {n}",
                            f"modes for this input: {fitting}", "mode")
        if self.align_corners and MODES[self.mode] is None:
            raise SpecError(f"align_corners is an option of the interpolating modes, not of {self.mode!r}",
                            "PyTorch refuses it too: leave it out, or use mode = \"bilinear\" (or linear, bicubic, trilinear)",
                            "align_corners")
        if self.size is not None:
            return (x[0], *per_axis(self.size if len(self.size) > 1 else self.size[0], n, "size"))
        return (x[0], *(_scaled(d, f) for d, f in zip(x[1:], per_axis(self.scale_factor, n, "scale_factor"))))

    def summary(self, x: Shape) -> str:
        how = f"×{fmt.group(self.scale_factor)}" if self.scale_factor is not None and not isinstance(self.scale_factor, tuple) else ""
        return ", ".join(part for part in (how, self.mode, "align_corners" if self.align_corners else "") if part)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        if self.size is not None:
            return [("output", f"size given: {fmt.shape(self.output(x)[1:])}")]
        return [("output", "out = ⌊n·scale_factor⌋ per spatial axis (PyTorch multiplies in floating point)")]

    def receptive(self, x: Shape, field: Field) -> Field | None:
        # Each output reads 1 (nearest), 2 (linear modes) or 4 (bicubic) inputs per axis, at most; the jump
        # shrinks by the scale, to a fraction: a field after it is then the average over output positions.
        taps = 1 if self.mode.startswith("nearest") else 4 if self.mode == "bicubic" else 2
        y = self.output(x)
        grown = field.window([taps] * len(field.size), [1] * len(field.size), [1] * len(field.size))
        return Field(grown.size, tuple(num.div(j * n, m) for j, n, m in zip(field.jump, x[1:], y[1:])))

    def to_torch(self, x: Shape, nn):
        corners = {"align_corners": self.align_corners} if MODES[self.mode] is not None else {}
        if self.size is not None:
            return nn.Upsample(size=ints(self.output(x)[1:]), mode=self.mode, **corners)
        factor = tuple(map(float, self.scale_factor)) if isinstance(self.scale_factor, tuple) else float(self.scale_factor)
        return nn.Upsample(scale_factor=factor, mode=self.mode, **corners)

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        return {"UpsamplingNearest2d": {"mode": "nearest"},
                "UpsamplingBilinear2d": {"mode": "bilinear", "align_corners": True}}.get(torch_name, {})

    @classmethod
    def torch_value(cls, field: str, value):
        return bool(value) if field == "align_corners" else value  # torch's None is False

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias), and ATen's
        upsample_<mode><n>d(x, output_size[, align_corners], scale_factors): a size read from a tensor (segmentation's
        x.shape[-2:]) where the capture gives its value."""
        if name in ("interpolate", "upsample"):
            size, scale = torch_argument(args, kwargs, 1, "size"), torch_argument(args, kwargs, 2, "scale_factor")
            mode = torch_argument(args, kwargs, 3, "mode", "nearest")
            corners = torch_argument(args, kwargs, 4, "align_corners")
            if torch_argument(args, kwargs, 6, "antialias", False):
                raise Inexpressible("with antialias: archcalc's upsample has none")
            if torch_argument(args, kwargs, 5, "recompute_scale_factor") and scale is not None:
                raise Inexpressible("with recompute_scale_factor: write the size")
        else:
            linear = "linear" in name or "cubic" in name
            mode = name.strip("_").removeprefix("upsample_")[:-2].replace("nearest_exact", "nearest-exact")
            size = torch_argument(args, kwargs, 1, "output_size")
            corners = torch_argument(args, kwargs, 2, "align_corners") if linear else None
            scale = torch_argument(args, kwargs, 3 if linear else 2, "scale_factors")
        if mode not in MODES:
            raise Inexpressible(f"with mode {mode!r}: archcalc's upsample has {', '.join(MODES)}")
        fields: dict = {}
        if size is not None:
            size = list(size) if isinstance(size, (list, tuple)) else [size]
            values = [d.value if isinstance(d, TorchSize) else d for d in size]
            if any(v is None or isinstance(v, bool) for v in values):
                raise Inexpressible("to a size read from a tensor that archcalc cannot write (give the input's sizes as numbers)")
            fields["size"] = values
        elif scale is not None:
            scales = [torch_float(float(f)) for f in (scale if isinstance(scale, (list, tuple)) else [scale])]
            fields["scale_factor"] = scales[0] if len(set(scales)) == 1 else scales
        else:
            raise Inexpressible("with neither size nor scale_factor")
        if mode != "nearest":
            fields["mode"] = mode
        if corners and MODES[mode] is not None:
            fields["align_corners"] = True
        return fields

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        return (f"upsample_{self.mode.replace('-', '_')}{len(x) - 1}d",)


def _scaled(n, factor):
    """⌊n·factor⌋ as PyTorch computes it: in double precision, so 100·0.29 gives 28."""
    if num.is_concrete(n) and num.is_concrete(factor):
        out = math.floor(float(n) * float(factor))
    else:
        out = num.floor(n * factor)
    if num.is_positive(out) is False:
        raise SpecError(f"scale_factor {fmt.group(factor)} leaves no output of an axis of size {fmt.group(n)}", None, "scale_factor")
    return out
