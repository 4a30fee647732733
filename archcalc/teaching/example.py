"""Small worked examples, as the course works them by hand: pooling, convolution and dropout on a matrix.

Every number is exact (Fractions): an average of 1, 2 and 2 is 5/3, not 1.6666666666666667.
The output sizes come from the layer classes themselves (the same rule `show` uses).

>>> worked = pool(matrix("1 3 2 0; 4 6 5 1; 7 2 8 2; 3 5 0 6"), kernel_size=2)
>>> worked.output
((6, 5), (7, 8))
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from ..core.errors import SpecError
from ..layers.conv import Conv
from ..layers.pool import Pool

MAX_SIDE = 16  # rows and columns a worked example prints legibly
MAX_CELL = 30  # characters in one number: Fraction("1e99999999") would build a hundred-million-digit integer
_EXPONENT = re.compile(r"[eE]([+-]?\d+)$")
Matrix = tuple[tuple[Fraction | int, ...], ...]


@dataclass(frozen=True)
class Step:
    at: tuple[int, ...]  # the output position
    window: tuple[tuple[int, int], ...]  # the input positions read, (row, column); padding left out
    text: str  # "max(1, 3, 4, 6) = 6"
    value: Fraction | int


@dataclass(frozen=True)
class Worked:
    kind: str  # "pool", "conv" or "dropout"
    settings: tuple[tuple[str, object], ...]  # the layer's fields as given, for the heading
    input: Matrix
    output: Matrix
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()
    extra: tuple[tuple[str, str, Matrix], ...] = ()  # (label, JSON key, matrix): a conv's kernel; dropout's mask...
    windows: bool = True  # each output reads a window of the input (dropout reads the one value in place)


def matrix(text: str, what: str = "--matrix") -> Matrix:
    """'1 3 2; 4 6 5' (rows split by ';' or new lines, numbers by spaces or commas) -> exact rows."""
    rows = [row for row in re.split(r"[;\n]", text.strip()) if row.strip()]
    if not rows:
        raise SpecError("no numbers", 'write rows split by ";", numbers split by spaces: "1 3 2; 4 6 5"', what)
    out = []
    for r, row in enumerate(rows, start=1):
        cells = [cell for cell in re.split(r"[,\s]+", row.strip()) if cell]
        values = []
        for cell in cells:
            exponent = _EXPONENT.search(cell)
            if len(cell) > MAX_CELL or (exponent and abs(int(exponent.group(1))) > MAX_CELL):
                raise SpecError(f"row {r}: {cell[:MAX_CELL]!r}{'...' * (len(cell) > MAX_CELL)} is too long a number to work by hand",
                                f"at most {MAX_CELL} characters and digits", what)
            try:
                value = Fraction(cell)
            except (ValueError, ZeroDivisionError):
                raise SpecError(f"row {r}: {cell!r} is not a number", "numbers are integers, decimals (2.5) or fractions (1/3)",
                                what) from None
            values.append(value.numerator if value.denominator == 1 else value)
        out.append(tuple(values))
    widths = {len(row) for row in out}
    if len(widths) > 1:
        lengths = ", ".join(str(len(row)) for row in out)
        raise SpecError(f"ragged rows: their lengths are {lengths}", "every row needs as many numbers as the first", what)
    if len(out) > MAX_SIDE or len(out[0]) > MAX_SIDE:
        raise SpecError(f"{len(out)}×{len(out[0])} is too big to work by hand", f"at most {MAX_SIDE}×{MAX_SIDE}", what)
    return tuple(out)


def _windows(layer, x: Matrix):
    """The layer's windows on x; sizes below 1 (a padding below 0) and outputs too big to print refused."""
    for name in ("kernel_size", "stride", "dilation", "padding"):
        given = getattr(layer, name)
        for value in given if isinstance(given, tuple) else (given,):
            if value is not None and value < (name != "padding"):
                raise SpecError(f"{name} {value} is below {int(name != 'padding')}", None, name)
    ws = layer.windows((1, len(x), len(x[0])))
    sides = [w.out() for w in ws]
    if max(sides) > MAX_SIDE:
        raise SpecError(f"the output would be {sides[0]}×{sides[1]}: too big to work by hand",
                        f"at most {MAX_SIDE}×{MAX_SIDE} (a smaller padding)", "padding")
    return ws


def _positions(ws, i: int, j: int):
    """The (row, column) taps of output (i, j), with padding: some fall outside the input."""
    (h, w) = ws
    return [(i * h.s - h.p + a * h.d, j * w.s - w.p + b * w.d) for a in range(h.k) for b in range(w.k)]


def _inside(x: Matrix, r: int, c: int) -> bool:
    return 0 <= r < len(x) and 0 <= c < len(x[0])


def pool(x: Matrix, *, op: str = "max", kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False) -> Worked:
    """Max or average pooling (PyTorch's: padding is −∞ for max, zeros counted in the average)."""
    layer = Pool(name="pool", op=op, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                 ceil_mode=ceil_mode)
    ws = _windows(layer, x)
    steps, out = [], []
    for i in range(ws[0].out()):
        row = []
        for j in range(ws[1].out()):
            taps = _positions(ws, i, j)
            inside = [(r, c) for r, c in taps if _inside(x, r, c)]
            values = [x[r][c] for r, c in inside]
            if op == "max":
                value = max(values)
                text = f"max({', '.join(map(_num, values))}) = {_num(value)}"
            else:
                value, text = _average(x, ws, i, j, values)
            row.append(value)
            steps.append(Step((i, j), tuple(inside), text, value))
        out.append(tuple(row))
    settings = (("op", op), ("kernel_size", kernel_size), ("stride", stride if stride is not None else kernel_size),
                ("padding", padding), ("dilation", dilation), ("ceil_mode", ceil_mode))
    notes = [note for w in ws for note in w.notes()]
    return Worked("pool", settings, x, tuple(out), tuple(steps), tuple(dict.fromkeys(notes)))


def _average(x: Matrix, ws, i: int, j: int, values) -> tuple[Fraction | int, str]:
    """PyTorch's divisor: the window clipped to the padded input (count_include_pad), zeros of the padding in it."""
    sizes = []
    for w, o, n in ((ws[0], i, len(x)), (ws[1], j, len(x[0]))):
        start = o * w.s - w.p
        sizes.append(min(start + w.k, n + w.p) - start)
    divisor = sizes[0] * sizes[1]
    total = sum(values, Fraction(0))
    value = _exact(total / divisor)
    padded = divisor - len(values)
    terms = " + ".join(map(_num, values)) + (f" + {padded} padding zero{'s' * (padded > 1)}" if padded else "")
    return value, f"({terms}) / {divisor} = {_num(value)}"


def conv(x: Matrix, weight: Matrix, *, stride=1, padding=0, dilation=1, bias=0) -> Worked:
    """One input channel, one filter: PyTorch's conv2d (a cross-correlation: the kernel is not flipped)."""
    layer = Conv(name="conv", out_channels=1, kernel_size=(len(weight), len(weight[0])), stride=stride, padding=padding,
                 dilation=dilation)
    ws = _windows(layer, x)
    steps, out = [], []
    bias = _exact(Fraction(bias))
    for i in range(ws[0].out()):
        row = []
        for j in range(ws[1].out()):
            taps = _positions(ws, i, j)
            kernel = [weight[a][b] for a in range(len(weight)) for b in range(len(weight[0]))]
            pairs = [(x[r][c], k) for (r, c), k in zip(taps, kernel) if _inside(x, r, c)]
            value = _exact(sum((v * k for v, k in pairs), Fraction(0)) + bias)
            products = " + ".join(f"{_num(v)}·{_num(k, True)}" for v, k in pairs) or "0"
            text = f"{products}{f' + {_num(bias)}' if bias else ''} = {_num(value)}"
            row.append(value)
            steps.append(Step((i, j), tuple((r, c) for r, c in taps if _inside(x, r, c)), text, value))
        out.append(tuple(row))
    settings = (("kernel_size", (len(weight), len(weight[0]))), ("stride", stride), ("padding", padding),
                ("dilation", dilation), ("bias", bias))
    notes = ["PyTorch's conv2d slides the kernel without flipping it (a cross-correlation); padding adds zeros"]
    notes += [note for w in ws for note in w.notes()]
    return Worked("conv", settings, x, tuple(out), tuple(steps), tuple(dict.fromkeys(notes)), (("kernel", "kernel", weight),))


def dropout(x: Matrix, *, p=Fraction(1, 2), mask: Matrix | None = None, seed: int | None = None) -> Worked:
    """Training-time dropout as PyTorch does it: dropped values become 0 where they are, the kept ones × 1/(1 − p)."""
    p = Fraction(p)
    if not 0 <= p < 1:
        raise SpecError(f"p = {_num(p)} is not a probability below 1", "0 <= p < 1 (p is the probability to drop)", "p")
    drawn = mask is None
    if drawn:
        rng = random.Random(seed)
        mask = tuple(tuple(int(rng.random() >= p) for _ in row) for row in x)
    elif len(mask) != len(x) or any(len(m) != len(r) for m, r in zip(mask, x)):
        raise SpecError(f"the mask is {len(mask)}×{len(mask[0])}, the matrix {len(x)}×{len(x[0])}", "give one 0 or 1 per value",
                        "mask")
    elif any(m not in (0, 1) for row in mask for m in row):
        raise SpecError("a mask holds only 0 (dropped) and 1 (kept)", None, "mask")
    scale = _exact(1 / (1 - p))
    steps, out = [], []
    for i, (row, keep) in enumerate(zip(x, mask)):
        values = []
        for j, (v, m) in enumerate(zip(row, keep)):
            value = _exact(v * m * scale)
            text = f"{_num(v)}·{m}·{_num(scale)} = {_num(value)}" + ("" if m else " (dropped: 0, in its place)")
            values.append(value)
            steps.append(Step((i, j), ((i, j),), text, value))
        out.append(tuple(values))
    masked = tuple(tuple(_exact(v * m) for v, m in zip(row, keep)) for row, keep in zip(x, mask))
    keep = 1 - p
    notes = (
        f"training: PyTorch zeroes each value with probability p = {_num(p)} and scales the kept ones by "
        f"1/(1 − p) = {_num(scale)} (inverted dropout), so nothing changes at test time: in eval mode the output is the input",
        "the dropped values stay in place as zeros: x ⊙ m keeps the vector's length (the notes' (2, −3, 5) removes "
        "them, an erratum: it is (2, 0, −3, 0, 5) for their example)",
        f"the notes' scheme (the original paper's) instead keeps x ⊙ m in training and multiplies by the keep "
        f"probability {_num(keep)} at test time: the same expectation, the other way round",
    )
    settings = (("p", p), ("mask", f"drawn, seed {seed}" if drawn else "given"))
    return Worked("dropout", settings, x, tuple(out), tuple(steps), notes,
                  (("mask", "mask", mask), ("x ⊙ m", "masked", masked), ("eval output", "eval_output", x)), windows=False)


def _exact(x: Fraction) -> Fraction | int:
    return x.numerator if x.denominator == 1 else x


def _num(x, bracket: bool = False) -> str:
    """5 -> '5'; 5/3 -> '5/3'; −2 -> '−2' (in brackets when it follows a product sign)."""
    text = str(x).replace("-", "−")
    return f"({text})" if bracket and (text.startswith("−") or "/" in text) else text


def text(x) -> str:
    """A value as the tables print it."""
    return _num(x)


def to_json(x):
    """Integers as JSON integers, other fractions as floats (their exact text is in the steps)."""
    return x if isinstance(x, int) else float(x)


