"""Claims -> verdicts: each claim right or wrong, with the true value, its derivation and the likely mistake.

>>> import archcalc
>>> spec = archcalc.load("specs/alexnet.toml")
>>> [(v.key, v.ok) for v in archcalc.check(spec, {"conv1.params": 34944, "conv2.output": "27²×96"})]
[('conv1.params', True), ('conv2.output', False)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core import num
from ..core.errors import ArchcalcError, SpecError
from ..report import Report, analyze
from ..spec.read import Spec
from . import claim_keys, explain_claim, mistakes
from .claim_keys import Answers, Claim, ClaimError, Key
from .claim_values import Dims


@dataclass(frozen=True)
class Verdict:
    key: str
    claimed: object  # the value as written
    actual: object  # the true value: an int, a Fraction (a share, in %), a formula, or a shape (tuple)
    ok: bool
    explanation: str  # how the true value comes out (the lines of `show --explain` for it)
    mistake: str | None = None  # the likely mistake behind a wrong claim, where one is recognisable
    reading: str = ""  # how the claim was read: "exactly 34,944", "60% ± 5", "[96, 27, 27]"
    note: str | None = None  # "read channels last", or why a claim could not be decided
    line: int | None = None
    kind: str = "count"  # what the quantity is: "count", "share" (in %), "bytes" or "shape"

    def to_dict(self) -> dict:
        actual = [num.to_json(d) for d in self.actual] if isinstance(self.actual, tuple) else num.to_json(self.actual)
        return {
            "key": self.key,
            "claimed": self.claimed,
            "read_as": self.reading,
            "actual": actual,
            "ok": self.ok,
            "mistake": self.mistake,
            "note": self.note,
            "explanation": self.explanation.splitlines(),
            "line": self.line,
            "kind": self.kind,
        }


def check(subject: Spec | Report, claims=None, **values) -> list[Verdict]:
    """A verdict per claim: `claims` is a mapping, (key, value) pairs or Answers; None: the spec's [expect].

    `values` go to `analyze` (names the spec leaves open, batch, dtype, optimizer, device).
    Raises ClaimError (an ArchcalcError) for an unknown key or a malformed value.
    """
    if not isinstance(subject, (Spec, Report)):
        raise TypeError(f"check(subject, ...): subject must be a Spec (archcalc.load) or a Report (archcalc.analyze), "
                        f"got {type(subject).__name__}")
    if isinstance(claims, (str, bytes, Path)):
        raise TypeError(f"check(subject, claims): claims must be a mapping, (key, value) pairs or Answers, got a "
                        f"{type(claims).__name__}: read a file with archcalc.load_answers(path)")
    report = subject if isinstance(subject, Report) else analyze(subject, **values)
    return _verdicts(report, *_pairs(subject, claims))


def _verdicts(report: Report, pairs, place: dict) -> list[Verdict]:
    out = []
    reports: dict = {}  # the report at each set of qualifiers, made once: many claims share them
    for claim in claim_keys.read(pairs, report, **place):
        try:
            at = reports.get(claim.key.at) or reports.setdefault(claim.key.at, at_qualifiers(report, claim.key))
            out.append(verdict(report, claim, at))
        except SpecError as error:  # a formula that reads well but cannot be evaluated: "1/0"
            raise ClaimError(error.problem, error.hint, f'"{claim.key.text}"', place.get("where"),
                             place.get("path"), claim.line) from None
    return out


@dataclass(frozen=True)
class Result:
    """One claims file checked: its verdicts, or the error that kept it from being checked."""

    file: str | None
    source: str  # "answers", or "expect": the spec's own [expect] table
    verdicts: tuple[Verdict, ...] = ()
    student: dict = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def right(self) -> int:
        return sum(v.ok for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return self.error is None and self.right == len(self.verdicts)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "source": self.source,
            "student": self.student or None,
            "right": self.right,
            "total": len(self.verdicts),
            "ok": self.ok,
            "error": self.error,
            "claims": [v.to_dict() for v in self.verdicts],
        }


def grade(spec: Spec, files=(), *, report: Report | None = None, **values) -> list[Result]:
    """Check answers files (folders: their .toml files) against `spec`, or its [expect] when there are none.

    A file that cannot be read or holds a bad claim gets a Result with its `error`; the others are still checked.
    """
    if not isinstance(spec, Spec):
        raise TypeError(f"grade(spec, files): spec must be a Spec (archcalc.load(path)), got {type(spec).__name__}")
    if isinstance(files, (str, bytes, Path)):
        raise TypeError(f"grade(spec, files): files must be a list of paths, got a {type(files).__name__}: "
                        f"write grade(spec, [{str(files)!r}])")
    if report is not None and not isinstance(report, Report):
        raise TypeError(f"grade(..., report=): a Report (archcalc.analyze), got {type(report).__name__}")
    files = list(files)
    for item in files:
        if not isinstance(item, (str, Path)):
            raise TypeError(f"grade(spec, files): each file is a str or a Path, got {type(item).__name__}")
    report = report or analyze(spec, **values)
    if not files:
        if not spec.expect:
            raise ClaimError("nothing to check: the spec has no [expect] table",
                             "give answers files: archcalc check SPEC ANSWERS...", path=spec.path)
        return [_result(report, spec, None)]
    return [_result(report, spec, path) for path in answer_files(files)]


def _result(report: Report, spec: Spec, path: str | None) -> Result:
    """One file's Result: whatever goes wrong with it becomes its error, and the other files are still graded."""
    source = "expect" if path is None else "answers"
    student = {}
    try:
        if path is None:
            return Result(spec.path, source, tuple(_verdicts(report, *_expected(spec))))
        answers = claim_keys.load_answers(path)
        student = answers.student
        return Result(path, source, tuple(check(report, answers)), student)
    except ArchcalcError as error:
        return Result(path or spec.path, source, student=student, error=str(error))
    except RecursionError:
        problem = "nested too deeply to grade"
    except MemoryError:
        problem = "too large to grade: it ran out of memory"
    except Exception as error:  # a grader goes on to the next student whatever one file does
        problem = f"could not be graded: {type(error).__name__}: {str(error)[:200]} (a bug in archcalc: please report it)"
    return Result(path or spec.path, source, student=student, error=f"{path or spec.path}: {problem}")


def answer_files(paths) -> list[str]:
    """Paths as given, each folder replaced by the .toml files in it, sorted."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            out += [str(p) for p in found] if found else [str(path)]
        else:
            out.append(str(path))
    return out


def _pairs(subject: Spec | Report, claims) -> tuple[list, dict]:
    """The raw (key, value) pairs to check, and their place (path, where, text) for ClaimError."""
    if isinstance(claims, Answers):
        if not claims.pairs:
            raise ClaimError("no claims: nothing to grade", path=claims.path)
        return list(claims.pairs), {"path": claims.path, "text": claims.text, "strict": True}
    if claims is None:
        if not isinstance(subject, Spec):
            raise ClaimError("a report has no [expect] table: give the claims to check")
        return _expected(subject)
    try:
        table = dict(claims) if isinstance(claims, Mapping) else dict(list(claims))
    except (TypeError, ValueError):
        raise TypeError(f"check(subject, claims): claims must be a mapping, (key, value) pairs or Answers, "
                        f"got {type(claims).__name__}") from None
    return claim_keys.flatten(table), {}


def _expected(spec: Spec) -> tuple[list, dict]:
    """A spec's own [expect] claims, and their place."""
    return claim_keys.flatten(dict(spec.expect)), {"path": spec.path, "where": "[expect]", "text": spec.text, "table": "expect"}


def verdict(report: Report, claim: Claim, at: Report | None = None) -> Verdict:
    key = claim.key
    at = at or at_qualifiers(report, key)
    env = dict(report.values) | ({"B": at.batch} if at.batch is not None else {})
    actual = value(at, key)
    holds = claim.value.holds(actual, env)
    note = None
    if holds is None:
        names = ", ".join(sorted(num.free_names(num.mul(actual) if isinstance(actual, tuple) else actual)))
        note = f"the true value is a formula in {names}: give them values (--set NAME=VALUE) to compare a number with it"
    elif isinstance(claim.value, Dims) and claim.value.order(actual, env) == "channels last":
        note = "read channels last (H×W×C), the way the course writes shapes"
    ok = bool(holds)
    context = mistakes.Context(at, key, actual, env)
    return Verdict(
        key=key.text,
        claimed=claim.raw,
        actual=actual,
        ok=ok,
        explanation=explain_claim.text(at, key),
        mistake=None if ok or holds is None else mistakes.recognise(claim.value, context),
        reading=claim.value.reading(env),
        note=note,
        line=claim.line,
        kind=key.kind,
    )


def at_qualifiers(report: Report, key: Key) -> Report:
    """The report a memory claim is about: at its batch size, dtype, optimizer and device (read by claim_keys.parse_key)."""
    given = {("batch" if name == "B" else name): value for name, value in key.at}
    changes = {field: value for field, value in given.items() if value != getattr(report, field)}
    return dataclasses.replace(report, **changes) if changes else report


def value(report: Report, key: Key):
    """The true value of a key: a number, a formula (a share: in %, exactly), or a shape."""
    if key.scope == "memory":
        return report.memory.value(key.quantity)
    if key.scope == "layer" and (key.quantity in claim_keys.AXES or key.quantity == "dense_equivalent_weights"):
        return teaching(report, report.row(key.name), key.quantity)
    if key.quantity in ("output", "input"):  # a layer's; a group's output is its last layer's
        rows = key.rows(report)
        return rows[0].input if key.quantity == "input" else rows[-1].output
    summed = "params" if key.quantity == "share" else key.quantity
    total = report.totals[summed] if key.scope == "total" else num.add(getattr(row, summed) for row in key.rows(report))
    return report.percent(total) if key.quantity == "share" else total


def teaching(report: Report, row, quantity: str):
    """A layer's receptive field or jump (a tuple, one per axis), or a conv's dense-equivalent weights."""
    if quantity == "dense_equivalent_weights":
        dense = row.layer.dense_equivalent_weights(row.input)
        if dense is None:
            raise ClaimError(f"{row.name} is a {row.kind} layer: only conv layers have dense_equivalent_weights")
        return dense
    field = report.fields[row.index - 1]
    if field is None:
        raise ClaimError(f"archcalc does not know the receptive field of {row.kind} layers ({row.name})")
    if quantity == "jump" and field.whole:
        raise ClaimError(f"{row.name} sees the whole input: its values are no longer spread over the image, it has no jump")
    if not field.size:
        raise ClaimError(f"{report.model}'s input has no spatial axes: no receptive field")
    return field.size if quantity == "receptive_field" else field.jump


