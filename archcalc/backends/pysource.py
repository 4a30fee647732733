"""Python source text, as export and export_graph write it: literals, shapes, safe docstrings, aligned comments."""

from __future__ import annotations

import builtins
import json
import keyword

from ..core import untrusted
from ..core.errors import SpecError
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


class Code(str):
    """Python source standing for a value (a module's constructor call): written as it is, not quoted."""

    def __repr__(self) -> str:
        return str(self)


def literal(value) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python string literal, double-quoted
    return repr(value)


def plain(text: str) -> str:
    """Spec text made safe inside the docstring: it comes from strangers and must not end it early, and what
    is not printable (a bidi override, a C1 control) is written as its escape, never raw on a terminal."""
    quoted = json.dumps(str(text), ensure_ascii=False)[1:-1]
    if quoted.isprintable():
        return quoted
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in quoted)


def where(row) -> str:
    """The place a refusal names: `layer "attn" (attention)`."""
    return f'layer "{row.name}" ({row.kind})'


def aligned(lines: list[tuple[str, str]], indent: str) -> list[str]:
    """Code lines with their comments in one column."""
    width = max((len(code) for code, note in lines if note), default=0)
    return [f"{indent}{code.ljust(width)}  # {note}" if note else f"{indent}{code}" for code, note in lines]


# Names an exported module already means something by: its imports, its helpers, Python's builtins and keywords.
RESERVED = frozenset({"torch", "nn", "F", "Namespace", "checkpoint", *dir(builtins), *keyword.kwlist, *keyword.softkwlist})


def class_name(name: object) -> str:
    """A class name given for the export (--class-name), or a SpecError saying why it cannot be one."""
    if not isinstance(name, str):
        raise TypeError(f"source(report, class_name): class_name must be a str or None, got {type(name).__name__}")
    shown = untrusted.one_line(repr(name[:60]))
    if not (name.isidentifier() and name.isascii()) or keyword.iskeyword(name) or name.startswith("__"):
        raise SpecError(f"{shown} is not a usable Python class name", "ASCII letters, digits and underscores, not starting "
                        "with a digit or two underscores, not a keyword", where="--class-name")
    if name in RESERVED:
        raise SpecError(f"{shown} is a name the exported source already uses (its imports torch, nn, F, its helpers, or "
                        "Python's builtins)", "choose another class name", where="--class-name")
    return name
