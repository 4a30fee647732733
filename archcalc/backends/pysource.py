"""Python source text, as export and export_graph write it: literals, shapes, safe docstrings, aligned comments."""

from __future__ import annotations

import json

from ..layers import ACTIVATIONS

SKIPPED = {"device", "dtype"}  # constructor arguments that are placement, not architecture
EXPLICIT = {"p"}  # written even when it is the default: a dropout's p is the point of the layer
ACTIVATION_CLASSES = {f.torch: name for name, f in ACTIVATIONS.items()}  # "LeakyReLU" -> "leaky_relu"
TORCH_FUNCTIONS = {"sigmoid", "tanh"}  # torch.sigmoid: F.sigmoid and F.tanh are deprecated aliases


def short(value):
    """(3, 3) -> 3: one value for every axis is what a reader writes (and means the same to torch)."""
    if isinstance(value, tuple) and value and len(set(value)) == 1:
        return value[0]
    return value


def sizes(shape) -> str:
    """(96, 55, 55) -> '96×55×55', digits not grouped: sizes, as the code writes them."""
    return "×".join(str(d) for d in shape)


def literal(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python string literal, double-quoted
    return repr(value)


def plain(text: str) -> str:
    """Spec text made safe inside the docstring: it comes from strangers and must not end it early."""
    return json.dumps(str(text), ensure_ascii=False)[1:-1]


def aligned(lines: list[tuple[str, str]], indent: str) -> list[str]:
    """Code lines with their comments in one column."""
    width = max((len(code) for code, note in lines if note), default=0)
    return [f"{indent}{code.ljust(width)}  # {note}" if note else f"{indent}{code}" for code, note in lines]
