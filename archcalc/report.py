"""What `archcalc.analyze` returns: the analysed network (archcalc/analysis/) with its memory
(archcalc/memory/), and the JSON report of docs/design.md section 3."""

from __future__ import annotations

import dataclasses
from functools import cached_property

from .analysis.engine import network
from .analysis.network import QUANTITIES, Network, Row
from .core import num
from .core.errors import ArchcalcError, SpecError
from .layers.receptive_field import Field
from .memory import budget as budgets
from .memory.closed import Memory, measure
from .memory.timeline import CUDA_CONTEXT
from .spec.graph import Use
from .spec.read import Spec


def analyze(spec: Spec, **options) -> Report:
    """Shapes, parameters, MACs and memory of every layer (archcalc/analysis/engine.py's `network` says the options).

    >>> from archcalc import loads
    >>> spec = loads('[model]\\ninput = [10]\\n[[layers]]\\ntype = "dense"\\nout_features = "n"')
    >>> analyze(spec, n=5).totals["params"]
    55
    """
    return Report.of(network(spec, **options))


def largest_size(spec: Spec, name: str, budget: int, *, card: bool = False, **options) -> budgets.Solved:
    """The largest whole value of the size `name` whose training step fits `budget` bytes (`memory --solve`):
    H an image's side (W follows it unless given), T a sequence length. `options` are analyze's, a whole
    batch among them; with `card` the budget is a CUDA card's memory, its context taken out first."""
    whole, cuda = _whole(options.get("batch")), options.get("device") == "cuda"
    square = name == "H" and "W" not in options
    try:
        analyze(spec, **options | {name: 1} | ({"W": 1} if square else {}))
    except SpecError as error:
        if "no name" in str(error):
            raise SpecError(f"the spec has no size named {name!r} to solve for", "H for an image side, T for a sequence length",
                            where="--solve") from None
    known = []  # a report was seen whose memory has no unknown but `name`

    def at(value: int) -> Report:
        report = analyze(spec, **options | {name: value} | ({"W": value} if square else {}))
        if not known:
            _known(report, name, whole)
            known.append(report)
        return report

    return budgets.largest_size(at, name, budget - (CUDA_CONTEXT if card and cuda else 0), whole)


def _whole(batch: int | str | None) -> int:
    try:
        return int(batch)
    except (TypeError, ValueError):
        raise SpecError(f"must be a whole number, got {batch!r}", "the batch to fit: --batch 8", where="--batch") from None


def _known(report: Report, name: str, batch: int) -> None:
    """Refuse a spec whose memory depends on a size besides `name`: no value of `name` could be compared with the budget."""
    free = sorted(num.free_names(report.memory.training.at(batch)))
    if free:
        sets = " ".join(f"--set {other}=..." for other in free)
        raise ArchcalcError(f"{report.path + ': ' if report.path else ''}--solve: the memory at a given {name} is still "
                            f"a formula in {', '.join(free)}\n  hint: give {'them' if len(free) > 1 else 'it'} values: {sets}")


@dataclasses.dataclass(frozen=True)
class Report(Network):
    """A network and its memory for a batch, dtype, optimizer and device; `to_dict()` is `show --format json`."""

    @classmethod
    def of(cls, net: Network) -> Report:
        return net if isinstance(net, cls) else cls(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net)})

    @cached_property
    def memory(self) -> Memory:
        return measure(self)

    def to_dict(self) -> dict:
        """The JSON report of docs/design.md section 3."""
        layers = []
        for row, saved, field in zip(self.rows, self.memory.per_row, self.fields):
            share = self.share(row.params)
            layers.append(row.to_dict() | {
                "share": None if share is None else float(share),
                "saved_for_backward_bytes": num.to_json(saved.at(self.batch)),
            } | teaching(row, field))
        return {
            "model": self.model,
            "input": [num.to_json(d) for d in self.input],
            "output": [num.to_json(d) for d in self.output],
            **({"outputs": {row.name: [num.to_json(d) for d in row.output] for row in self.output_rows}}
               if len(self.outputs) > 1 else {}),
            "layers": layers,
            "totals": {q: num.to_json(v) for q, v in self.totals.items()},
            "by_type": {
                kind: {"params": num.to_json(p), "share": None if self.share(p) is None else float(self.share(p))}
                for kind, p in self.by_type.items()
            },
            "memory": self.memory.to_dict(),
            "values": {k: num.to_json(v) for k, v in self.values},
            "blocks": [self._use_dict(use) for use in self.uses],
        }

    def _use_dict(self, use: Use) -> dict:
        rows = self.rows[use.first:use.stop]
        out = {"path": use.path, "block": use.block, "repeat": use.repeat, "checkpoint": use.checkpoint,
               "layers": [rows[0].name, rows[-1].name], "output": [num.to_json(d) for d in rows[-1].output]}
        return out | {q: num.to_json(num.add(getattr(row, q) for row in rows)) for q in QUANTITIES}


def teaching(row: Row, field: Field | None) -> dict:
    """docs/design.md section 10's per-layer numbers: receptive field and jump per axis; a conv's dense equivalent."""
    out = {
        "receptive_field": None if field is None else [num.to_json(r) for r in field.size],
        "jump": None if field is None or field.whole else [num.to_json(j) for j in field.jump],
    }
    dense = row.layer.dense_equivalent_weights(row.input)
    return out if dense is None else out | {"dense_equivalent_weights": num.to_json(dense)}
