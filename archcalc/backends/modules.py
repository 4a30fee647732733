"""The torch modules archcalc adds to torch.nn: the merge layers, and the module that runs a graph.

Imports torch: only the backend imports this file (a merge layer's `to_torch` does, lazily).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class Add(nn.Module):
    """The element-wise sum of its inputs, broadcasting as torch does (a residual connection)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    """The element-wise product of its inputs, broadcasting (squeeze-and-excitation gating)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    """Its inputs side by side along `dim`, an axis of one sample (0: the channels, torch's dim 1)."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim + 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


@dataclass(frozen=True)
class Step:
    """One row of the report as the graph runs it: its modules' paths, what it reads, what it frees after."""

    modules: tuple[str, ...]  # the layer's path, then its activation's
    inputs: tuple[int, ...]  # slots of the tensors it reads (0: the model's input)
    free: tuple[int, ...]  # slots no later step reads: dropped once this one has run


class Graph(nn.Module):
    """A network whose submodules sit at the spec's dotted paths (so its state_dict keys are the
    spec's layer names) and whose forward runs the report's rows in execution order, each reading
    the tensors its `from` names, every tensor dropped as soon as nothing later reads it."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {0: x}
        for slot, step in enumerate(self.steps, start=1):
            first, *rest = step.modules
            y = self.get_submodule(first)(*(values[i] for i in step.inputs))
            for name in rest:
                y = self.get_submodule(name)(y)
            values[slot] = y
            for i in step.free:
                del values[i]
        return values[len(self.steps)]
