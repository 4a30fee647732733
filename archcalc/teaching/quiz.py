"""Quizzes: questions drawn about one network, with an answer key that `archcalc check` accepts.

The same seed gives the same quiz: every draw goes through one random.Random(seed).

>>> import archcalc
>>> report = archcalc.analyze(archcalc.load("specs/lenet5.toml"))
>>> [q.key for q in draw(report, 3, seed=1).questions] == [q.key for q in draw(report, 3, seed=1).questions]
True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from fractions import Fraction

from ..core import num, untrusted
from ..core.errors import ArchcalcError
from ..report import Report
from ..spec.read import Spec
from . import claim_values
from .claim_keys import parse_key
from .grading import DEFAULTS
from .truth import at_qualifiers, value as true_value

BATCHES = (8, 16, 32, 64, 128)
CATEGORIES = ("shape", "parameters", "cost", "total", "share", "memory", "field")


@dataclass(frozen=True)
class Question:
    key: str  # the claim key the answer is written under
    text: str
    answer: object  # as an answers file writes it: an int, a list (a shape) or a string
    category: str


@dataclass(frozen=True)
class Quiz:
    model: str
    spec: str | None
    seed: int
    questions: tuple[Question, ...]
    values: tuple[tuple[str, object], ...] = ()  # a variant's own values (variants.py), given to check with --set
    variant: str = ""  # "variant 3 of 30 (archcalc quiz ... --variants 30 --seed 7)"
    number: int = 0  # a variant's number (its sheet says variant = N, for grading from a folder), 0: no variants

    def command(self) -> str:
        return self.variant or f"archcalc quiz {self.spec or 'SPEC'} --count {len(self.questions)} --seed {self.seed}"

    def check(self, file: str) -> str:
        """The command that checks `file` against this quiz's network."""
        sets = "".join(f" --set {name}={value}" for name, value in self.values)
        return f"archcalc check {self.spec or 'SPEC'} {file}{sets}"

    def markdown(self) -> str:
        spec = self.spec or "SPEC"
        out = [
            f"# Quiz: {self.model}", "",
            f"{len(self.questions)} questions about `{spec}` (seed {self.seed}). Write each answer in a TOML file "
            "under the key given, for example `\"conv2.output\" = [256, 27, 27]` or `\"params\" = \"62.4M\"`, "
            f"then check it: `{self.check('answers.toml')}`.", "",
            *([f"Your network: {', '.join(f'{n} = {v}' for n, v in self.values)}.", ""] if self.values else []),
            "Shapes are one sample's, channels first (`[C, H, W]`), or the course's way (`\"27²×256\"`). "
            "Counts (parameters, FLOPs) and shapes are graded exactly, bytes and shares within 1% of the true value, "
            "unless your instructor says otherwise; an approximation's own precision can only narrow that "
            "(\"60%\" is 60 ± 5 by its digits, so within 1%: 59.4 to 60.6).", "",
        ]
        out += [f"{n}. {q.text}  \n   key: `\"{q.key}\"`" for n, q in enumerate(self.questions, start=1)]
        return "\n".join(out) + "\n"

    def key_toml(self) -> str:
        """The answer key: an answers file that `archcalc check` passes."""
        out = [f"# Answer key: {_comment(self.model)} ({_comment(self.command())})",
               f"# {_comment(self.check('THIS_FILE'))} passes every line.", ""]
        out += [f"{_toml_key(q.key)} = {_toml_value(q.answer)}   # {n}" for n, q in enumerate(self.questions, start=1)]
        return "\n".join(out) + "\n"

    def sheet_toml(self) -> str:
        """A blank answers file: each question as a comment, its key to uncomment and fill in."""
        out = [f"# Quiz: {_comment(self.model)} ({_comment(self.command())})",
               "# Uncomment each key and write your answer after =; then: "
               f"{_comment(self.check('THIS_FILE'))}", ""]
        for n, q in enumerate(self.questions, start=1):
            out += [f"# {n}. {q.text}", f"# {_toml_key(q.key)} = ", ""]
        out += ["[student]   # keep this table last: in TOML, every key after it belongs to it", 'name = ""', 'id = ""']
        if self.number:
            out.append(f"variant = {self.number}   # your network: keep this line as it is")
        return "\n".join(out) + "\n"

    def files(self, stem: str) -> dict[str, str]:
        """The quiz as files named after `stem`: the questions, the answer key and a blank answers sheet."""
        return {f"{stem}-quiz.md": self.markdown(), f"{stem}-key.toml": self.key_toml(),
                f"{stem}-answers.toml": self.sheet_toml()}


def _comment(text: str) -> str:
    """Text for a TOML comment: one line, control characters shown, so that a model's name cannot add keys."""
    return untrusted.one_line(text)


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def _toml_value(answer: object) -> str:
    if isinstance(answer, list):
        return "[" + ", ".join(_toml_value(a) for a in answer) + "]"
    return str(answer) if isinstance(answer, int) else json.dumps(answer, ensure_ascii=False)


def candidates(rng: random.Random, report: Report) -> dict[str, list[tuple[str, str]]]:
    """(key, question) pairs per category, in the network's order."""
    out: dict[str, list[tuple[str, str]]] = {c: [] for c in CATEGORIES}
    for row in report.rows:
        name = f"`{row.name}` ({row.kind})"
        asks = row.layer.asks_shape
        if (row.output != row.input) if asks is None else asks:  # None: when the layer changes the shape
            out["shape"].append((f"{row.name}.output", f"What shape does {name} output for one sample?"))
        if row.params != 0:
            out["parameters"].append((f"{row.name}.params", f"How many parameters (weights and biases) does {name} have?"))
            if row.biases != 0:
                out["parameters"].append((f"{row.name}.weights", f"How many weights (biases aside) does {name} have?"))
        field = report.fields[row.index - 1]
        if row.layer.windows(row.input) and field is not None and field.size and not field.whole:
            out["field"].append((f"{row.name}.receptive_field",
                                 f"How many input pixels wide is the receptive field of one output of {name}, per axis?"))
            out["field"].append((f"{row.name}.jump", f"How many input pixels apart are two neighbouring outputs of {name}?"))
        if row.layer.dense_equivalent_weights(row.input) is not None:
            out["field"].append((f"{row.name}.dense_equivalent_weights",
                                 f"How many weights would a dense layer need to connect {name}'s input to its output?"))
        if row.macs != 0:
            out["cost"].append((f"{row.name}.macs", f"How many multiply-accumulates (MACs) does {name} do for one sample?"))
            out["cost"].append((f"{row.name}.flops", f"How many forward FLOPs does {name} take for one sample, as PyTorch counts them?"))
    out["total"] += [
        ("params", "How many parameters does the whole network have?"),
        ("weights", "How many weights (biases aside) does the whole network have?"),
        ("flops", "How many forward FLOPs does the whole network take for one sample?"),
    ]
    kinds = [kind for kind, params in report.by_type.items() if params != 0]
    if len(kinds) > 1:
        out["share"] += [(f"{kind}.share", f"What share of all parameters is in the {kind} layers, in %?") for kind in kinds]
    out["share"] += [(f"{row.name}.share", f"What share of all parameters does `{row.name}` hold, in %?")
                     for row in report.rows if row.params != 0 and len(report.rows) > 1]
    dtype, batch = report.dtype, rng.choice(BATCHES)
    stateful, optimizer = rng.choice(("momentum", "adam")), rng.choice(("sgd", "momentum", "adam"))
    out["memory"] += [
        ("memory.params_bytes", f"How many bytes do the parameters take in {dtype}?"),
        (f"memory.optimizer_bytes@optimizer={stateful}",
         f"How many bytes of optimizer state does {stateful} keep for this network in {dtype}?"),
        (f"memory.saved_for_backward_bytes@B={batch}",
         f"How many bytes does autograd keep for the backward pass at a batch of {batch}, in {dtype}?"),
        (f"memory.training_bytes@B={batch},optimizer={optimizer}",
         f"How many bytes does a training step take at a batch of {batch}, in {dtype}, with {optimizer}?"),
    ]
    return out


def answer(report: Report, key: str) -> object | None:
    """The true value of `key` as an answers file writes it, or None when it cannot be written exactly."""
    parsed = parse_key(key, report)
    actual = true_value(at_qualifiers(report, parsed), parsed)
    if parsed.kind == "share":
        if not num.is_concrete(actual):
            return None
        within = DEFAULTS[parsed.kind]  # two decimals, or as many more as the default grading needs
        for decimals in range(2, 12):
            written = f"{float(actual):.{decimals}f}%"
            if claim_values.read(written, "share").holds(actual, {}, within):
                return written
        return None
    if parsed.kind == "axes" and len(set(map(str, actual))) == 1:
        actual = actual[:1]  # one number for every axis: "pool3.receptive_field" = 195
        written = _written(actual[0])
    else:
        written = [_written(d) for d in actual] if isinstance(actual, tuple) else _written(actual)
    try:  # a formula must read back through the claim parser to the same value
        back = claim_values.read(written, parsed.kind)
        env = dict(report.values)
        return written if back.holds(actual, env) else None
    except ArchcalcError:
        return None


def _written(x) -> object:
    if isinstance(x, int):
        return x
    if isinstance(x, Fraction):
        return f"{x.numerator}/{x.denominator}"
    return str(x)


def draw(report: Report, count: int, seed: int, spec: str | None = None) -> Quiz:
    """`count` different questions about `report`'s network, drawn in turn from each category."""
    if not isinstance(report, Report):
        hint = ": analyse it first, archcalc.analyze(spec)" if isinstance(report, Spec) else ""
        raise TypeError(f"quiz.draw(report, ...): report must be a Report (archcalc.analyze), got "
                        f"{type(report).__name__}{hint}")
    for name, given in (("count", count), ("seed", seed)):
        if isinstance(given, bool) or not isinstance(given, int):
            raise TypeError(f"quiz.draw(..., {name}): {name} must be a whole number, got {type(given).__name__}")
    if spec is not None and not isinstance(spec, str):
        raise TypeError(f"quiz.draw(..., spec=): the spec's path (a str), got {type(spec).__name__}")
    rng = random.Random(seed)
    drawn = candidates(rng, report)
    answers = {key: answer(report, key) for pairs in drawn.values() for key, _ in pairs}
    pools = {c: [(key, text) for key, text in pairs if answers[key] is not None] for c, pairs in drawn.items()}
    available = sum(map(len, pools.values()))
    if not 1 <= count <= available:
        raise ArchcalcError(f"cannot draw {count} questions: there are {available} about {report.model}\n"
                            f"  hint: ask for --count {available} or fewer")
    order = [c for c in CATEGORIES if pools[c]]
    rng.shuffle(order)
    questions = []
    while len(questions) < count:
        for category in order:
            if pools[category] and len(questions) < count:
                key, text = pools[category].pop(rng.randrange(len(pools[category])))
                questions.append(Question(key, text, answers[key], category))
    return Quiz(report.model, spec, seed, tuple(questions))
