"""`archcalc memory --budget` for generation: the largest batch (or prompt) and the generation's memory there."""

from __future__ import annotations

import json as _json

from rich.console import Group
from rich.text import Text

from ..core import fmt, num
from . import wrap
from .report import _panel, generation_lines


def fit(result, width: int = 100, assumed: str = "") -> Group:
    """The answer, why, and the generation's memory at it, to fit `width`."""
    report, budget = result.report, f"{fmt.size_bytes(result.budget)} ({fmt.group(result.budget)} bytes)"
    g, batch = report.memory.generation, report.batch
    s = g.settings
    context = result.budget - result.usable
    taken = f"; the CUDA context's {fmt.size_bytes(context)} taken out first" if context else ""
    what = f"{fmt.group(s.prompt)} + {fmt.group(s.new_tokens)} tokens"
    if result.value is None:
        if result.solving == "batch":
            why = f"a batch of 1 needs {fmt.size_bytes(g.peak.at(1))} to generate {what}{taken}"
        else:
            why = f"a prompt of 1 token and {fmt.group(s.new_tokens)} new ones at batch {fmt.group(batch)} do not fit{taken}"
        head = Text.assemble((f"Not even a {'batch' if result.solving == 'batch' else 'prompt'} of 1 fits ", "bold red"),
                             budget, "\n", "\n".join(wrap.lines(why + assumed, width)))
        return head
    pieces = g.peak.pieces
    if result.solving == "batch":
        lead = ("Largest batch: ", fmt.group(result.value), f" generates {what} in {budget}\n")
        if all(num.is_concrete(p.fixed) and num.is_concrete(p.per_sample) for p in pieces):
            terms = ", ".join(f"{fmt.group(p.fixed)} + {fmt.group(p.per_sample)}·B" for p in pieces)
            why = f"the generation's peak is {'max(' + terms + ')' if len(pieces) > 1 else terms} bytes{taken}"
        else:
            why = f"B = {result.value}{taken}"
    else:
        lead = ("Largest prompt: ", fmt.group(result.value), f" tokens, then {fmt.group(s.new_tokens)} new ones at batch "
                f"{fmt.group(batch)}, in {budget}\n")
        peak = g.peak.at(batch)
        why = f"the generation's peak there is {fmt.size_bytes(peak)} ({fmt.group(peak)} bytes){taken}"
        if num.is_concrete(peak) and result.usable - peak > result.usable // 50:
            why += "; a longer prompt is refused by the network itself (more positions than it has)"
    head = Text.assemble((lead[0], "bold"), (lead[1], "bold green"), lead[2], "\n".join(wrap.lines(why + assumed, width)))
    title = f"Generation at a batch of {fmt.group(batch)}: {report.dtype}, on {report.memory.device}"
    return Group(head, Text(""), _panel(title, generation_lines(g, batch), width))


def fit_json(result, assumed: dict) -> str:
    report = result.report
    data = {
        "budget_bytes": result.budget,
        "solve": result.solving,
        result.solving: None if result.value is None else num.to_json(result.value),
        "batch": num.to_json(report.batch),
        "cuda_context_bytes": result.budget - result.usable,
        "assumed": assumed,
        "generation": report.memory.generation.to_dict(report.batch),
    }
    return _json.dumps(data, indent=2) + "\n"
