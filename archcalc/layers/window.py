"""A kernel along one spatial axis: sliding (conv and pool, Window) or scattered (conv_transpose, Scatter),
with the output-size rules PyTorch has. A Window's:

    out = ⌊(n + 2p − d·(k − 1) − 1) / s⌋ + 1

With ceil_mode the division rounds up, but a window may not *start* in the right
padding (PyTorch's `pooling_output_shape`): out = min(⌈(n + 2p − d·(k−1) − 1)/s⌉ + 1, ⌈(n + p)/s⌉),
which equals PyTorch's "decrement once if the last window starts at or past n + p"
whenever p <= k/2, a rule every pooling layer already has to obey.

A Scatter's (each input value scatters a kernel into the output; output_padding must be smaller
than the stride or the dilation):

    out = (n − 1)·s − 2p + d·(k − 1) + output_padding + 1
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.num import Dim

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class Kernel:
    """A kernel along one axis of an input of size n."""

    n: Dim  # input size along the axis
    k: Dim  # kernel size
    s: Dim = 1  # stride
    p: Dim = 0  # padding on each side
    d: Dim = 1  # dilation

    @property
    def span(self) -> Dim:
        """The extent of the (dilated) kernel."""
        return self.d * (self.k - 1) + 1


@dataclass(frozen=True)
class Window(Kernel):
    """A kernel sliding over the axis (conv, pool)."""

    ceil_mode: bool = False
    same: bool = False  # padding="same": PyTorch pads d·(k−1) in all, the odd one on the right

    @property
    def room(self) -> Dim:
        """How far the kernel can move: the padded input less the kernel's span."""
        return self.n + 2 * self.p - self.span

    @property
    def fits(self) -> Dim:
        """How many windows fit in the padded input, ⌊room/s⌋ + 1: the output without ceil_mode (unchecked)."""
        return num.floordiv(self.room, self.s) + 1

    def out(self) -> Dim:
        if self.same:
            return self.n
        self.check()
        if self.ceil_mode:
            return num.minimum(num.ceildiv(self.room, self.s) + 1, num.ceildiv(self.n + self.p, self.s))
        return self.fits

    def check(self) -> None:
        # With ceil_mode, PyTorch lets the one window overhang the padded input by less than a stride.
        slack = self.s - 1 if self.ceil_mode else 0
        if num.is_nonnegative(self.room + slack) is False:
            kernel = f"kernel {fmt.group(self.k)}"
            if self.d != 1:
                kernel = f"dilated kernel {fmt.group(self.span)} (kernel {fmt.group(self.k)}, dilation {fmt.group(self.d)})"
            raise SpecError(
                f"{kernel} is larger than the padded input {fmt.group(self.n + 2 * self.p)} "
                f"(input {fmt.group(self.n)}, padding {fmt.group(self.p)})"
                + (f" by more than ceil_mode allows (less than the stride {fmt.group(self.s)})" if slack else ""),
                field="kernel_size",
            )

    def formula(self) -> str:
        """The rule with this axis's numbers in it, the way the course writes it, and its value."""
        out = self.out()
        if self.same:
            return f"{fmt.group(self.n)} (padding 'same')"
        bracket = ("⌈", "⌉") if self.ceil_mode else ("⌊", "⌋")
        pad = f" + 2·{fmt.term(self.p)}" if self.p != 0 else ""
        if self.d == 1:
            inner = f"{fmt.term(self.n)}{pad} − {fmt.term(self.k)}"
        else:
            inner = f"{fmt.term(self.n)}{pad} − {fmt.term(self.d)}·({fmt.term(self.k)} − 1) − 1"
        text = f"{bracket[0]}({inner})/{fmt.term(self.s)}{bracket[1]} + 1"
        if num.is_concrete(self.room) and num.is_concrete(self.s):
            text += f" = {bracket[0]}{fmt.group(self.room)}/{fmt.group(self.s)}{bracket[1]} + 1"
            if self.ceil_mode and out != num.ceildiv(self.room, self.s) + 1:
                text += " − 1"
        return f"{text} = {fmt.group(out)}"

    def notes(self) -> list[str]:
        """What a reader should notice: pixels a floor drops, a window ceil_mode adds or refuses."""
        if self.same or not (num.is_concrete(self.room) and num.is_concrete(self.s)):
            return []
        rest = self.room % self.s
        if not self.ceil_mode:
            if rest:
                return [
                    f"⌊{fmt.group(self.room)}/{fmt.group(self.s)}⌋ drops a remainder of {rest}: the kernel never "
                    f"reaches the last {rest} pixel{'s' * (rest > 1)} of the padded input along this axis"
                ]
            return []
        if not rest:
            return []
        last = num.ceildiv(self.room, self.s) * self.s
        if last >= self.n + self.p:
            return [
                f"ceil_mode would add a window starting at {last}, in the right padding "
                f"(≥ {fmt.group(self.n)} + {fmt.group(self.p)}): PyTorch drops it"
            ]
        return [f"ceil_mode adds a last, partial window starting at {last}"]


@dataclass(frozen=True)
class Scatter(Kernel):
    """A kernel each input value scatters into the output (conv_transpose)."""

    op: Dim = 0  # output_padding

    def out(self) -> Dim:
        if num.is_concrete(self.op) and num.is_concrete(self.s) and num.is_concrete(self.d) and self.op >= max(self.s, self.d):
            raise SpecError(
                f"output_padding {self.op} must be smaller than the stride {self.s} or the dilation {self.d}",
                "PyTorch refuses it: output_padding only adds the rows a stride > 1 leaves undecided",
                "output_padding",
            )
        out = num.normal((self.n - 1) * self.s - 2 * self.p + self.span + self.op)
        if num.is_positive(out) is False:
            raise SpecError(
                f"the output would have {fmt.group(out)} values along an axis (input {fmt.group(self.n)}, "
                f"padding {fmt.group(self.p)} crops 2·{fmt.group(self.p)} of them)",
                "a transposed convolution's padding removes rows from its output: use less padding",
                "padding",
            )
        return out

    def formula(self) -> str:
        """The rule, then with this axis's numbers in it, and its value."""
        parts = [f"({fmt.term(self.n)} − 1)·{fmt.term(self.s)}"]
        if self.p != 0:
            parts.append(f"− 2·{fmt.term(self.p)}")
        parts.append(f"+ {fmt.term(self.d)}·({fmt.term(self.k)} − 1)" if self.d != 1 else f"+ ({fmt.term(self.k)} − 1)")
        if self.op != 0:
            parts.append(f"+ {fmt.term(self.op)}")
        return f"(n − 1)·s − 2p + d·(k − 1) + output_padding + 1 = {' '.join(parts)} + 1 = {fmt.group(self.out())}"

    def notes(self) -> list[str]:
        return []

    def window(self) -> Window:
        """The window a convolution of the same numbers slides (its output: a transposed convolution's typical mistake)."""
        return Window(self.n, self.k, self.s, self.p, self.d)


def axis_lines(ws: tuple[Window, ...] | tuple[Scatter, ...]) -> list[tuple[str, str]]:
    """One line per distinct axis ('H_out = W_out = ⌊(224 + 2·2 − 11)/4⌋ + 1 = ... = 55') and its notes."""
    names = AXIS_NAMES[len(ws)]
    lines: list[tuple[str, str]] = []
    seen: dict[Window, list[str]] = {}
    for name, w in zip(names, ws):
        seen.setdefault(w, []).append(name)
    for w, axis_names in seen.items():
        lhs = " = ".join(f"{a}_out" for a in axis_names)
        lines.append(("output", f"{lhs} = {w.formula()}"))
        lines.extend(("output", f"note: {note}") for note in w.notes())
    return lines
