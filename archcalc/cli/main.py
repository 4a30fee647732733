"""The `archcalc` command: the group of commands, and bad input as one message on stderr with exit status 2.

Each command lives with its family (show.py: show, draw; memory.py; check.py; teaching.py: quiz, solve;
example.py; backends.py: verify, export, bench, import) and reads its shared flags through options.py.
A command is flags in, one library call, output out; only this module catches ArchcalcError."""

from __future__ import annotations

import atexit
import gc
import os
import sys

import click

from ..core.errors import ArchcalcError
from ..core.untrusted import visible
from . import backends, check, example, memory, show, teaching


def run() -> None:
    """The `archcalc` command as a process (`python -m archcalc`, the installed script): `main` and exit,
    without the collector's last pass over every object (sympy's: a tenth of a second at exit). sympy's
    caches hold 10,000 results each rather than 1,000 (read when sympy is first imported): a deep network's
    formulas have more parts than that, and sorting them for printing computed their keys again and again
    (500 symbolic layers: 0.4 s of the JSON)."""
    os.environ.setdefault("SYMPY_CACHE_SIZE", "10000")
    atexit.register(gc.freeze)
    main()


class Commands(click.Group):
    """archcalc's commands; an ArchcalcError from any of them is its message on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ArchcalcError as error:
            click.echo(f"archcalc: {visible(str(error))}", err=True)
        except RecursionError:
            click.echo("archcalc: the input is nested too deeply to read", err=True)
        except MemoryError:
            click.echo("archcalc: the input needs more memory than this machine has", err=True)
        sys.exit(2)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archcalc")
def main() -> None:
    """Shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec."""
    for stream in (sys.stdout, sys.stderr):  # PYTHONIOENCODING=ascii: × and ² become escapes, not a traceback
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="backslashreplace")


COMMANDS = (show.show, show.draw, memory.memory, check.check, teaching.quiz, teaching.solve, example.example,
            backends.verify, backends.export, backends.bench, backends.import_)
for _command in COMMANDS:
    main.add_command(_command)
