"""Text broken into lines that fit a width: formulas between their terms, never inside a number or a word.

A break goes before an operator, which then opens the next line (`+ 4.57 MiB × B`), the shallowest first:
the terms of a sum before the factors inside one of them, a list's items (`, `, ` · `) and words before
the characters of a word. A piece with no break left that is still too wide (a 40-digit number at 30
columns) is cut: the only case where a line ends inside a token.

>>> lines("237.95 MiB + 4.57 MiB × B", 14)
['237.95 MiB', '+ 4.57 MiB × B']
>>> lines("4096*classes + 4096*(256*floor(H/32 - 63/32) + 256)", 24)
['4096*classes', '+ 4096*(256', '*floor(H/32 - 63/32)', '+ 256)']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

NBSP = "\u00a0"  # a space never broken at: written as a plain space
_SPACED = (" + ", " - ", " × ")  # a break before the operator; its space is dropped at the break
_AFTER = (" · ", "; ", ", ")  # a break after the separator
_BEFORE = ("*", "×", "·", "→")  # a break before a factor's operator (not inside **)
_OPEN, _CLOSE = "([{⌊", ")]}⌋"


@lru_cache(maxsize=8192)
def _breaks(text: str, dots: bool = False) -> tuple[tuple[int, int, int], ...]:
    """Where `text` may break: (rank, where the next line starts, where this one ends), the lowest rank
    first. At depth d in brackets: the terms of a sum and the items of a list (` · `, `; `) rank 3d; the
    words of a phrase 3d + 1 (so `4.57 MiB` stays whole where `+` can break); the factors of a product
    3d + 2 (a product stays whole where the words around it can break), as the dots of a dotted name
    (with `dots`); a comma inside brackets ranks with the words around them, 3d - 2 (max(a + b, c) breaks
    at its comma before its plus), and 0 outside (`conv 3×3, p1, no bias` keeps `no bias`). Never beside
    an ellipsis (`layer1.0 … layer4.1`) nor before a repeat (`basic ×2`)."""
    out = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        spaced = next((op for op in _SPACED if text.startswith(op, i)), None) if c == " " else None
        after = next((op for op in _AFTER if text.startswith(op, i)), None) if not spaced and c in " ,;" else None
        if spaced:
            if i:
                out.append((3 * depth, i + 1, i))
            i += len(spaced)
            continue
        if after:
            if i:
                rank = 3 * depth - 2 if after == ", " and depth else 3 * depth
                out.append((rank, i + len(after), i + len(after.rstrip())))
            i += len(after)
            continue
        if c == " " and i and text[i - 1] != " " and i < n - 1 and text[i + 1] != "×" and not _operator(text, i) and not _ellipsis(text, i):
            out.append((3 * depth + 1, i + 1, i))
        elif _factor(text, i) or (dots and c == "." and 0 < i < n - 1):
            out.append((3 * depth + 2, i, i))
        i += 1
    return tuple(out)


def _factor(text: str, i: int) -> bool:
    """Whether a product's next factor starts at i: at `*` between two operands (never in `**`); at `×`, `·`
    or `→` only beside a bracket, so that a shape (32×112×112) or a term (60,552·B) stays whole."""
    if text[i] not in _BEFORE or i == 0 or text[i - 1] in " *" or text[i + 1: i + 2] in ("*", " ", ""):
        return False
    return text[i] == "*" or text[i - 1] in _CLOSE or text[i + 1] in _OPEN


def _ellipsis(text: str, i: int) -> bool:
    """Whether the space at i is one side of a spaced ellipsis (`layer1.0 … layer4.1`: a range, one piece)."""
    return text[i - 2: i] == " …" or text[i + 1: i + 3] in ("… ", "…")


def _operator(text: str, i: int) -> bool:
    """Whether the space at i follows an operator that opens the text (`+ 4.57`) or a flag (`--set T=…`):
    never broken from its operand."""
    if text[i - 1] in "+-×=→·" and (i == 1 or text[i - 2] == " "):
        return True
    return text.startswith("--", text.rfind(" ", 0, i) + 1)


def lines(text: str, width: int, dots: bool = False) -> list[str]:
    """`text` in lines of at most `width` terminal columns (see the module's docstring); `dots`: a dotted
    name (layer1.0.conv1) may break before a dot."""
    width = max(1, width)
    out: list[str] = []
    for paragraph in text.split("\n"):
        out += [line.replace(NBSP, " ") for line in _wrap(paragraph, width, dots)]
    return out


def _wrap(text: str, width: int, dots: bool) -> list[str]:
    if cell_len(text) <= width:
        return [text]
    breaks = _breaks(text, dots)
    if not breaks:
        return _cut(text, width)
    rank = min(b[0] for b in breaks)
    pieces, start = [], 0
    for r, begin, end in breaks:
        if r == rank:
            pieces.append((text[start:end], text[end:begin]))  # (piece, what joins it to the next on one line)
            start = begin
    pieces.append((text[start:], ""))
    out, line, joint = [], "", ""
    for piece, glue in pieces:
        if line and cell_len(line + joint + piece) <= width:
            line += joint + piece
        elif cell_len(piece) <= width:
            out += [line] if line else []
            line = piece
        else:  # broken at its own inner breaks: a term of a sum on lines of its own, a word or a factor after the one before
            inner = _wrap(piece, width, dots)
            if line and rank % 3 and cell_len(line + joint + inner[0]) <= width:
                inner[0] = line + joint + inner[0]
            elif line:
                out.append(line)
            out += inner[:-1]
            line = inner[-1]
        joint = glue
    return [*out, line] if line else out


def _cut(text: str, width: int) -> list[str]:
    """A token wider than the width, cut into pieces of it: the last resort."""
    out, line = [], ""
    for c in text:
        if cell_len(line + c) > width:
            out.append(line)
            line = ""
        line += c
    return [*out, line] if line else out


@lru_cache(maxsize=8192)
def narrowest(text: str, dots: bool = False) -> int:
    """The width below which `text` must be cut inside a token: its widest piece between any two breaks."""
    widest = 0
    for paragraph in text.split("\n"):
        start = 0
        for _, begin, end in sorted(_breaks(paragraph, dots), key=lambda b: b[1]):
            widest = max(widest, cell_len(paragraph[start:end]))
            start = begin
        widest = max(widest, cell_len(paragraph[start:]))
    return widest


@dataclass(frozen=True)
class Wrapped:
    """A text drawn in `lines` of the width it is given (a formula in a sentence broken between its terms),
    each line after `indent` blanks."""

    text: str
    style: str = ""
    indent: int = 0
    bold: int = 0  # the first characters in bold: a heading's name

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        pad = " " * self.indent
        for index, line in enumerate(lines(self.text, options.max_width - self.indent)):
            out = Text(pad + line, style=self.style, no_wrap=True, overflow="ignore")
            if index == 0 and self.bold:
                out.stylize("bold", self.indent, self.indent + self.bold)
            yield out

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(narrowest(self.text) + self.indent, max(map(cell_len, self.text.split("\n"))) + self.indent)
