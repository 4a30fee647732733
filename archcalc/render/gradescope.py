"""Gradescope's results.json for one submission: a test per graded claim, weighted by the spec's [weights].

The spec is the answer key. Its `[weights]` table lists the graded claim keys and their points
(`"conv1.params" = 2`); without it, every claim of the submission is a test of 1 point. A claim
the student left out scores 0 ("no answer"); one archcalc cannot read (an unknown key, a malformed
value) scores 0 with the reason, and the other claims are still graded.

Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ (score, tests with name,
score, max_score, status, output).
"""

from __future__ import annotations

import math
from fractions import Fraction

from ..core import untrusted
from ..core.errors import ArchcalcError, SpecError
from ..report import Report
from ..spec.read import Spec
from ..teaching import claim_keys
from ..teaching.check import verdict
from ..teaching.claim_values import ClaimError
from .check import claimed as claimed_text, true_value, why


def weights(spec: Spec, report: Report) -> dict[str, int | float]:
    """The [weights] table, its keys checked against the network (a bad key is the instructor's: ClaimError)."""
    out = {}
    for key, points in claim_keys.flatten(dict(spec.weights)):
        place = {"path": spec.path, "where": "[weights]", "line": claim_keys.line_of(spec.text, f"weights.{key}")}
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points < math.inf:
            raise ClaimError(f"points must be a number >= 0, got {points!r}", 'write "conv1.params" = 2', f'"{key}"', **place)
        try:
            claim_keys.parse_key(key, report)
        except ClaimError as error:
            raise ClaimError(error.problem, error.hint, f'"{key}"', **place) from None
        out[key] = points
    return out


def results(spec: Spec, report: Report, answers: str | None) -> dict:
    """results.json for the answers file `answers` (None: the spec's own [expect])."""
    points = weights(spec, report)
    if answers is None:
        pairs = claim_keys.flatten(dict(spec.expect))
        place = {"path": spec.path, "where": "[expect]", "text": spec.text, "table": "expect"}
        student = {}
    else:
        try:
            loaded = claim_keys.load_answers(answers)
        except (ArchcalcError, RecursionError, MemoryError) as error:
            tests = [_test(key, 0, w, "not graded: the answers file cannot be read") for key, w in points.items()]
            return _document(tests, f"archcalc could not read {answers}:\n{error}")
        pairs, student = list(loaded.pairs), loaded.student
        if len(pairs) > untrusted.MAX_CLAIMS:  # graded one by one below: check's own limit would not apply
            tests = [_test(key, 0, w, "not graded: the answers file has too many claims") for key, w in points.items()]
            return _document(tests, f"archcalc could not read {answers}:\n{len(pairs):,} claims: the limit is "
                                    f"{untrusted.MAX_CLAIMS:,} a file")
        place = {"path": loaded.path, "text": loaded.text, "strict": True}  # a student's: each claim pins its value
    given = dict(pairs)
    graded = points or dict.fromkeys(given, 1)
    tests = [_graded(report, key, given, w, place) for key, w in graded.items()]
    ignored = [key for key in given if key not in graded]
    lines = [f"{report.model}: {sum(t['score'] for t in tests):g} / {sum(t['max_score'] for t in tests):g} points"]
    if student:
        lines.append("student: " + ", ".join(f"{k} {v}" for k, v in student.items()))
    if ignored:
        lines.append(f"not graded (not in the answer key): {', '.join(ignored)}")
    return _document(tests, "\n".join(lines))


def _graded(report: Report, key: str, given: dict, points, place: dict) -> dict:
    if key not in given:
        return _test(key, 0, points, f"no answer for {key!r}")
    try:
        [claim] = claim_keys.read([(key, given[key])], report, **place)
        v = verdict(report, claim)
    except SpecError as error:  # a ClaimError, or a formula that reads but cannot be evaluated ("1/0")
        return _test(key, 0, points, f"not graded: {error}")
    lines = [f"claimed {claimed_text(v)} (read as {v.reading}); true value {true_value(v)}"]
    if not v.ok:
        lines.append(why(v))
    return _test(key, points if v.ok else 0, points, "\n".join(lines), passed=v.ok)


def _test(name: str, score, max_score, output: str, passed: bool = False) -> dict:
    """One graded claim; its status says whether the claim is right, even where it is worth 0 points."""
    return {"name": name, "score": _number(score), "max_score": _number(max_score),
            "status": "passed" if passed else "failed", "output": output}


def _number(x):
    return x if isinstance(x, (int, float)) else float(Fraction(x))


def _document(tests: list[dict], output: str) -> dict:
    return {"score": _number(sum(t["score"] for t in tests)), "output": output, "tests": tests,
            "stdout_visibility": "visible"}

