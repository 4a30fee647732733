"""A kernel sliding over one spatial axis: the output-size rule of conv and pool, as PyTorch has it.

    out = ⌊(n + 2p − d·(k − 1) − 1) / s⌋ + 1

With ceil_mode the division rounds up, but a window may not *start* in the right
padding (PyTorch's `pooling_output_shape`): out = min(⌈(n + 2p − d·(k−1) − 1)/s⌉ + 1, ⌈(n + p)/s⌉),
which equals PyTorch's "decrement once if the last window starts at or past n + p"
whenever p <= k/2, a rule every pooling layer already has to obey.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.num import Dim

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class Window:
    n: Dim  # input size along the axis
    k: Dim  # kernel size
    s: Dim = 1  # stride
    p: Dim = 0  # padding on each side
    d: Dim = 1  # dilation
    ceil_mode: bool = False
    same: bool = False  # padding="same": PyTorch pads d·(k−1) in all, the odd one on the right

    @property
    def span(self) -> Dim:
        """The extent of the (dilated) kernel."""
        return self.d * (self.k - 1) + 1

    @property
    def room(self) -> Dim:
        """How far the kernel can move: the padded input less the kernel's span."""
        return self.n + 2 * self.p - self.span

    def out(self) -> Dim:
        if self.same:
            return self.n
        self.check()
        if self.ceil_mode:
            return num.minimum(num.ceildiv(self.room, self.s) + 1, num.ceildiv(self.n + self.p, self.s))
        return num.floordiv(self.room, self.s) + 1

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


def axis_lines(ws: tuple[Window, ...]) -> list[tuple[str, str]]:
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
