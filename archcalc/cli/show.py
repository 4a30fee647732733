"""`archcalc show` and `archcalc draw`: one spec's report, as a table, markdown, csv, json, or a picture."""

from __future__ import annotations

import gc
from pathlib import Path

import click

from ..core.untrusted import one_line
from ..render import report as render
from .options import ANALYSIS, BATCH, FORCE, GENERATION, OUTPUT, PARALLEL, SETS, SPEC, TABLE_OR_JSON, TRAINING, Options, shared
from .output import console

FORMAT = TABLE_OR_JSON.but(type=click.Choice([f.value for f in render.Format]))


@click.command()
@shared(*ANALYSIS, BATCH, FORMAT, *TRAINING, *GENERATION, *PARALLEL)
@click.option("--explain", is_flag=True, help="Derive every number step by step.")
@click.option("--depth", type=click.IntRange(min=1), metavar="N", help="Fold blocks deeper than N levels into one row each.")
def show(options: Options, explain: bool, depth: int | None) -> None:
    """Show the layers of SPEC: output shapes, parameters and their shares, FLOPs, memory."""
    collecting = gc.isenabled()
    gc.disable()  # one analysis makes no cyclic garbage worth the collector's passes over sympy's new objects
    try:
        _show(options, explain, depth)
    finally:
        if collecting:
            gc.enable()


def _show(options: Options, explained: bool, depth: int | None) -> None:
    report = options.report()
    if options.form == "table":
        terminal = console()
        terminal.print(render.table(report, width=terminal.width, explained=explained, depth=depth))
    elif options.form == "csv":
        if explained:
            raise click.BadParameter("csv has no room for derivations; use table, markdown or json", param_hint="--explain")
        click.echo(render.csv(report), nl=False)
    elif options.form == "markdown":
        click.echo(render.markdown(report, explained=explained, depth=depth), nl=False)
    else:
        click.echo(render.json(report, explained=explained), nl=False)


@click.command("draw")
@shared(SPEC, SETS, OUTPUT.but(required=True, default=None, show_default=False, help="net.svg, net.png or net.pdf."), FORCE)
@click.option("--depth", type=click.IntRange(min=1), metavar="N", help="Fold the layers under each dotted name of N parts into one box.")
def draw(options: Options, depth: int | None) -> None:
    """Draw SPEC: a box per tensor, sized by its shape, output shapes on the arrows (needs matplotlib)."""
    from ..render.draw import draw as picture

    options.files().check(Path(options.output))
    click.echo(f"wrote {one_line(str(picture(options.report(), options.output, depth)))}", err=True)
