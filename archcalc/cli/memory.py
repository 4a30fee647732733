"""`archcalc memory`: the largest batch (or, with --solve, the largest size) whose training step fits a budget."""

from __future__ import annotations

import dataclasses
import sys

import click

from ..core.errors import SpecError
from ..core.units import parse_size
from ..memory.budget import largest_batch, require_sizes
from ..render import report as render
from ..report import largest_size
from .options import ANALYSIS, TABLE_OR_JSON, TRAINING, Options, shared
from .output import console


@click.command()
@shared(*ANALYSIS, TABLE_OR_JSON, *TRAINING)
@click.option("--budget", metavar="SIZE", help="Memory available: 80GiB, 24GB, 512MiB, or bytes.")
@click.option("--card", metavar="SIZE", help="A CUDA card's memory (24GB): the CUDA context is taken out first; implies --device cuda.")
@click.option("--solve", metavar="NAME", help="Solve for a size instead of the batch: H (the image side, W too), T (the sequence length).")
@click.option("--batch", "-b", metavar="B", help="The batch, with --solve.")  # its own: without --solve the batch is the answer
def memory(options: Options, budget: str | None, card: str | None, solve: str | None, batch: str | None) -> None:
    """The largest batch whose training step fits in --budget (or on a --card), and the memory at that batch.

    On CUDA the per-sample bytes are counted with the allocator's headroom under a cap (measured).
    Exits with status 1 when not even a batch of 1 fits."""
    if (budget is None) == (card is None):
        raise SpecError("give --budget SIZE or --card SIZE (one of them)", "--card 24GB: a card's memory, the CUDA context taken out",
                        where="--budget")
    options = dataclasses.replace(options, device="cuda") if card else options
    if solve is not None:
        _solve(options, solve, budget or card, card is not None, batch)
        return
    spec = options.load()
    report = options.report(spec)
    require_sizes(report, spec.text)  # a number, not a formula in the sizes left free
    fit = largest_batch(report, parse_size(budget or card), card=card is not None)
    if options.form == "json":
        click.echo(render.fit_json(fit), nl=False)
    else:
        console().print(render.fit(fit))
    if fit.batch is None:
        sys.exit(1)


def _solve(options: Options, name: str, size: str, card: bool, batch: str | None) -> None:
    """memory --solve NAME: the largest value of NAME (H: the image side, W with it) that fits at --batch."""
    if batch is None:
        raise SpecError("--solve needs --batch B: the batch to fit", where="--solve")
    options = dataclasses.replace(options, batch=batch)  # the step at --batch; the size is what is solved
    spec, values = options.load(), options.values
    solved = largest_size(spec, name, parse_size(size), card=card, **options.step(), **values)
    if options.form == "json":
        click.echo(render.solved_json(solved, batch), nl=False)
    else:
        click.echo(render.solved(solved, size, batch))
    if solved.value is None:
        sys.exit(1)
