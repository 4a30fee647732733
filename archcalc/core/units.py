"""Sizes of memory as people write them: '80GiB', '24GB', '512MiB', or a number of bytes (--budget, --card)."""

from __future__ import annotations

import re
from fractions import Fraction

from .errors import SpecError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'80GiB' -> 85899345920; GB, MB... are decimal, GiB, MiB... binary; a bare number is bytes.

    >>> parse_size("80GiB"), parse_size("24GB"), parse_size("1.5KiB")
    (85899345920, 24000000000, 1536)
    """
    match = _SIZE.match(text)
    unit = match and match.group(2).upper()
    if unit and not unit.endswith("B"):
        unit += "B"
    if not match or unit not in _UNITS:
        raise SpecError(f"cannot read {text!r} as a size", "write it like 80GiB, 24GB, 512MiB or a number of bytes", where="--budget")
    return int(Fraction(match.group(1)) * _UNITS[unit])
