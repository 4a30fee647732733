"""Sizes of memory as people write them: '80GiB', '24GB', '512MiB', or a number of bytes (--budget, --card)."""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import SpecError
from .untrusted import MAX_SIZE, visible

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'80GiB' -> 85899345920; GB, MB... are decimal, GiB, MiB... binary; a bare number is bytes.

    >>> parse_size("80GiB"), parse_size("24GB"), parse_size("1.5KiB")
    (85899345920, 24000000000, 1536)
    """
    hint = "write it like 80GiB, 24GB, 512MiB or a number of bytes"
    if not isinstance(text, str) or not text.strip():  # --budget "" reaches here as None
        raise SpecError(f"cannot read {text if isinstance(text, str) else ''!r} as a size: no size given", hint, where="--budget")
    if len(text) > 40:  # no memory has a size of 40 characters; Fraction would read 5,000 digits slowly, or refuse them
        raise SpecError(f"{visible(text[:20])}... ({len(text):,} characters) is not a size: no memory is that large", hint,
                        where="--budget")
    match = _SIZE.match(text)
    unit = match and match.group(2).upper()
    if unit and not unit.endswith("B"):
        unit += "B"
    if not match or unit not in _UNITS:
        raise SpecError(f"cannot read {visible(repr(text))} as a size", hint, where="--budget")
    size = int(Fraction(match.group(1)) * _UNITS[unit])
    if size > MAX_SIZE:
        raise SpecError(f"{visible(text.strip())}: no memory is that large (sizes stop at 10^18 bytes)", hint,
                        where="--budget")
    return size
