"""What archcalc refuses, with the place: file, line, layer, field, problem, hint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .untrusted import one_line


class ArchcalcError(Exception):
    """Anything archcalc refuses; the command line prints it and exits with status 2."""


@dataclass(eq=False)
class SpecError(ArchcalcError):
    """A spec (or a value given for it) that cannot be analysed.

    Raised deep down with only `problem` (and `field`, `hint`) known; each level
    above fills in what it knows (`at`), so the message names the whole place:

        net.toml:41: layers[6] "conv4" (conv): kernel_size: kernel 13 is larger than the padded input 12
          hint: the previous layer "pool2" outputs 256×10×10
    """

    problem: str
    hint: str | None = None
    field: str | None = None
    where: str | None = None  # 'layers[6] "conv4" (conv)', '[model]', '[vars]', '--set'
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        path = one_line(self.path) if self.path else self.path  # a file's name is shown, never obeyed: \n, \x1b as escapes
        file = f"{path}:{self.line}" if path and self.line else path
        message = ": ".join(part for part in (file, self.where, self.field, self.problem) if part)
        return f"{message}\n  hint: {self.hint}" if self.hint else message

    def at(self, **place) -> SpecError:
        """A copy with the blanks of the place filled in (what is already known stays)."""
        fill = {k: v for k, v in place.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)


class ExprError(SpecError):
    """An expression that is malformed, or not allowed (calls, attributes, towers of powers...)."""
