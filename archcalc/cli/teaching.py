"""`archcalc quiz` and `archcalc solve`: questions drawn about a spec with their answer key; the values a claim holds for."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import click
from rich.text import Text

from ..core.untrusted import one_line
from .options import ANALYSIS, FORCE, SETS, SPEC, TABLE_OR_JSON, Options, digits, shared
from .output import console, folder


@click.command("quiz")
@shared(*ANALYSIS, FORCE)
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="How many questions.")
@click.option("--seed", "-s", type=click.IntRange(0, 2**63 - 1), help="The draw: the same seed gives the same quiz (default: a random one, printed).")
@click.option("--output", "-o", "into", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the questions, the answer key and a blank answers sheet.")
@click.option("--variants", type=click.IntRange(min=1, max=10_000), metavar="N",
              help="N students, N different networks drawn from the spec's [variants] ranges, each with its own key.")
def quiz(options: Options, count: int, seed: int | None, into: str, variants: int | None) -> None:
    """Draw questions about SPEC and write them with an answer key that `archcalc check SPEC KEY` passes."""
    seed = random.SystemRandom().randrange(10**6) if seed is None else seed
    if variants:
        _variants(options, count, seed, into, variants)
        return
    from ..teaching.quiz import draw

    drawn = draw(options.report(), count, seed, spec=options.spec)
    files = drawn.files(f"{Path(options.spec).stem}-{seed}")
    _write(options, into, files)
    paths = [one_line(str(Path(into) / name)) for name in files]
    # to the terminal's width (the file keeps the markdown as written): text, never rich markup
    console().print(Text(drawn.markdown().rstrip("\n") + "\n"), Text(f"Wrote {paths[0]} (the questions), {paths[1]} (the answer key) "
                                                      f"and {paths[2]} (a blank answers sheet)."), sep="\n")


def _variants(options: Options, count: int, seed: int, into: str, variants: int) -> None:
    from ..teaching.variants import draw, files

    quizzes = draw(options.load(), variants, count, seed, options.spec, **options.step(), **options.values)
    written = files(quizzes, f"{Path(options.spec).stem}-{seed}")
    _write(options, into, written)
    manifest = Path(into) / list(written)[-1]
    console().print(*(Text(f"variant {index}: " + ", ".join(f"{name} = {value}" for name, value in drawn.values))
                      for index, drawn in enumerate(quizzes, start=1)),
                    Text(f"Wrote {variants} quizzes, keys and answers sheets to {one_line(into)}, "
                         f"and {one_line(str(manifest))} (which student has which network)."), sep="\n")


def _write(options: Options, into: str, files: dict[str, str]) -> None:
    """A quiz's files into the folder `into`; drawn again with its seed, a quiz may write over itself."""
    folder(into)
    for name, text in files.items():
        options.files().write(Path(into) / name, text, again=True)


@click.command("solve")
@shared(SPEC, SETS, TABLE_OR_JSON)
@click.option("--for", "name", required=True, metavar="NAME", help="The unknown: a free size (H) or a [vars] name (p, k).")
@click.option("--where", "where", multiple=True, required=True, metavar="KEY=VALUE",
              help='A claim that must hold, keyed as in [expect]: pool3.output=256×6×6 (repeatable: all must hold).')
@click.option("--range", "bound", default="0..1024", show_default=True, metavar="LOW..HIGH", help="The values searched.")
def solve(options: Options, name: str, where: tuple[str, ...], bound: str) -> None:
    """Every whole value of NAME for which the claims hold, as ranges; exit 1 when there is none."""
    from ..teaching.solve import solve as values_for

    low, high = _range(bound)
    claims = {}
    for item in where:
        key, equals, value = item.rpartition("=")  # a value has no '='; a memory key may (@B=32)
        if not equals or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--where")
        claims[key.strip()] = value.strip()
    found = values_for(options.load(), name, claims, options.values, (low, high))
    if options.form == "json":
        click.echo(json.dumps(found.to_dict()))
    else:
        console().print(found.text())
    if not found.ranges:
        sys.exit(1)


def _range(bound: str) -> tuple[int, int]:
    low, dots, high = bound.partition("..")
    if not dots or not digits(low.strip()) or not digits(high.strip()):
        raise click.BadParameter(f"{bound!r} is not LOW..HIGH", param_hint="--range")
    return int(low), int(high)
