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

# Element-wise functions: the `activation` layer and the `activation` field of conv, dense, batchnorm.
# The value says which tensor autograd keeps for the backward pass (measured on CPU, torch 2.13).
ACTIVATIONS: dict[str, str] = {
    "relu": "output",
    "sigmoid": "output",
    "tanh": "output",
    "gelu": "input",
    "silu": "input",
    "leaky_relu": "input",
    "elu": "input",
    "relu6": "input",
    "hardtanh": "input",
    "softplus": "input",
    "mish": "input",
    "softmax": "output",
    "log_softmax": "output",
}

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def register(cls: type[Layer]) -> type[Layer]:
    LAYERS[cls.kind] = cls
    return cls


def activation_field():
    return choice(*ACTIVATIONS, default=None)


@dataclass(frozen=True, kw_only=True)
class Layer:
    kind: ClassVar[str]
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

    def summary(self, x: Shape) -> str:
        """The hyperparameters in short form, for the table: '11×11/4, p2, relu'."""
        return ""

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        """How the numbers come out, as (quantity, text) lines for --explain."""
        return []


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


def checked_size(out: Dim, field: str, problem: str, hint: str | None = None) -> Dim:
    """Refuse an output size that is (certainly) below 1."""
    if num.is_positive(out) is False:
        raise SpecError(problem, hint, field)
    return out
