"""Numbers, shapes and formulas as people read them: 62,378,344, 62.4M, 96×55×55, 11², 1.5 GiB."""

from __future__ import annotations

from fractions import Fraction

from . import num
from .num import Value

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def group(x: Value) -> str:
    """34848 -> '34,848'; formulas as sympy writes them."""
    if isinstance(x, bool):
        return str(x).lower()
    x = num.normal(x)  # a sympy number is written as the number it is
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, Fraction):  # grouped digits, never 1.82981e+09
        return f"{x.numerator // x.denominator:,}" if x.denominator == 1 else f"{float(x):,.6f}".rstrip("0").rstrip(".")
    return num.text(x)


def short(x: Value, unit: str = "") -> str:
    """62378344 -> '62.4M' (decimal prefixes: k, M, G, T); formulas unchanged."""
    x = num.normal(x)
    if not num.is_concrete(x):
        return num.text(x)
    value = float(x)
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            digits = f"{value / scale:.3g}" if abs(value) / scale < 100 else f"{value / scale:.0f}"
            return f"{digits} {prefix}{unit}" if unit else f"{digits}{prefix}"
    return f"{group(x)} {unit}" if unit else group(x)


def size_bytes(x: Value) -> str:
    """Bytes in binary units: 1536 -> '1.50 KiB'."""
    x = num.normal(x)
    if not num.is_concrete(x):
        return f"{x} B"
    value = float(x)
    for prefix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or prefix == "TiB":
            return f"{int(value)} B" if prefix == "B" else f"{value:.2f} {prefix}"
        value /= 1024
    raise AssertionError


def shape(s) -> str:
    """(96, 55, 55) -> '96×55×55'; symbolic sizes in parentheses when they are sums."""
    if len(s) == 1:
        return group(s[0])
    return "×".join(term(d) for d in s)


def term(x: Value) -> str:
    """A factor in a product: formulas with + or - get parentheses."""
    x = num.normal(x)
    text = group(x)
    return f"({text})" if not num.is_concrete(x) and (" + " in text or " - " in text) else text


def power(base: Value, exponent: int) -> str:
    """11, 2 -> '11²'."""
    if exponent == 1:
        return term(base)
    return f"{term(base)}{str(exponent).translate(_SUPERSCRIPT)}"


def product(factors) -> str:
    """[96, 3, 11, 11] -> '96·3·11·11' (see `kernel` for 11²)."""
    return "·".join(term(f) for f in factors)


def kernel(sizes) -> str:
    """(11, 11) -> '11²'; (3, 5) -> '3·5'."""
    if len(set(map(str, sizes))) == 1:
        return power(sizes[0], len(sizes))
    return product(sizes)


def percent(part: Value, whole: Value) -> str:
    if not (num.is_concrete(part) and num.is_concrete(whole)) or whole == 0:
        return "—"
    return f"{100 * float(part) / float(whole):.1f}%"


def per_batch(value, batch: Value | None) -> tuple[str, str]:
    """A byte count `fixed + per_sample·B` at `batch`: (in binary units, in bytes)."""
    if batch is not None:
        total = value.at(batch)
        return size_bytes(total), f"{group(total)} bytes"
    pieces = getattr(value, "pieces", None)  # a peak: the largest of several fixed + per_sample·B
    if pieces is not None and len(pieces) > 1 and not all(num.is_concrete(v) for p in pieces for v in (p.fixed, p.per_sample)):
        return f"the largest of {len(pieces)} formulas", "--format json gives them"
    if pieces is not None and len(pieces) > 1:
        texts = [per_batch(piece, None) for piece in pieces]
        return "max(" + ", ".join(t[0] for t in texts) + ")", "max(" + ", ".join(t[1].removesuffix(" bytes") for t in texts) + ") bytes"
    if pieces is not None:
        value = pieces[0]
    if not (num.is_concrete(value.fixed) and num.is_concrete(value.per_sample)):
        return str(value.at(None)), "bytes"
    if value.per_sample == 0:
        return size_bytes(value.fixed), f"{group(value.fixed)} bytes"
    scaled = f"{size_bytes(value.per_sample)} × B"
    exact = f"{group(value.per_sample)}·B"
    if value.fixed == 0:
        return scaled, f"{exact} bytes"
    return f"{size_bytes(value.fixed)} + {scaled}", f"({group(value.fixed)} + {exact}) bytes"
