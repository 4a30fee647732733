"""`archcalc memory --budget SIZE --gpus N`: the layouts that fit, best first, as text or JSON."""

from __future__ import annotations

import json
import textwrap

from ..core import fmt
from ..memory.layouts import Choice


def _name(choice: Choice) -> str:
    layout = choice.layout
    return f"{layout.strategy} (tp {layout.tp}, dp {layout.dp})"


def layouts(choices: list[Choice], budget: int, gpus: int, assumed: tuple = (), width: int = 80) -> str:
    """A line per layout that fits (its batch per GPU, the samples a step trains over all GPUs, one GPU's peak at
    that batch: its tensors' bytes, and on CUDA what the caching allocator reserves, which sets the batch), best
    first; then those that do not fit, and those that cannot be, with why."""
    fit = [c for c in choices if c.batch]
    head = f"Layouts of {gpus} GPUs, {fmt.size_bytes(budget)} ({fmt.group(budget)} bytes) each"
    lines = [f"{head}: {'best first' if fit else 'none fits'}"]
    if fit:
        replayed = any(c.reserved is not None for c in fit)
        peak = ("allocated", "reserved") if replayed else ("peak per GPU",)  # on CUDA the replay's reserve sets the batch
        rows = [("strategy", "tp", "dp", "batch per GPU", "samples per step", *peak)]
        rows += [(str(c.layout.strategy), str(c.layout.tp), str(c.layout.dp), fmt.group(c.batch), fmt.group(c.samples),
                  fmt.size_bytes(c.peak), *([fmt.size_bytes(c.reserved)] if replayed else [])) for c in fit]
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
        lines += ["  " + "  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(r, widths)))
                  for r in rows]
    notes = [f"{_name(c)}: {c.refused or 'not even a batch of 1 fits'}" for c in choices if not c.batch]
    notes.append("batch per GPU: the samples each GPU's step holds; tensor-parallel GPUs share theirs "
                 "(samples per step: batch × dp)")
    if any(c.reserved is not None for c in fit):
        notes.append("allocated: one GPU's tensors at its step's peak; reserved: the most PyTorch's caching allocator "
                     "holds, the step replayed under the budget (what sets the batch)")
    if assumed:
        notes.append(f"assuming {' and '.join(v for _, v in assumed)}: give {'/'.join(f'--{k}' for k, _ in assumed)} to change")
    for note in notes:
        lines += textwrap.wrap(note, max(width, 40), subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def layouts_json(choices: list[Choice], budget: int, gpus: int, assumed: tuple = ()) -> str:
    data = {"budget_bytes": budget, "gpus": gpus, "layouts": [c.to_dict() for c in choices], "assumed": dict(assumed)}
    return json.dumps(data, indent=2) + "\n"
