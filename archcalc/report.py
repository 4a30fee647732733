"""What `archcalc.analyze` returns: the analysed network (archcalc/analysis/) with its memory
(archcalc/memory/), and the JSON report of docs/design.md section 3."""

from __future__ import annotations

import dataclasses
from functools import cached_property

from .analysis.engine import network
from .analysis.network import QUANTITIES, Network, Row
from .core import num, untrusted
from .core.errors import ArchcalcError, SpecError
from .layers.receptive_field import Field
from .memory import budget as budgets, generation
from .memory.closed import Memory, measure
from .memory.timeline import CUDA_CONTEXT
from .memory.timeline.ranks import plan_of
from .spec import generate
from .spec.graph import Use
from .spec.read import Spec


def analyze(spec: Spec, *, prompt: int | None = None, new_tokens: int | None = None, cache: str | None = None,
            logits: str | None = None, **options) -> Report:
    """Shapes, parameters, MACs and memory of every layer (archcalc/analysis/engine.py's `network` says the options).
    `prompt`, `new_tokens`, `cache`, `logits`: generation with a KV cache, over the spec's [generate] table
    (archcalc/spec/generate.py); the sequence length is the prompt's, and `memory.generation` its bytes.

    >>> from archcalc import loads
    >>> spec = loads('[model]\\ninput = [10]\\n[[layers]]\\ntype = "dense"\\nout_features = "n"')
    >>> analyze(spec, n=5).totals["params"]
    55
    """
    if not isinstance(spec, Spec):
        return Report.of(network(spec, **options))  # network() says what a spec is
    settings = generate.merged(spec.generate, prompt, new_tokens, cache, logits)
    if settings is None:
        return Report.of(network(spec, **options))
    if any(options.get(k) is not None for k in ("strategy", "parallel")):
        raise SpecError("generation over many GPUs is not modelled", "one process: drop --gpus and --strategy",
                        where="--strategy", path=spec.path)
    name = _sequence(spec)
    if name in options and str(options[name]) != str(settings.prompt):
        raise SpecError(f"{name} = {untrusted.one_line(str(options[name]))[:40]} and a prompt of {settings.prompt:,} tokens: "
                        f"the prompt sets {name}", f"give the prompt's length once: --prompt {options[name]}", where="--set",
                        path=spec.path)
    prefill = network(spec, **options | {name: settings.prompt})
    try:  # the last token's position must exist too (GPT-2's n_ctx learned positions)
        network(spec, **options | {name: settings.tokens})
    except SpecError as error:
        raise dataclasses.replace(error, hint=f"the prompt and the new tokens make {settings.tokens:,} positions, the last "
                                              f"token's included: fewer tokens") from None
    return Report.of(prefill, generating=(settings, network(spec, **options | {name: 1})))


def _sequence(spec: Spec) -> str:
    """The name of the sequence's length: the input's first size, a name (input = ["T"])."""
    first = spec.input[0]
    names = sorted(getattr(first, "names", ()))
    if len(spec.input) != 1 or len(names) != 1 or str(first) != names[0]:
        raise SpecError("generation runs the model over the prompt, then one token at a time: the input's length must be "
                        "a name", 'input = ["T"] (T token ids)', "input", "[model]", path=spec.path)
    return names[0]


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


def largest_prompt(spec: Spec, budget: int, *, card: bool = False, **options) -> generation.Fit:
    """The largest prompt whose generation (options' new_tokens, a whole batch among them) fits `budget` bytes
    (`memory --solve T` with generation): doubling then bisection, the peak growing with the prompt; with `card` the
    budget is a CUDA card's memory, its context taken out first."""
    whole = _whole(options.get("batch"))
    usable = budget - (CUDA_CONTEXT if card and options.get("device") == "cuda" else 0)

    def at(prompt: int) -> tuple:
        try:
            report = analyze(spec, **options | {"prompt": prompt})
        except SpecError:
            return None, None  # a prompt the network cannot take (more positions than it learned) does not fit
        return report.memory.generation.peak.at(whole), report

    prompt, report = generation.largest_prompt(at, usable)
    return generation.Fit("prompt", prompt, budget, usable, report if report is not None else at(1)[1])


def largest_generation_batch(spec: Spec, budget: int, *, card: bool = False, **options) -> generation.Fit:
    """The largest batch whose generation (options' prompt and new_tokens) fits `budget` bytes (`memory --budget`
    with generation): B = min_i ⌊(budget − fixed_i) / per_sample_i⌋ over the peak's affine pieces."""
    usable = budget - (CUDA_CONTEXT if card and options.get("device") == "cuda" else 0)
    report = analyze(spec, **options | {"batch": None})
    budgets.require_sizes(report, spec.text)  # a number, not a formula in the sizes left free
    batch = generation.largest_batch(report.memory.generation, usable)
    return generation.Fit("batch", batch, budget, usable, dataclasses.replace(report, batch=1 if batch is None else batch))


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

    generating: tuple | None = None  # generation's settings and the network at T = 1 (its decode steps), where asked

    @classmethod
    def of(cls, net: Network, generating: tuple | None = None) -> Report:
        if isinstance(net, cls) and generating is None:
            return net
        return cls(**{f.name: getattr(net, f.name) for f in dataclasses.fields(Network)}, generating=generating)

    @cached_property
    def memory(self) -> Memory:
        memory = measure(self)
        if self.generating is None:
            return memory
        settings, decode = self.generating
        return dataclasses.replace(memory, generation=generation.measure(self, decode, settings))

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
            "memory": self.memory.to_dict() | parallel(self),
            "values": {k: num.to_json(v) for k, v in self.values},
            "blocks": [self._use_dict(use) for use in self.uses],
        }

    def _use_dict(self, use: Use) -> dict:
        rows = self.rows[use.first:use.stop]
        out = {"path": use.path, "block": use.block, "repeat": use.repeat, "checkpoint": use.checkpoint,
               "layers": [rows[0].name, rows[-1].name], "output": [num.to_json(d) for d in rows[-1].output]}
        return out | {q: num.to_json(num.add(getattr(row, q) for row in rows)) for q in QUANTITIES}


def parallel(report: Report) -> dict:
    """docs/design.md section 11's keys under a parallel layout: `parallel` (the layout), `communication_bytes` (per rank
    per step, by collective) and, where the ranks hold different bytes (ZeRO-1's partition, FSDP's uneven shards),
    `ranks`: each rank's phases and peak. `peak_bytes` and `phases` are already the largest rank's."""
    if report.parallel is None:
        return {}
    out = {"parallel": report.parallel.to_dict(),
           "communication_bytes": {name: num.to_json(sent) for name, sent in communication(report).items()}}
    ranks = rank_phases(report)
    if ranks is not None:
        out["ranks"] = [{"rank": r, "phases": {phase: num.to_json(v) for phase, v in phases.items()}, "peak_bytes": num.to_json(peak)}
                        for r, (phases, peak) in enumerate(ranks)]
    return out


def communication(report: Report) -> dict[str, num.Value]:
    """The bytes one rank hands to each collective in a step, at the report's batch (a formula in B without one)."""
    return plan_of(report).communication(report.batch if report.batch is not None else num.symbol("B"))


def rank_phases(report: Report) -> list[tuple[dict[str, num.Value], num.Value]] | None:
    """Each rank's phases and peak at the report's batch (formulas in B without one), where the ranks hold different
    bytes; None where every rank holds the same (ddp, tp, even shards) or the step runs in one process."""
    if report.parallel is None:
        return None
    batch = report.batch if report.batch is not None else num.symbol("B")
    lines = report.memory.timelines(report.batch).ranks
    ranks = [({phase: line.phases[phase].at(batch) for phase in line.phases}, line.peak(report.batch)) for line in lines]
    return ranks if any(phases != ranks[0][0] for phases, _ in ranks) else None


def teaching(row: Row, field: Field | None) -> dict:
    """docs/design.md section 10's per-layer numbers: receptive field and jump per axis; a conv's dense equivalent."""
    out = {
        "receptive_field": None if field is None else [num.to_json(r) for r in field.size],
        "jump": None if field is None or field.whole else [num.to_json(j) for j in field.jump],
    }
    dense = row.layer.dense_equivalent_weights(row.input)
    return out if dense is None else out | {"dense_equivalent_weights": num.to_json(dense)}
