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

from . import claims as claims_, explain_claim, mistakes, num
from .claimed import Dims
from .claims import Answers, Claim, ClaimError, Key
from .engine import analyze
from .errors import SpecError
from .report import Report
from .spec import Spec


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
    report = subject if isinstance(subject, Report) else analyze(subject, **values)
    return _verdicts(report, *_pairs(subject, claims))


def _verdicts(report: Report, pairs, place: dict) -> list[Verdict]:
    out = []
    for claim in claims_.read(pairs, report, **place):
        try:
            out.append(verdict(report, claim))
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
    report = report or analyze(spec, **values)
    if not files:
        if not spec.expect:
            raise ClaimError("nothing to check: the spec has no [expect] table",
                             "give answers files: archcalc check SPEC ANSWERS...", path=spec.path)
        return [_result(report, spec, None)]
    return [_result(report, spec, path) for path in answer_files(files)]


def _result(report: Report, spec: Spec, path: str | None) -> Result:
    if path is None:
        try:
            return Result(spec.path, "expect", tuple(_verdicts(report, *_expected(spec))))
        except ClaimError as error:
            return Result(spec.path, "expect", error=str(error))
    student = {}
    try:
        answers = claims_.load_answers(path)
        student = answers.student
        return Result(path, "answers", tuple(check(report, answers)), student)
    except ClaimError as error:
        return Result(path, "answers", student=student, error=str(error))


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
        return list(claims.pairs), {"path": claims.path, "text": claims.text}
    if claims is None:
        if not isinstance(subject, Spec):
            raise ClaimError("a report has no [expect] table: give the claims to check")
        return _expected(subject)
    table = dict(claims) if isinstance(claims, Mapping) else dict(list(claims))
    return claims_.flatten(table), {}


def _expected(spec: Spec) -> tuple[list, dict]:
    """A spec's own [expect] claims, and their place."""
    return claims_.flatten(dict(spec.expect)), {"path": spec.path, "where": "[expect]", "text": spec.text}


def verdict(report: Report, claim: Claim) -> Verdict:
    key = claim.key
    at = at_qualifiers(report, key)
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
    """The report a memory claim is about: at its batch size, dtype, optimizer and device (read by claims.parse_key)."""
    given = {("batch" if name == "B" else name): value for name, value in key.at}
    changes = {field: value for field, value in given.items() if value != getattr(report, field)}
    return dataclasses.replace(report, **changes) if changes else report


def value(report: Report, key: Key):
    """The true value of a key: a number, a formula, or a shape."""
    if key.scope == "layer":
        row = report.row(key.name)
        return share(report, row.params) if key.quantity == "share" else getattr(row, key.quantity)
    if key.scope == "type":
        rows = [row for row in report.rows if row.kind == key.name]
        quantity = "params" if key.quantity == "share" else key.quantity
        total = num.add(getattr(row, quantity) for row in rows)
        return share(report, total) if key.quantity == "share" else total
    if key.scope == "total":
        return report.totals[key.quantity]
    return report.memory.value(key.quantity)


def share(report: Report, params) -> object:
    """`params` in % of all parameters, exactly (a Fraction, or a formula)."""
    total = report.totals["params"]
    return 0 if total == 0 else num.div(100 * params, total)

