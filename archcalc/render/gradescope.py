"""Gradescope's results.json for one submission: a test per graded claim, weighted by the spec's [weights].

The spec is the answer key. Its `[weights]` table lists the graded claim keys and their points
(`"conv1.params" = 2`); without it, every claim of the submission is a test of 1 point. A claim
the student left out scores 0 ("no answer"); one archcalc cannot read (an unknown key, a malformed
value) scores 0 with the reason, and the other claims are still graded. A graded key matches the
student's claim however it is written ("dense.share" and "type.dense.share", a memory key with its
default qualifiers or without them).

What the student sees when: each test's output holds the true value and its derivation, so by default
each test is shown `after_due_date` (the spec's [grading] `visibility`, per key or for all, or
--visibility), while the top-level output, shown at once, says which claims are right and how each
was read, without their true values. Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/
(score, output, visibility, tests with name, score, max_score, status, output, visibility).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

from ..core import untrusted
from ..core.errors import ArchcalcError, SpecError
from ..report import Report, analyze
from ..spec.read import Spec
from ..teaching import claim_keys
from ..teaching.check import grading_of, student_file, verdict
from ..teaching.claim_keys import Claim, Unread, identity
from ..teaching.claim_values import ClaimError
from ..teaching.grading import Grading
from ..teaching.manifest import Manifest
from .check import claimed as claimed_text, error_text, true_value, why

METADATA = "submission_metadata.json"  # Gradescope's, beside /autograder/submission: who submitted


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


def results(spec: Spec, report: Report, answers: str | None, *, tolerance=None, visibility: str | None = None,
            overall_visibility: str | None = None, variants: str | Manifest | None = None, **values) -> dict:
    """results.json for the submission `answers`: an answers file, or the folder Gradescope puts it in (its one
    .toml file is found); None: the spec's own [expect]. `tolerance`, the visibilities: over the spec's [grading];
    `variants`: a quiz's manifest, to grade the submission against its student's own network (`values`, the
    command line's sizes, go to analyze with the variant's)."""
    rules = grading_of(spec, report, tolerance, test_visibility=visibility, overall_visibility=overall_visibility)
    points = weights(spec, report)
    if answers is None:
        pairs = claim_keys.flatten(dict(spec.expect))
        place = {"path": spec.path, "where": "[expect]", "text": spec.text, "table": "expect"}
        return _graded_all(spec, report, None, points, pairs, place, {}, "")
    manifest = variants if variants is None or isinstance(variants, Manifest) else Manifest.load(variants, spec)
    file, problem = _submitted(answers)  # a bad manifest above is the instructor's error (exit 2), not a student's 0
    try:
        if problem:
            raise ClaimError(problem, path=file)
        loaded = claim_keys.load_answers(file)
        variant = ""
        if manifest is not None:
            number, variant = manifest.variant_of(loaded, _submitters(answers))
            report = analyze(spec, **(values | dict(manifest.values(number))))
            points = weights(spec, report)
            rules = grading_of(spec, report, tolerance, test_visibility=visibility, overall_visibility=overall_visibility)
    except (ArchcalcError, RecursionError, MemoryError) as error:
        tests = [_test(key, 0, w, "not graded: the answers file cannot be read", rules.visibility) for key, w in points.items()]
        return _document(tests, f"archcalc could not read {file}:\n{error}", rules)
    pairs = list(loaded.pairs)
    if len(pairs) > untrusted.MAX_CLAIMS:  # graded one by one below: check's own limit would not apply
        tests = [_test(key, 0, w, "not graded: the answers file has too many claims", rules.visibility)
                 for key, w in points.items()]
        return _document(tests, f"archcalc could not read {file}:\n{len(pairs):,} claims: the limit is "
                                f"{untrusted.MAX_CLAIMS:,} a file", rules)
    place = {"path": loaded.path, "text": loaded.text, "strict": True}  # a student's: each claim pins its value
    return _graded_all(spec, report, rules, points, pairs, place, loaded.student, variant)


def _graded_all(spec: Spec, report: Report, rules: Grading | None, points: dict, pairs, place: dict, student: dict,
                variant: str) -> dict:
    claims = claim_keys.read(pairs, report, each=True, **place)
    by_key = {}  # each claim under its identity; one that could not be read under the key as written
    for claim in claims:
        key = claim.key
        by_key.setdefault(identity(key, report) if key is not None else claim.text, claim)
    shown = rules or grading_of(spec, report)
    tests, summary = [], []
    if points:
        graded = [(key, w, by_key.get(identity(claim_keys.parse_key(key, report), report))) for key, w in points.items()]
        used = {id(claim) for _, _, claim in graded if claim is not None}
        ignored = [claim.key.text if claim.key else claim.text for claim in claims if id(claim) not in used]
    else:
        graded = [(claim.key.text if claim.key else claim.text, 1, claim) for claim in claims]
        ignored = []
    for key, w, claim in graded:
        test, line = _graded(spec, report, rules, shown, key, w, claim)
        tests.append(test)
        summary.append(line)
    lines = [f"{report.model}: {_points(sum(t['score'] for t in tests))} / {_points(sum(t['max_score'] for t in tests))} points"]
    filled = {k: v for k, v in student.items() if str(v).strip()}
    if filled:
        lines.append("student: " + ", ".join(f"{k} {untrusted.one_line(str(v))}" for k, v in filled.items()))
    if variant:
        lines.append(variant)
    lines += summary
    if ignored:
        lines.append(f"not graded (not in the answer key): {', '.join(untrusted.one_line(k) for k in ignored)}")
    later = sorted({t["visibility"] for t in tests} - {"visible"})
    if later:
        when = {"after_due_date": "after the due date", "after_published": "once grades are published",
                "hidden": "never"}
        lines.append("true values and their derivations: shown " + " or ".join(when[v] for v in later))
    return _document(tests, "\n".join(lines), shown)


def _graded(spec: Spec, report: Report, rules: Grading | None, shown: Grading, key: str, points,
            claim: Claim | Unread | None) -> tuple[dict, str]:
    """One graded key's test, and its line in the top-level output (no true value in it)."""
    parsed = claim.key if claim is not None and claim.key is not None else None
    seen = shown.visibility if parsed is None else shown.visibility_of(parsed, report)
    if claim is None:
        return _test(key, 0, points, f"no answer for {key!r}", seen), f"{key}: no answer"
    if isinstance(claim, Unread):
        reason = error_text(str(claim.error))
        return (_test(key, 0, points, f"not graded: {claim.error}", seen),
                f"{key}: not graded: {reason.splitlines()[0]}")
    try:
        v = verdict(report, claim, rules=rules, spec=spec)
    except SpecError as error:  # a formula that reads but cannot be evaluated ("1/0")
        return _test(key, 0, points, f"not graded: {error}", seen), f"{key}: not graded: {error.problem}"
    read = f"claimed {claimed_text(v)}, read as {v.reading}"
    read += f", graded within {v.tolerance}" if v.tolerance not in (None, "exact") else ""
    lines = [f"{read}; true value {true_value(v)}"]
    if not v.ok:
        lines.append(why(v))
    state = "right" if v.ok else "undecided" if not v.decided else "wrong"
    return (_test(key, points if v.ok else 0, points, "\n".join(lines), seen, passed=v.ok),
            f"{key}: {state} ({_points(points if v.ok else 0)}/{_points(points)}): {read}")


def _test(name: str, score, max_score, output: str, visibility: str, passed: bool = False) -> dict:
    """One graded claim; its status says whether the claim is right, even where it is worth 0 points."""
    return {"name": name, "score": _number(score), "max_score": _number(max_score),
            "status": "passed" if passed else "failed", "output": output, "visibility": visibility}


def _number(x):
    return x if isinstance(x, (int, float)) else float(Fraction(x))


def _points(x) -> str:
    return f"{_number(x):g}"


def _document(tests: list[dict], output: str, rules: Grading) -> dict:
    return {"score": _number(sum(t["score"] for t in tests)), "output": output, "visibility": rules.overall_visibility,
            "stdout_visibility": "visible", "tests": tests}


def _submitted(answers: str) -> tuple[str, str | None]:
    """The submitted answers file: `answers` itself, or the one .toml file of the folder it names
    (/autograder/submission: whatever the student named it, lenet5-1-answers.toml or answers.toml)."""
    path = Path(answers)
    if path.is_dir():
        return student_file(path)
    return str(path), None


def _submitters(answers: str) -> tuple[str, ...]:
    """The ids, student ids and emails of who submitted, from Gradescope's submission_metadata.json beside the
    submission folder (absent: nothing)."""
    metadata = Path(answers).resolve()
    metadata = (metadata if metadata.is_dir() else metadata.parent).parent / METADATA
    try:
        if not metadata.is_file() or metadata.stat().st_size > 2**20:
            return ()
        users = json.loads(metadata.read_text(encoding="utf-8")).get("users", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return ()
    found = []
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict):
            found += [str(user[f]).strip() for f in ("email", "sid", "id") if user.get(f) not in (None, "")]
    return tuple(found)
