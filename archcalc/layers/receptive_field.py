"""The receptive field of a tensor: how many input pixels, per spatial axis of the model's input, one of
its values can see, and the jump: how many input pixels lie between two neighbouring values.

A window layer (conv, pool) of kernel k, dilation d and stride s reads k values d apart:

    rf_out = rf_in + (k − 1)·d·jump_in        jump_out = jump_in·s

Element-wise layers keep both. Flatten (and reshape) gather the whole map into every value, as a
window as large as the map would: rf_out = rf_in + (n − 1)·jump_in, and the jump is gone (None):
nothing downstream can see more. The field is the theoretical one: it may pass the image's edges
(into the padding), as the usual definition has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import num
from ..core.num import Dim


@dataclass(frozen=True)
class Field:
    size: tuple[Dim, ...]  # per spatial axis of the model's input
    jump: tuple[Dim, ...] | None  # None: the value no longer has those axes (after flatten): it sees all it can

    @classmethod
    def of_input(cls, axes: int) -> Field:
        return cls((1,) * axes, (1,) * axes)

    @property
    def whole(self) -> bool:
        return self.jump is None

    def window(self, kernels, dilations, strides) -> Field:
        """Through a sliding window, one (k, d, s) per axis."""
        size = tuple(num.normal(r + (k - 1) * d * j) for r, k, d, j in zip(self.size, kernels, dilations, self.jump))
        return Field(size, tuple(num.normal(j * s) for j, s in zip(self.jump, strides)))

    def gathered(self, spatial) -> Field:
        """Every value sees the whole map of `spatial` sizes (flatten, reshape)."""
        if self.whole or len(spatial) != len(self.size):
            return Field(self.size, None)
        return Field(tuple(num.normal(r + (n - 1) * j) for r, n, j in zip(self.size, spatial, self.jump)), None)


def merge(fields) -> Field | None:
    """The worst path: the largest field and jump per axis over a layer's inputs (None if one is unknown)."""
    fields = list(fields)
    if not fields or any(f is None for f in fields):
        return None
    if len(fields) == 1:
        return fields[0]
    size = tuple(num.maximum(*axis) for axis in zip(*(f.size for f in fields)))
    if any(f.whole for f in fields):
        return Field(size, None)
    return Field(size, tuple(num.maximum(*axis) for axis in zip(*(f.jump for f in fields))))
