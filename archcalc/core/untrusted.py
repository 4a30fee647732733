"""Bounds on untrusted text: files read with a size cap, TOML checked cheaply before it is parsed,
numbers too large to be a network's, control characters shown instead of obeyed.

Specs and answers files come from students and strangers. Nothing in them is ever run, and
nothing in them may hang the grader, exhaust its memory or write on its terminal: every limit
below is far above what a real network needs, and each refusal says which limit and why.

>>> problem_of_size(10**19)
'10000000000000000000 is larger than any real network (sizes stop at 10^18)'
>>> visible("Ada\\x1b[2J")
'Ada\\\\x1b[2J'
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
import unicodedata
from pathlib import Path

MAX_FILE_BYTES = 4 * 2**20  # a 10,000-layer spec is about 1 MiB; what tomllib builds from 4 MiB stays under a few 100 MiB
MAX_LINE = 10_000  # characters on one line
MAX_DIGITS = 100  # digits in a row: Python refuses to read past 4300, and no size has 100
MAX_DEPTH = 32  # nested arrays and tables: a spec or answers file needs 3 or 4
MAX_ITEMS = 100_000  # brackets, and keys (=): a 10,000-layer spec has about 60,000 of each
MAX_LAYERS = 10_000  # [[layers]] tables
MAX_ROWS = 20_000  # layers once blocks are expanded (repeated blocks inside repeated blocks multiply)
MAX_CLAIMS = 1_000  # claims in one answers file or [expect] table
MAX_SIZE = 10**18  # elements, bytes, sizes: far beyond any network that can be built
MAX_AXES = 64  # sizes in a shape (PyTorch's limit on a tensor's dimensions)

_DIGITS = re.compile(rf"(?:\d_?){{{MAX_DIGITS + 1}}}")
_BRACKETS = re.compile(r"[\[\]{}]")


def read_text(path: str | Path, what: str, error) -> str:
    """A regular file's text, at most MAX_FILE_BYTES, or `error` saying plainly why not.

    Devices, FIFOs, sockets and folders are refused before anything is read: opening is
    non-blocking, so a FIFO with no writer cannot hang the reader, and /dev/zero cannot fill memory.
    """
    path = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error("no such file", path=path) from None
    except IsADirectoryError:
        raise error(f"is a directory, not {what}", path=path) from None
    except OSError as oserror:
        raise error(f"cannot read it: {oserror.strerror or oserror}", path=path) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"is a directory, not {what}", path=path)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"not a regular file (a device, a pipe or a socket), not {what}", path=path)
        if info.st_size > MAX_FILE_BYTES:
            raise error(f"{info.st_size:,} bytes: too large for {what} (the limit is {MAX_FILE_BYTES // 2**20} MiB)", path=path)
        with os.fdopen(fd, "rb", closefd=True) as file:
            fd = None
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as oserror:
        raise error(f"cannot read it: {oserror.strerror or oserror}", path=path) from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # it grew while we read it
        raise error(f"too large for {what} (the limit is {MAX_FILE_BYTES // 2**20} MiB)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error("not a text file (it is not UTF-8)", path=path) from None


def prescan(text: str) -> tuple[str, int] | None:
    """The first thing in TOML text that is beyond a limit, as (problem, line), before tomllib reads it.

    Linear in the text. Brackets inside strings and comments count too: a real file never comes near.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > MAX_FILE_BYTES:
        return f"{len(text):,} characters: too large (the limit is {MAX_FILE_BYTES // 2**20} MiB)", 1
    lines = text.split("\n")
    if max(map(len, lines)) > MAX_LINE:
        number, line = next((n, line) for n, line in enumerate(lines, start=1) if len(line) > MAX_LINE)
        return f"line {number} is {len(line):,} characters long (the limit is {MAX_LINE:,})", number
    if found := _DIGITS.search(text):
        return f"a number with more than {MAX_DIGITS} digits: no size in a network has that many", _line(text, found.start())
    for what, count in (("arrays and tables", text.count("[") + text.count("{")), ("keys", text.count("="))):
        if count > MAX_ITEMS:
            return f"{count:,} {what}: more than any spec or answers file has (the limit is {MAX_ITEMS:,})", 1
    depth = 0
    for bracket in _BRACKETS.finditer(text):  # at most 2 * MAX_ITEMS of them
        depth = depth + 1 if bracket.group() in "[{" else max(0, depth - 1)
        if depth > MAX_DEPTH:
            return f"arrays or tables nested too deeply (more than {MAX_DEPTH} levels)", _line(text, bracket.start())
    return None


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def parse_toml(text: str, error, hint: str | None = None, **place) -> dict:
    """tomllib.loads within the limits above; anything it cannot read becomes `error`."""
    if found := prescan(text):
        problem, line = found
        raise error(f"not readable: {problem}", None, **place, line=line)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as decode:
        raise error(f"not valid TOML: {decode}", hint, **place) from None
    except (RecursionError, MemoryError, ValueError) as other:  # deep nesting; an integer past Python's limit
        raise error(f"not readable: {type(other).__name__}: {str(other)[:200]}", hint, **place) from None
    deep = _too_deep(data)
    if deep:
        raise error(f"not readable: keys nested too deeply (more than {MAX_DEPTH} levels: {deep}...)", None, **place)
    return data


def _too_deep(data: dict) -> str | None:
    """The start of a dotted key nested past MAX_DEPTH (`a.a.a... = 1` makes tables tomllib never recursed for)."""
    stack = [(data, 0, "")]
    while stack:
        table, depth, path = stack.pop()
        for key, value in table.items():
            if isinstance(value, dict):
                if depth + 1 > MAX_DEPTH:
                    return visible(path[:60])
                stack.append((value, depth + 1, f"{path}.{key}" if path else key))
    return None


def problem_of_size(x: object) -> str | None:
    """Why a concrete number cannot be a size, element count or byte count of a real network, if it cannot."""
    try:
        too_big = abs(x) > MAX_SIZE
    except TypeError:
        return None
    if too_big is True:
        shown = str(x) if len(str(x)) <= 40 else f"a number of {len(str(int(abs(x))))} digits"
        return f"{shown} is larger than any real network (sizes stop at 10^18)"
    return None


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def visible(text: str) -> str:
    """Control characters shown as escapes (\\x1b, \\u202e), so that text from a file cannot drive a terminal."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c == "\n" or c == "\t":
            out.append(c)
        elif unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") or c in _BIDI:
            out.append(repr(c)[1:-1] if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return "".join(out)


def one_line(text: str) -> str:
    """`visible`, with line breaks and tabs shown too: for a name, a key, a value in a table cell."""
    return visible(text).replace("\n", "\\n").replace("\t", "\\t")


def name(text: str) -> str:
    """An identifier as Python and archcalc's expressions read it: NFKC-normalised ('µ' and 'μ' are one name)."""
    return unicodedata.normalize("NFKC", text)


# Compatibility forms that NFKC turns into a letter or digit of a different look: styled letters (ℌ, 𝐇, ℍ,
# ℋ, 𝔥: mathematics writes them as symbols distinct from H and h) and super- and subscripts (ᵢ, ²).
_STYLED = ("<font>", "<super>", "<sub>")


def styled_problem(text: str) -> str | None:
    """Why a name (or a formula's text) may not hold a styled letter, or None: Python reads 'ℌ' as 'H', so
    the two would silently be one symbol, though they read as two.

    >>> styled_problem("ℌ")
    "'ℌ' (BLACK-LETTER CAPITAL H) would be one name with 'H' (Python reads names NFKC-normalised): write 'H', or another name"
    """
    if text.isascii():
        return None
    for c in text:
        if unicodedata.decomposition(c).startswith(_STYLED):
            plain = unicodedata.normalize("NFKC", c)
            return (f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')}) would be one name with {plain!r} "
                    f"(Python reads names NFKC-normalised): write {plain!r}, or another name")
    return None


def segment_problem(segment: str, *, index: bool = False) -> str | None:
    """Why one segment of a (dotted) name is not usable, or None. `index`: a whole number is allowed (layer1.0)."""
    if index and segment.isdigit() and segment.isascii():
        return None
    if not segment.isidentifier():
        return "not a name"
    if segment.startswith("__"):
        return "starts with two underscores, which Python mangles inside a class"
    return None
