"""How the true value of a claim's key comes out, as text: the lines of `show --explain` for a layer's
quantity, and sums written out for totals, layer types, shares and memory."""

from __future__ import annotations

from ..analysis import receptive
from ..core import fmt, num
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


def memory(report: Report, quantity: str) -> str:
    """The memory quantity's recipe with its numbers, then its value at the batch size."""
    m, size, dtype = report.memory, report.dtype.bytes, report.dtype
    params = report.totals["params"]
    parts = {
        "params_bytes": f"params_bytes = {fmt.group(params)} parameters × {size} bytes ({dtype})",
        "gradients_bytes": f"gradients_bytes = one gradient per parameter: {fmt.group(params)} × {size} bytes ({dtype})",
        "optimizer_bytes": f"optimizer_bytes = {m.optimizer} keeps {m.optimizer.states} cop{'y' if m.optimizer.states == 1 else 'ies'}"
                           f" of the parameters: {m.optimizer.states} × {fmt.group(m.params.fixed)}",
        "buffers_bytes": "buffers_bytes = batchnorm's running mean and variance, and its step counter",
        "input_bytes": f"input_bytes = {fmt.shape(report.input)} values × {size} bytes × B",
        "saved_for_backward_bytes": "saved_for_backward_bytes = what autograd keeps, per sample: "
        + (" + ".join(f"{row.name} {fmt.group(kept.per_sample)}" for row, kept in zip(report.rows, m.per_row)
                      if kept.per_sample != 0) or "nothing"),
        "backward_transient_bytes": "backward_transient_bytes = the largest pair of activation gradients "
                                    "(a layer's output and input) alive at once, per sample",
        "training_bytes": "training_bytes = " + " + ".join(
            f"{label} {_per_batch(part)}" for label, part in (
                ("params", m.params), ("gradients", m.gradients), ("optimizer state", m.optimizer_state),
                ("buffers", m.buffers), ("kept for backward", m.saved), ("backward transient", m.transient),
            ) if part is not m.buffers or m.buffers.fixed != 0
        ),
        "inference_bytes": "inference_bytes = params + buffers + the largest input and output of a layer, per sample",
        "course.forward_bytes": f"the course's forward memory M + B·m·L, M = {fmt.group(m.params.fixed)}, "
                                f"m = {fmt.group(m.course_m)} (the largest layer output), L = {m.course_layers} layers",
        "course.backward_bytes": "the course's backward memory done right, 2M + 2·B·m·L: a gradient per parameter (+M) "
                                 f"and the activations' gradients (+B·m·L); M = {fmt.group(m.params.fixed)}, "
                                 f"m = {fmt.group(m.course_m)}, L = {m.course_layers}",
    }
    per_batch, value = m.quantity(quantity), m.value(quantity)
    if per_batch.per_sample == 0:
        at = f"= {fmt.group(value)} bytes ({fmt.size_bytes(value)})"
    elif report.batch is None:
        at = f"= {_per_batch(per_batch)} bytes, B the batch size"
    else:
        at = f"at B = {fmt.group(report.batch)}: {_per_batch(per_batch, report.batch)} = {fmt.group(value)} bytes ({fmt.size_bytes(value)})"
    return f"{parts[quantity]}\n{at}"


def _per_batch(part, batch="B") -> str:
    """fixed + per_sample·B as the derivation writes it: '246,824 + 36,432·B', '36,432·32'."""
    slope = f"{fmt.group(part.per_sample)}·{batch if isinstance(batch, str) else fmt.group(batch)}"
    if part.per_sample == 0:
        return fmt.group(part.fixed)
    return slope if part.fixed == 0 else f"{fmt.group(part.fixed)} + {slope}"
