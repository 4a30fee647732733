"""verify's checks and bench's timings as rich renderables and JSON. Never prints; imports no torch."""

from __future__ import annotations

import json as _json

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..core import fmt, num
from ..report import Report
from .bench import MIXED
from .peft_check import AgainstPeft
from .verify import QUANTITIES, Check

HEADERS = {
    "output": "output", "weights": "weights", "biases": "biases",
    "flops": "FLOPs", "training_flops": "training FLOPs", "saved_bytes": "saved bytes",
}


def _value(quantity: str, value) -> str:
    if isinstance(value, str):
        return value
    if quantity == "output" and value is not None:
        return fmt.shape(value) if all(isinstance(d, int) for d in value) else str(value)
    return fmt.group(value) if value is not None else "—"


def _cell(check: Check) -> Text:
    if check.ok and check.note and check.expected != check.measured:  # torch counts otherwise, as known: said below
        return Text.assemble(("✓ ", "green"), _value(check.quantity, check.expected), (" *", "yellow"))
    if check.ok:
        return Text.assemble(("✓ ", "green"), _value(check.quantity, check.expected))
    if check.measured is None:
        return Text.assemble(("? ", "yellow"), _value(check.quantity, check.expected), (" not measured", "yellow"))
    return Text.assemble(
        ("✗ ", "bold red"), _value(check.quantity, check.expected), (" ≠ torch ", "red"), _value(check.quantity, check.measured)
    )


def verification(report: Report, checks: list[Check], batch: int, torch_version: str,
                 peft: AgainstPeft | None = None) -> Group:
    """One line per layer, one ✓ or ✗ per quantity; a mismatch shows archcalc's value and torch's; then peft's
    checks where the spec has LoRA."""
    quantities = [q for q in QUANTITIES if any(c.quantity == q for c in checks)]
    grid = Table(
        title=Text(f"{report.model} against torch {torch_version}: batch {batch}, {report.dtype}"),  # no markup from specs
        box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    grid.add_column("layer")  # layer names are identifiers: no markup in them
    for q in quantities:
        grid.add_column(HEADERS[q], justify="left" if q == "output" else "right", overflow="fold")
    layers = list(dict.fromkeys(c.layer for c in checks))
    cells = {(c.layer, c.quantity): _cell(c) for c in checks}
    for layer in layers:
        grid.add_row(layer, *(cells.get((layer, q), Text("")) for q in quantities))
    wrong = [c for c in checks if not c.ok and c.measured is not None]
    unmeasured = [c for c in checks if c.measured is None]
    if wrong or unmeasured:
        parts = [f"{len(wrong)} of {len(checks)} checks differ from torch"] if wrong else []
        parts += [f"{len(unmeasured)} could not be measured (torch refused a layer)"] if unmeasured else []
        verdict = Text("; ".join(parts), style="bold red")
    else:
        verdict = Text(f"all {len(checks)} checks agree with torch", style="bold green")
    note = Text("FLOPs and bytes are for the whole batch; saved bytes: kept for backward, each storage credited "
                "to the first layer that keeps it", style="dim")
    known = [Text(f"* {c.layer} {HEADERS[c.quantity]}: torch " + (f"counts {_value(c.quantity, c.measured)}" if c.counted is not None
             else f"measured {_value(c.quantity, c.measured)}, not comparable") + f": {c.note}", style="yellow")
             for c in checks if c.ok and c.note and c.expected != c.measured]
    return Group(grid, note, *known, verdict, *against_peft(peft))


def against_peft(peft: AgainstPeft | None) -> list[Text]:
    """peft's checks, a line each (or the one line saying why there are none)."""
    if peft is None:
        return []
    if peft.missing:
        return [Text(peft.missing, style="yellow")]
    lines = [Text(f"LoRA against peft {peft.version}:")]
    for c in peft.checks:
        value = fmt.group(c.expected) if isinstance(c.expected, int) else c.expected
        lines.append(Text.assemble(("  ✓ ", "green"), f"{c.what}: {value}") if c.ok else
                     Text.assemble(("  ✗ ", "bold red"), f"{c.what}: " + (f"archcalc {value}, peft {fmt.group(c.measured)}"
                                                                         if isinstance(c.expected, int) else str(c.measured))))
    return lines


def verification_json(report: Report, checks: list[Check], batch: int, torch_version: str,
                      peft: AgainstPeft | None = None) -> str:
    def plain(value):
        return [num.to_json(d) for d in value] if isinstance(value, tuple) else num.to_json(value)

    data = {
        "model": report.model,
        "batch": batch,
        "dtype": str(report.dtype),
        "torch": torch_version,
        "ok": all(c.ok for c in checks),
        "checks": [
            {"layer": c.layer, "quantity": c.quantity, "expected": plain(c.expected), "measured": plain(c.measured), "ok": c.ok}
            | ({"torch_counts": plain(c.counted), "note": c.note} if c.note and c.expected != c.measured else {})
            for c in checks
        ],
    }
    if peft is not None:
        data["ok"] = data["ok"] and peft.ok
        data["peft"] = {"version": peft.version, "ok": peft.ok, "missing": peft.missing or None, "checks": [
            {"what": c.what, "expected": c.expected, "measured": c.measured, "ok": c.ok} for c in peft.checks]}
    return _json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def benchmark(result) -> Group:
    """bench's Result: one line per step kind, then memory, the peak used and the options."""
    o = result.options
    precision = f"{o.dtype} ({'autocast, float32 parameters' if o.amp else 'parameters too'})" if o.dtype in MIXED else o.dtype
    grid = Table(title=Text(f"{result.model} on {result.device}"), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("step", "ms/step", "images/s", "FLOPs/step", "TFLOP/s", "of peak"):
        grid.add_column(header, justify="left" if header == "step" else "right")
    for timing in (result.train, result.inference):
        share = result.share(timing)
        grid.add_row(
            timing.mode, f"{timing.ms_per_step:.2f}", f"{timing.images_per_s:,.0f}", fmt.short(timing.flops),
            f"{timing.tflops:.3g}", "—" if share is None else f"{share:.1f}%",
        )
    measured = fmt.size_bytes(result.memory_measured) if result.memory_measured is not None else "— (CUDA only)"
    if result.memory_predicted is not None:
        predicted = f"{fmt.size_bytes(result.memory_predicted)} (archcalc, {o.optimizer})"
    else:
        predicted = "—"
    peak = (f"{result.peak_tflops:g} TFLOP/s, {result.precision} ({result.peak_source})" if result.peak_tflops
            else f"unknown for this device in {result.precision}: give --peak-tflops")
    flags = [name for name, on in (("compile", o.compile), ("channels-last", o.channels_last), ("tf32", o.tf32)) if on]
    rows = {
        "Setup": f"batch {o.batch}, {precision}, torch {result.torch}",
        "Training memory": f"peak measured {measured} · predicted {predicted}",
        "Peak": peak,
        "Steps": f"{o.steps} timed after {o.warmup} warm-up, {o.optimizer} optimizer" + (f"; {', '.join(flags)}" if flags else ""),
        "FLOPs": "analytic, archcalc's: forward for inference; forward + backward for training",
    }
    return Group(grid, _footer(rows))


def ranks(result) -> Group:
    """bench --nproc's Result: one line per rank (its time, its peak measured and predicted), then the throughput."""
    job = result.job
    grid = Table(title=Text(f"{result.model} on {result.ranks[0].device} × {len(result.ranks)}, {job.strategy}"),
                 box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("rank", "ms/step", "peak measured", "peak predicted"):
        grid.add_column(header, justify="right")
    for rank, predicted in zip(result.ranks, result.predicted):
        measured = "— (CUDA only)" if rank.measured is None else fmt.size_bytes(rank.measured)
        grid.add_row(str(rank.rank), f"{1000 * rank.seconds / job.steps:.2f}", measured,
                     "—" if predicted is None else f"{fmt.size_bytes(predicted)} ({fmt.group(predicted)} bytes)")
    layout = result.layout
    rows = {
        "Layout": f"{layout['gpus']} ranks: tp {layout['tp']} × dp {layout['dp']} ({job.strategy})",
        "Throughput": f"{result.samples_per_s:,.0f} samples/s (batch {job.batch} per GPU × dp {layout['dp']}, the slowest rank's time)",
        "Steps": f"{job.steps} timed after {job.warmup} warm-up, {job.optimizer} optimizer, torch {result.torch}",
    }
    return Group(grid, _footer(rows))


def benchmark_json(result) -> str:
    return _json.dumps(result.to_dict(), indent=2) + "\n"


def _footer(rows: dict[str, str]) -> Table:
    """The lines under a benchmark's table: a bold label, its text folded to the width."""
    footer = Table.grid(padding=(0, 2))
    footer.add_column(style="bold", no_wrap=True)
    footer.add_column(overflow="fold")
    for label, value in rows.items():
        footer.add_row(label, Text(value))
    return footer
