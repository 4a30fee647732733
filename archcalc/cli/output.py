"""Where a command's output goes: the terminal (rich), standard output, or files it writes (never the spec)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ..core.errors import ArchcalcError
from ..core.untrusted import one_line, visible

PIPE_WIDTH = 80  # a pipe has no width: what the narrowest terminal we lay out for shows, and rich's own default
NARROWEST = 60  # the narrowest width the output is laid out for: below it, tables would blank cells


def console():
    """A terminal's own width; in a pipe or a file, COLUMNS (at least 60) or 80 columns, no line with trailing blanks."""
    from rich.console import Console

    terminal = Console(highlight=False)
    if terminal.is_terminal:
        return terminal
    return Console(highlight=False, width=pipe_width(), file=Trimmed(sys.stdout))


def pipe_width(environ=os.environ) -> int:
    """The width of output into a pipe: COLUMNS where it is a number, never under NARROWEST; else PIPE_WIDTH."""
    columns = environ.get("COLUMNS", "").strip()
    return max(NARROWEST, int(columns)) if columns.isdigit() and len(columns) < 6 else PIPE_WIDTH


class Trimmed:
    """A text stream that drops each line's trailing blanks (rich pads every line of a table to the console's
    width) and the empty lines at the end of the output, so that `| tail -1` reads the last line that says
    something. Blanks and line ends are held back until more text follows; those still held when the command
    ends are dropped (the last line's own line end is not held). A command writes to standard output through
    this stream only, or its lines could cross."""

    def __init__(self, out):
        self.out = out
        self.held = ""  # blanks and line ends, written only once text follows them

    def write(self, text: str) -> int:
        pending = self.held + text
        end = len(pending.rstrip(" \n"))
        if end:
            newline = pending.find("\n", end)
            cut = end if newline < 0 else newline + 1
            self.out.write(_TRAILING.sub("\n", pending[:cut]))
            pending = pending[cut:]
        self.held = _TRAILING.sub("\n", pending)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self.out, "encoding", None) or "utf-8"


_TRAILING = re.compile(" +\n")


def folder(path: str) -> None:
    """Make the folder a command writes into (and those above it)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchcalcError(f"{visible(path)}: cannot make this folder: {error.strerror or error}") from None


@dataclass(frozen=True)
class Files:
    """The files a command writes: never over `source` (the spec it read), an existing file only with --force."""

    source: str
    force: bool = False

    def check(self, path: Path, *, force: bool | None = None) -> None:
        """Refuse to write over the source, over what is not a regular file, or over a file without --force."""
        try:
            same = path.exists() and Path(self.source).exists() and path.samefile(self.source)
        except OSError:
            same = False
        if same:
            raise ArchcalcError(f"{visible(str(path))}: that is the spec itself: refusing to write over it")
        if path.exists() and not path.is_file():
            raise ArchcalcError(f"{visible(str(path))}: not a regular file: refusing to write over it")
        if path.exists() and not (self.force if force is None else force):
            raise ArchcalcError(f"{visible(str(path))}: already exists\n  hint: --force writes over it")

    def write(self, path: Path, text: str | bytes, *, again: bool = False) -> None:
        """Write a file (`again`: also over one that already holds exactly this, as a quiz drawn again with its seed)."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.check(path, force=self.force or (again and _holds(path, data)))
        try:
            path.write_bytes(data)
        except OSError as error:
            raise ArchcalcError(f"{one_line(str(path))}: cannot write it: {error.strerror or error}") from None

    def put(self, text: str, output: str) -> None:
        """Text to the file `output`, saying so on stderr; to standard output for '-'."""
        if output == "-":
            click.echo(text, nl=False)
            return
        self.write(Path(output), text)
        click.echo(f"wrote {one_line(output)}", err=True)


def _holds(path: Path, data: bytes) -> bool:
    """Whether a file already holds exactly `data`: writing it changes nothing."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False
