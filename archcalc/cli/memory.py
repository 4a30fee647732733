"""`archcalc memory`: the largest batch (or, with --solve, the largest size) whose training step fits a budget."""

from __future__ import annotations

import dataclasses
import sys

import click

from ..core.errors import SpecError
from ..core.units import parse_size
from ..memory.budget import largest_batch, require_sizes
from ..render import layouts as render_layouts, report as render
from ..report import largest_size
from ..spec.read import Spec
from . import generation
from .options import DEVICE, DTYPE, GENERATION, OPTIMIZER, PARALLEL, SETS, SPEC, TABLE_OR_JSON, TRAINING, Options, shared
from .output import console

# A budget is a GPU's question: without --device and --optimizer, CUDA and Adam (an Adam-class optimizer's state,
# the most a common run keeps), said in the output; --device cpu and --optimizer sgd as flags still.
ASSUMED = (("device", "cuda"), ("optimizer", "adam"))
FLAGS = (SPEC, SETS, DTYPE, OPTIMIZER.but(default=None, show_default=False, help="Optimizer state to count (default: adam)."),
         DEVICE.but(default=None, show_default=False, help="Where the step runs (default: cuda; cpu for host memory)."))


@click.command()
@shared(*FLAGS, TABLE_OR_JSON, *TRAINING, *GENERATION, *PARALLEL)
@click.option("--budget", metavar="SIZE", help="Memory available with its unit: 80GiB, 24GB, 512MiB; on CUDA a cap (set_per_process_memory_fraction).")
@click.option("--card", metavar="SIZE", help="A CUDA card's memory (24GB): the CUDA context is taken out first; implies --device cuda.")
@click.option("--solve", metavar="NAME", help="Solve for a size instead of the batch: H (the image side, W too), T (the sequence length).")
@click.option("--batch", "-b", metavar="B", help="The batch, with --solve.")  # its own: without --solve the batch is the answer
def memory(options: Options, budget: str | None, card: str | None, solve: str | None, batch: str | None) -> None:
    """The largest batch whose training step fits in --budget (or on a --card), and the memory at that batch.

    On CUDA (the default) the budget is a cap on what PyTorch's caching allocator reserves: the step's allocations
    are replayed through it, two warm-up steps and one more, and the largest batch that runs is found by bisection.
    With --gpus N and a --strategy, the largest batch per GPU under that layout; with --gpus N alone, the layouts
    that fit and the largest batch per GPU of each, best first. Exits with status 1 when not even a batch of 1 fits."""
    if (budget is None) == (card is None):
        raise SpecError("give --budget SIZE or --card SIZE (one of them)", "--card 24GB: a card's memory, the CUDA context taken out",
                        where="--budget")
    flag, size = ("--budget", budget) if card is None else ("--card", card)
    assumed = tuple((name, value) for name, value in ASSUMED if getattr(options, name) is None and not (card is not None and name == "device"))
    options = dataclasses.replace(options, **{name: getattr(options, name) or value for name, value in ASSUMED})
    options = dataclasses.replace(options, device="cuda") if card is not None else options
    spec = options.load()
    if generation.asked(options, spec):  # the largest batch (or prompt) whose generation fits
        generation.budget(options, spec, (flag, size), solve, batch, assumed)
        return
    if solve is not None:
        if options.gpus is not None and options.strategy is None and options.tp is None:
            raise SpecError("--solve with --gpus needs the layout: which --strategy shares the step",
                            "add --strategy ddp|zero1|fsdp|fsdp-no-reshard|tp (the layouts list answers a batch, not a size)",
                            where="--gpus")
        _solve(options, solve, size, flag, batch, assumed)
        return
    if options.gpus is not None and options.strategy is None and options.tp is None:
        _layouts(options, spec, parse_size(size, flag), card is not None, assumed)
        return
    report = options.report(spec)
    require_sizes(report, spec.text)  # a number, not a formula in the sizes left free
    fit = dataclasses.replace(largest_batch(report, parse_size(size, flag), card=card is not None), assumed=assumed)
    if options.form == "json":
        click.echo(render.fit_json(fit), nl=False)
    else:
        terminal = console()
        terminal.print(render.fit(fit, terminal.width))
    if fit.batch is None:
        sys.exit(1)


def _solve(options: Options, name: str, size: str, flag: str, batch: str | None, assumed: tuple = ()) -> None:
    """memory --solve NAME: the largest value of NAME (H: the image side, W with it) that fits at --batch."""
    if batch is None:
        raise SpecError("--solve needs --batch B: the batch to fit", where="--solve")
    options = dataclasses.replace(options, batch=batch)  # the step at --batch; the size is what is solved
    spec, values = options.load(), options.values
    solved = largest_size(spec, name, parse_size(size, flag), card=flag == "--card", **options.step(), **values)
    if options.form == "json":
        click.echo(render.solved_json(solved, batch), nl=False)
    else:
        click.echo(render.solved(solved, size, batch))
        if assumed:
            click.echo(f"assuming {' and '.join(v for _, v in assumed)}: give {'/'.join(f'--{k}' for k, _ in assumed)} to change")
    if solved.value is None:
        sys.exit(1)


def _layouts(options: Options, spec: Spec, budget: int, card: bool, assumed: tuple) -> None:
    """memory --budget SIZE --gpus N: each layout that has a per-rank model, answered as --strategy would answer it."""
    from ..core.parallel import Layout
    from ..memory import layouts

    report = dataclasses.replace(options, gpus=None).report(spec)
    require_sizes(report, spec.text)

    def answer(layout: Layout) -> layouts.Choice:
        fit = largest_batch(dataclasses.replace(report, parallel=layout), budget, card=card)
        if fit.batch is None:
            return layouts.Choice(layout, None)
        reserved = None if fit.trial is None else fit.trial.reserved  # CUDA: the replay that set the batch
        return layouts.Choice(layout, fit.batch, fit.report.memory.training.at(fit.batch), reserved=reserved)

    choices = layouts.choose(layouts.candidates(options.gpus), answer)
    if options.form == "json":
        click.echo(render_layouts.layouts_json(choices, budget, options.gpus, assumed), nl=False)
    else:
        click.echo(render_layouts.layouts(choices, budget, options.gpus, assumed, console().width), nl=False)
    if not any(c.batch for c in choices):
        sys.exit(1)
