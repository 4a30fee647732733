"""Where each table and key of a TOML text is written: the line numbers tomllib does not give.

One pass over the lines, each looked at by regular expressions anchored at its start that
cannot backtrack (no two neighbouring parts match the same characters), so the time is linear in
the text however hostile it is. Lines inside a multi-line string or a value that spans lines
(an array, an inline table) are skipped. Anything this reading gets wrong only costs precision:
a key it does not find is placed at its table's header line.

>>> tables = scan('[model]\\ninput = [3]\\n\\n[[layers]]\\ntype = "conv"\\n"kernel_size" = [\\n  3,\\n]\\nstride = 2\\n')
>>> [(t.name, t.array, t.line, t.keys) for t in tables[1:]]
[('model', False, 1, {'input': 2}), ('layers', True, 4, {'type': 5, 'kernel_size': 6, 'stride': 9})]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"[ \t]*(\[\[?)([^\[\]\n#]*)(\]\]?)[ \t]*(?:#.*)?$")
_KEY = re.compile(r"""[ \t]*(?:([A-Za-z0-9_-]+)|"([^"\\\n]*)"|'([^'\n]*)')[ \t]*[=.]""")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')
_NAME_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*'""")


@dataclass
class Table:
    """A table header (`[model]`, `[[layers]]`) or the top of the file (name ""), and the line of each key in it."""

    name: str  # dotted, without spaces or quotes: "layers", "blocks.basic.layers"
    array: bool  # [[...]]: one element of an array of tables
    line: int
    keys: dict[str, int] = field(default_factory=dict)  # the first line each key is written on

    def line_of(self, key: str) -> int:
        return self.keys.get(key, self.line)


def scan(text: str) -> list[Table]:
    """Every table of `text` in file order, the top of the file first."""
    tables = [Table("", False, 1)]
    depth = 0  # brackets and braces a value has left open
    quote = None  # the delimiter of the multi-line string the line is in
    for number, line in enumerate(text.split("\n"), start=1):
        if quote is not None:
            if line.count(quote) % 2:
                quote = None
            continue
        if depth == 0:
            if line.lstrip(" \t").startswith("["):
                header = _HEADER.match(line)
                name = header and _name(header.group(2))
                if name is not None and len(header.group(1)) == len(header.group(3)):
                    tables.append(Table(name, len(header.group(1)) == 2, number))
                    continue
            elif key := _KEY.match(line):
                tables[-1].keys.setdefault(key.group(1) or key.group(2) or key.group(3) or "", number)
        code, quote = _code(line)
        depth = max(0, depth + code.count("[") + code.count("{") - code.count("]") - code.count("}"))
    return tables


def _name(inside: str) -> str | None:
    """'blocks . "basic" . layers' -> 'blocks.basic.layers'; None if it is not a table's name."""
    parts = [part.strip(" \t") for part in inside.split(".")]
    if not all(_NAME_PART.fullmatch(part) for part in parts):
        return None
    return ".".join(part.strip("\"'") for part in parts)


def _code(line: str) -> tuple[str, str | None]:
    """The line without its strings and comment, and the delimiter of a multi-line string it opens (or None)."""
    for delimiter in ('"""', "'''"):
        if delimiter in line:
            before, _, after = line.partition(delimiter)
            if after.count(delimiter) % 2 == 0:  # it opens one that the line does not close
                return _STRING.sub("", before).partition("#")[0], delimiter
            line = before + after.rpartition(delimiter)[2]
    return _STRING.sub("", line).partition("#")[0], None
