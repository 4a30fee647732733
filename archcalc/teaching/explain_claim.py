"""How the true value of a claim's key comes out, as text: the lines of `show --explain` for a layer's
quantity, and sums written out for totals, layer types, shares and memory."""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import receptive
from ..core import fmt, num
from ..core.dtypes import Device
from ..memory.peaks import StepBytes
from ..report import Report, Row
from . import explain_row
from .claim_keys import Key


def text(report: Report, key: Key) -> str:
    if key.scope == "memory":
        return memory(report, key.quantity)
    if key.scope == "layer":
        return layer(report, report.row(key.name), key.quantity)
    if key.scope == "group" and key.quantity == "output":
        rows = key.rows(report)
        return f"{key.name}.output = the output of its last layer, {rows[-1].name}: {fmt.shape(rows[-1].output)}"
    prefix = {"type": f"{key.name} ", "group": f"{key.name}.", "total": ""}[key.scope]
    return _sum(report, list(key.rows(report)), key.quantity, prefix)


def layer(report: Report, row: Row, quantity: str) -> str:
    """The derivation of one quantity of a row, as `show --explain` gives it."""
    if quantity == "input":
        sources = ["the network's input" if name == "input" else f"the output of {name}" for name in row.inputs]
        return f"input = {' and '.join(sources)} = {' and '.join(fmt.shape(x) for x in row.shapes)}"
    if quantity in ("receptive_field", "jump"):
        return "\n".join(line for _, line in receptive.lines(report, row))
    wanted = {
        "params": ("weights", "biases", "params"),
        "share": ("weights", "biases", "params"),
        "flops": ("macs", "flops"),
        "training_flops": ("macs", "flops", "training_flops"),
    }.get(quantity, (quantity,))
    lines = [line for q, line in explain_row.steps(row) if q in wanted]
    if not lines or (quantity in ("flops", "training_flops") and row.macs == 0):
        lines = [_nothing(row, quantity)]
    if quantity == "share":
        lines.append(_share(report, row.params, row.name))
    return "\n".join(lines)


def _nothing(row: Row, quantity: str) -> str:
    if quantity in ("macs", "flops", "training_flops"):
        return f"{row.kind} does no multiply-accumulates: {quantity} = 0 (torch counts no FLOPs for it)"
    return f"{row.kind} has no parameters: {quantity} = 0"


def _share(report: Report, params, what: str) -> str:
    total, share = report.totals["params"], report.share(params)
    if share is None:
        return f"share = {what} params / all params = {fmt.term(params)} / {fmt.term(total)}"
    return f"share = {fmt.group(params)} / {fmt.group(total)} = {float(share):.2f}% of all parameters"


def _sum(report: Report, rows, quantity: str, prefix: str) -> str:
    """'params = conv1 34,944 + conv2 614,656 + ... = 62,378,344' (layers that add nothing left out)."""
    summed = "params" if quantity == "share" else quantity
    terms = [f"{row.name} {fmt.group(getattr(row, summed))}" for row in rows if getattr(row, summed) != 0]
    total = num.add(getattr(row, summed) for row in rows)
    lines = [f"{prefix}{summed} = {' + '.join(terms) or '0'} = {fmt.group(total)}" if len(terms) != 1
             else f"{prefix}{summed} = {terms[0]}"]
    if quantity == "share":
        lines.append(_share(report, total, f"{prefix.strip()}"))
    return "\n".join(lines)


MAX_PIECES = 4  # lines fixed + per_sample·B shown for a peak before it is summed up in words
MAX_FORMULA = 160  # characters of a formula shown in a derivation: longer, it is named, not printed


def memory(report: Report, quantity: str) -> str:
    """The memory quantity's derivation, every sum in it the sum of the number it explains."""
    m = report.memory
    part = m.quantity(quantity)
    if isinstance(part, StepBytes):
        return "\n".join(_peak(report, quantity, part))
    recipe = _recipe(report, quantity)
    if not _concrete(part.fixed, part.per_sample):
        return "\n".join([recipe, _formula_note(report, part.at(report.batch))])
    if part.per_sample == 0 and recipe.endswith(f" = {fmt.group(part.fixed)}"):
        return f"{recipe} bytes ({fmt.size_bytes(part.fixed)})"
    return "\n".join([recipe, _at(report, part)])


def _concrete(*values) -> bool:
    return all(num.is_concrete(v) for v in values)


def _formula_note(report: Report, value) -> str:
    """A formula too long or too free to derive here, named by its free sizes and the --set that decides it."""
    names = sorted(num.free_names(value) - {"B"})
    text = fmt.group(value)
    if names:
        sets = " ".join(f"--set {name}=..." for name in names)
        return (f"a formula in {', '.join(names)}{' and B' if 'B' in num.free_names(value) else ''} here: "
                f"give them values ({sets}) to see it derived and as a number")
    if len(text) <= MAX_FORMULA:
        return f"= {text} bytes, B the batch size"
    return f"a formula in B of {len(text):,} characters: give the batch (@B=32, --batch 32) to see it derived"


def _at(report: Report, part) -> str:
    """'at B = 32: 246,824 + 36,432·32 = 1,412,648 bytes (1.35 MiB)': the substitution and its sum."""
    value = part.at(report.batch)
    if part.per_sample == 0:
        return f"= {fmt.group(value)} bytes ({fmt.size_bytes(value)})"
    if report.batch is None:
        return f"= {_per_batch(part)} bytes, B the batch size"
    if not num.is_concrete(report.batch):
        return _formula_note(report, value)
    return (f"at B = {fmt.group(report.batch)}: {_per_batch(part, report.batch)} = {fmt.group(value)} bytes "
            f"({fmt.size_bytes(value)})")


def _added(label: str, terms, total) -> str:
    """'label: a 1 + b 2 = 3', with the '= 3' only where the terms add up to it (they always should)."""
    terms = [(name, v) for name, v in terms if v != 0]
    if not terms:
        return f"{label}: 0"
    written = " + ".join(f"{name} {fmt.group(v)}" for name, v in terms)
    if len(terms) == 1:
        return f"{label}: {written}"
    return f"{label}: {written}" + (f" = {fmt.group(total)}" if num.add(v for _, v in terms) == total else "")


def _recipe(report: Report, quantity: str) -> str:
    """What a byte count is made of, with its numbers (each product and sum written is the number's own)."""
    m, size, dtype = report.memory, report.dtype.bytes, report.dtype
    params = report.totals["params"]
    states = m.optimizer.states

    def product(label: str, a, a_what: str, b, b_what: str, total) -> str:
        equal = num.is_concrete(a) and num.is_concrete(b) and a * b == total
        a_text = f"{fmt.group(a)} {a_what}" if a_what else fmt.group(a)
        return f"{label}{a_text} × {fmt.group(b)} {b_what}" + (f" = {fmt.group(total)}" if equal else "")

    if quantity == "params_bytes":
        return product("params_bytes = ", params, "parameters", size, f"bytes ({dtype})", m.params.fixed)
    if quantity == "gradients_bytes":
        return product("gradients_bytes = one gradient per parameter: ", params, "parameters", size, f"bytes ({dtype})",
                       m.gradients.fixed)
    if quantity == "optimizer_bytes":
        if states == 0:
            return f"optimizer_bytes = {m.optimizer} keeps no state: 0"
        return product(f"optimizer_bytes = {m.optimizer} keeps {states} cop{'y' if states == 1 else 'ies'} of the parameters: ",
                       states, "", m.params.fixed, "bytes", m.optimizer_state.fixed)
    if quantity == "buffers_bytes":
        return "buffers_bytes = batchnorm's running mean and variance, and its step counter"
    if quantity == "input_bytes":
        return product("input_bytes per sample: ", num.mul(report.input), f"values ({fmt.shape(report.input)})",
                       m.input.per_sample // num.mul(report.input) if _concrete(num.mul(report.input), m.input.per_sample)
                       and num.mul(report.input) else size, "bytes", m.input.per_sample)
    if quantity == "saved_for_backward_bytes":
        per_sample = [(row.name, kept.per_sample) for row, kept in zip(report.rows, m.per_row)]
        fixed = [(row.name, kept.fixed) for row, kept in zip(report.rows, m.per_row)]
        lines = [_added("saved_for_backward_bytes = what autograd keeps for backward, per sample", per_sample,
                      m.saved.per_sample)]
        if any(v != 0 for _, v in fixed):
            lines.append(_added("and whatever the batch", fixed, m.saved.fixed))
        return "\n".join(lines)
    if quantity == "backward_transient_bytes":
        return ("backward_transient_bytes = the largest pair of activation gradients (a layer's output's and its "
                "input's) alive at once, per sample")
    if quantity == "summed_training_bytes":
        parts = [("params", m.params), ("gradients", m.gradients), ("optimizer state", m.optimizer_state),
                 ("buffers", m.buffers), ("kept for backward", m.saved), ("backward transient", m.transient)]
        return "\n".join([
            "summed_training_bytes = every part added as if alive at once (the model before the timeline: above the peak)",
            _added("whatever the batch", [(name, p.fixed) for name, p in parts], m.summed.fixed),
            _added("per sample", [(name, p.per_sample) for name, p in parts], m.summed.per_sample),
        ])
    if quantity == "summed_inference_bytes":
        return "summed_inference_bytes = params + buffers, and per sample the largest input and output of a layer alive at once"
    if quantity == "course.forward_bytes":
        return (f"the course's forward memory M + B·m·L: M = {fmt.group(m.params.fixed)}, m = {fmt.group(m.course_m)} "
                f"(the largest layer output), L = {m.course_layers} layers; "
                + product("m·L: ", m.course_m, "bytes", m.course_layers, "layers", m.course_forward.per_sample))
    if quantity == "course.backward_bytes":
        return ("the course's backward memory done right, 2M + 2·B·m·L: a gradient per parameter (+M) and the "
                f"activations' gradients (+B·m·L); M = {fmt.group(m.params.fixed)}, m = {fmt.group(m.course_m)}, "
                f"L = {m.course_layers}; " + product("2M: ", 2, "", m.params.fixed, "bytes", m.course_backward.fixed)
                + "; " + product("2·m·L: ", 2 * m.course_m, "bytes", m.course_layers, "layers", m.course_backward.per_sample))
    return f"{quantity}"


PHASE_WHAT = {
    "step": "the training step's peak: the highest of its forward, backward and optimizer phases, each the most "
            "bytes alive at once (saved tensors are freed as backward uses them, gradients appear during it)",
    "forward": "the forward phase's peak: the most bytes alive at once while the forward pass runs",
    "backward": "the backward phase's peak: the most bytes alive at once while the backward pass runs",
    "optimizer": "the optimizer step's peak: the most bytes alive at once while it updates the parameters",
    "inference": "the peak of one forward pass in eval mode without autograd: the most bytes alive at once",
}


def _peak(report: Report, quantity: str, step: StepBytes) -> list[str]:
    """A peak derived as it is computed: the phase that sets it, what is alive there whatever the batch (fixed)
    and per sample, then the batch substituted and the sum."""
    m, batch = report.memory, report.batch
    lines = [f"{quantity} = {PHASE_WHAT[step.phase]}"]
    symbolic = m.timelines(None)
    if batch is None or not num.is_concrete(batch):
        return lines + _peak_formula(report, step, symbolic)
    line = m.timelines(batch)
    phase = step.phase
    if phase == "step":
        phase = line.peak_phase(batch)
        if phase is None:  # sizes are formulas
            return [*lines, _formula_note(report, step.at(batch))]
        highs = ", ".join(f"{name} {fmt.group(line.phases[name].at(batch))}" for name in line.phases)
        lines.append(f"at B = {fmt.group(batch)}: {highs}: the highest is {phase}'s")
    value = step.at(batch)
    if not num.is_concrete(value):
        return [*lines, _formula_note(report, value)]
    peak = line.inference if phase == "inference" else line.phases[phase]
    if m.device == Device.cpu:
        piece = _piece(symbolic.inference if phase == "inference" else symbolic.phases[phase], batch, value)
        if piece is not None:
            (fixed, per_sample), kinds = piece
            lines += [
                _added(f"alive at {phase}'s peak, whatever the batch", [(k, f) for k, (f, _) in kinds], fixed),
                _added("and per sample", [(k, p) for k, (_, p) in kinds], per_sample),
                f"at B = {fmt.group(batch)}: {fmt.group(fixed)} + {fmt.group(per_sample)}·{fmt.group(batch)} = "
                f"{fmt.group(value)} bytes ({fmt.size_bytes(value)})",
            ]
            return lines
    alive = peak.alive(batch)
    where = f"alive at {phase}'s peak"
    if m.device != Device.cpu:
        where += " (on CUDA each block is rounded up to 512 bytes, and the caching allocator leaves slack)"
    lines.append(_added(f"{where}, at B = {fmt.group(batch)}", list(alive.items()), value)
                 + f" bytes ({fmt.size_bytes(value)})")
    return lines


def _piece(peak, batch, value):
    """The line fixed + per_sample·B of a symbolic timeline's peak that is highest at `batch`, with what is alive
    on it by kind, if it gives `value` (it does on the CPU, where no block is rounded)."""
    if not all(_concrete(f, p) for (f, p), _ in peak.candidates):
        return None
    best = max(peak.candidates, key=lambda c: c[0][0] + c[0][1] * batch)
    (fixed, per_sample), kinds = best
    kinds = tuple(kinds)
    if fixed + per_sample * batch != value or num.add(f for _, (f, _) in kinds) != fixed \
            or num.add(p for _, (_, p) in kinds) != per_sample:
        return None
    return (fixed, per_sample), kinds


def _peak_formula(report: Report, step: StepBytes, symbolic) -> list[str]:
    """A peak with B a symbol: each phase's lines fixed + per_sample·B (a few, else how many), and their largest."""
    phases = {"inference": symbolic.inference} if step.phase == "inference" else (
        symbolic.phases if step.phase == "step" else {step.phase: symbolic.phases[step.phase]})
    pairs = [pair for peak in phases.values() for pair in peak.pairs]
    if not all(_concrete(*pair) for pair in pairs):
        return [_formula_note(report, step.at(None))]
    lines = []
    for name, peak in phases.items():
        pieces = list(dict.fromkeys(peak.pairs))
        written = [_per_batch(_Pair(f, p)) for f, p in pieces]
        if len(pieces) == 1:
            lines.append(f"{name}: {written[0]}")
        elif len(pieces) <= MAX_PIECES:
            lines.append(f"{name}: the largest of {', '.join(written)}")
        else:
            lines.append(f"{name}: the largest of {len(pieces)} lines, from {written[0]} to {written[-1]}")
    lines.append("give the batch (@B=32, --batch 32) to see which is highest and the sum")
    return lines


@dataclass(frozen=True)
class _Pair:
    fixed: object
    per_sample: object


def _per_batch(part, batch="B") -> str:
    """fixed + per_sample·B as the derivation writes it: '246,824 + 36,432·B', '36,432·32'."""
    slope = f"{fmt.group(part.per_sample)}·{batch if isinstance(batch, str) else fmt.group(batch)}"
    if part.per_sample == 0:
        return fmt.group(part.fixed)
    return slope if part.fixed == 0 else f"{fmt.group(part.fixed)} + {slope}"


def short(report: Report, key: Key, actual) -> str:
    """The derivation of a value that is still a formula, kept to a few lines: memory's is named, not printed."""
    if key.scope == "memory":
        return _formula_note(report, actual)
    return capped(text(report, key))


def capped(derivation: str, width: int = MAX_FORMULA * 2, lines: int = 12) -> str:
    """A derivation with no line past `width` characters and at most `lines` lines: a verdict is read, not scrolled.
    A long line keeps its start and its end (where a sum's total is), the middle elided."""
    out = []
    for line in derivation.splitlines()[:lines]:
        if len(line) > width:
            line = f"{line[:width // 2]} … ({len(line):,} characters in all) … {line[-width // 3:]}"
        out.append(line)
    if len(derivation.splitlines()) > lines:
        out.append(f"… ({len(derivation.splitlines()) - lines:,} more lines)")
    return "\n".join(out)
