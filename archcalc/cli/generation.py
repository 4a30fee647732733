"""`archcalc memory --budget` with generation (--prompt/--new-tokens or a [generate] table): the largest batch whose
generation fits, or with --solve T the largest prompt at --batch."""

from __future__ import annotations

import dataclasses
import sys

import click

from ..core.errors import SpecError
from ..core.units import parse_size
from ..render import generation as render
from ..report import _sequence, largest_generation_batch, largest_prompt
from ..spec.read import Spec
from .options import Options
from .output import console


def asked(options: Options, spec: Spec) -> bool:
    """Whether the command line or the spec asks for generation."""
    return spec.generate is not None or any(getattr(options, k) is not None for k in ("prompt", "new_tokens", "cache", "logits"))


def budget(options: Options, spec: Spec, given: tuple[str, str], solve: str | None, batch: str | None,
           assumed: tuple = ()) -> None:
    """The largest batch (or, --solve with the sequence's name, prompt) whose generation fits; exit 1 if none does.
    `given`: the flag and the size it was given (--budget or --card)."""
    flag, size = given
    total = parse_size(size, flag)
    card = flag == "--card"
    options = dataclasses.replace(options, optimizer="none")  # no training step: its optimizer is no question here
    if solve is not None:
        name = _sequence(spec)
        if solve not in (name, "prompt"):
            raise SpecError(f"with generation, --solve {name} (or prompt) solves for the prompt's length", where="--solve")
        if batch is None:
            raise SpecError("--solve needs --batch B: the batch to fit", where="--solve")
        if spec.generate is None and options.new_tokens is None:
            raise SpecError("the largest prompt for how many new tokens?", "--new-tokens M", where="--solve")
        fit = largest_prompt(spec, total, card=card, **options.step() | {"batch": batch}, **options.values)
    else:
        fit = largest_generation_batch(spec, total, card=card, **options.step(), **options.values)
    device = [("device", fit.report.memory.device.value)] if str(fit.report.memory.device) == "cuda" else []
    shown = [(name, value) for name, value in assumed if name == "device"]
    if options.form == "json":
        click.echo(render.fit_json(fit, dict(shown)), nl=False)
    else:
        note = ""
        if shown:
            note += "\nassuming cuda: give --device to change"
        if device:
            note += "\n(the generation's timeline is the CPU's: on CUDA no caching allocator is replayed, no workspace added)"
        terminal = console()
        terminal.print(render.fit(fit, terminal.width, note))
    if fit.value is None:
        sys.exit(1)
