"""Where a command's output goes: the terminal (rich), standard output, or files it writes (never the spec)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..core.errors import ArchcalcError
from ..core.untrusted import one_line, visible


def console():
    """A terminal's own width; piped into a file, wide enough that nothing folds."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


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
