"""Claims -> verdicts: each claim right or wrong, with the true value, its derivation and the likely mistake.

>>> import archcalc
>>> spec = archcalc.load("specs/alexnet.toml")
>>> [(v.key, v.ok) for v in archcalc.check(spec, {"conv1.params": 34944, "conv2.output": "27²×96"})]
[('conv1.params', True), ('conv2.output', False)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core import num
from ..core.errors import ArchcalcError, SpecError
from ..report import Report, analyze
from ..spec.read import Spec
from . import claim_keys, explain_claim, grading as policy, mistakes
from .claim_keys import Answers, Claim, ClaimError, Unread
from .claim_values import Approx, Bounds, Dims, Tolerance
from .grading import Grading
from .manifest import Manifest
from .truth import at_qualifiers, value


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
    tolerance: str | None = None  # the instructor's, for an answer: "exact", "1%" (None: the claim's own precision)
    error: str | None = None  # why the claim could not be graded (an unknown key, a malformed value): it is not right
    decided: bool = True  # False: it cannot be right or wrong until names get values (--set): not counted

    def to_dict(self) -> dict:
        actual = [num.to_json(d) for d in self.actual] if isinstance(self.actual, tuple) else \
            None if self.actual is None else num.to_json(self.actual)
        return {
            "key": self.key,
            "claimed": _jsonable(self.claimed),
            "read_as": self.reading,
            "actual": actual,
            "ok": self.ok,
            "mistake": self.mistake,
            "note": self.note,
            "explanation": self.explanation.splitlines(),
            "line": self.line,
            "kind": self.kind,
            "tolerance": self.tolerance,
            "error": self.error,
            "decided": self.decided,
        }


def _jsonable(raw):
    """A claim as written, as JSON can carry it: nan and infinities (refused claims) as the text TOML wrote."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return repr(raw)
    if isinstance(raw, list):
        return [_jsonable(x) for x in raw]
    return raw if raw is None or isinstance(raw, (str, int, float, bool)) else str(raw)


def check(subject: Spec | Report, claims=None, *, tolerance: str | Tolerance | None = None, **values) -> list[Verdict]:
    """A verdict per claim: `claims` is a mapping, (key, value) pairs or Answers; None: the spec's [expect].

    Answers (a mapping, pairs, Answers) are graded by the instructor's tolerance: the spec's [grading] table, or
    `tolerance` for every key ("1%", "exact"), else the defaults (docs/grading.md); [expect] holds by the
    precision each claim states. `values` go to `analyze` (names the spec leaves open, batch, dtype, optimizer,
    device). Raises ClaimError (an ArchcalcError) for an unknown key or a malformed value.
    """
    if not isinstance(subject, (Spec, Report)):
        raise TypeError(f"check(subject, ...): subject must be a Spec (archcalc.load) or a Report (archcalc.analyze), "
                        f"got {type(subject).__name__}")
    if isinstance(claims, (str, bytes, Path)):
        raise TypeError(f"check(subject, claims): claims must be a mapping, (key, value) pairs or Answers, got a "
                        f"{type(claims).__name__}: read a file with archcalc.load_answers(path)")
    report = subject if isinstance(subject, Report) else analyze(subject, **values)
    pairs, place = _pairs(subject, claims)
    rules = None if claims is None else grading_of(subject, report, tolerance)
    return _verdicts(report, pairs, place, rules, spec=subject if isinstance(subject, Spec) else None)


def grading_of(subject: Spec | Report, report: Report, tolerance=None, **visibility) -> Grading:
    """The grading policy for answers about `report`: the spec's [grading] (a Report has none), `tolerance` over it."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (str, int, float, Tolerance, type(None))):
        raise TypeError(f"tolerance must be a str such as \"1%\" or \"exact\", got {type(tolerance).__name__}")
    spec = subject if isinstance(subject, Spec) else None
    return policy.of(spec.grading if spec else (), report, tolerance=tolerance, path=spec and spec.path,
                     text=spec.text if spec else "", **visibility)


def _verdicts(report: Report, pairs, place: dict, rules: Grading | None = None, each: bool = False,
              spec: Spec | None = None) -> list[Verdict]:
    """A verdict per claim; `rules`: the instructor's (None: each claim's own precision, as [expect] is read);
    `each`: a claim that cannot be read or evaluated is a verdict with its error, not a ClaimError for all."""
    out = []
    reports: dict = {}  # the report at each set of qualifiers, made once: many claims share them
    for claim in claim_keys.read(pairs, report, each=each, **place):
        if isinstance(claim, Unread):
            out.append(unread(claim))
            continue
        try:
            at = reports.get(claim.key.at) or reports.setdefault(claim.key.at, at_qualifiers(report, claim.key))
            out.append(verdict(report, claim, at, rules, spec))
        except SpecError as error:  # a formula that reads well but cannot be evaluated: "1/0"
            failure = ClaimError(error.problem, error.hint, f'"{claim.key.text}"', place.get("where"),
                                 place.get("path"), claim.line)
            if not each:
                raise failure from None
            out.append(unread(Unread(claim.key.text, claim.raw, claim.line, failure, claim.key)))
    return out


def unread(claim: Unread) -> Verdict:
    """The verdict of a claim that could not be graded: not right, with its error."""
    return Verdict(key=claim.text, claimed=claim.raw, actual=None, ok=False, explanation="", line=claim.line,
                   kind=claim.key.kind if claim.key else "count", error=str(claim.error))


@dataclass(frozen=True)
class Result:
    """One claims file checked: its verdicts, or the error that kept it from being checked."""

    file: str | None
    source: str  # "answers", or "expect": the spec's own [expect] table
    verdicts: tuple[Verdict, ...] = ()
    student: dict = dataclasses.field(default_factory=dict)
    error: str | None = None

    variant: str | None = None  # a quiz variant's network: "variant 3: k = 5, c = 16" (variants.py)

    @property
    def right(self) -> int:
        return sum(v.ok for v in self.verdicts)

    @property
    def total(self) -> int:
        """The claims counted: all but the undecided ones (a number against a formula without --set)."""
        return sum(v.decided for v in self.verdicts)

    @property
    def undecided(self) -> int:
        return len(self.verdicts) - self.total

    @property
    def errors(self) -> list[str]:
        """Why claims could not be graded (each is also a verdict that is not right)."""
        return [v.error for v in self.verdicts if v.error]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.errors and self.right == self.total

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "source": self.source,
            "student": self.student or None,
            "right": self.right,
            "total": self.total,
            "undecided": self.undecided,
            "ok": self.ok,
            "error": self.error,
            "variant": self.variant,
            "claims": [v.to_dict() for v in self.verdicts],
        }


class Graded(list):
    """grade's list of Results, and what it found in the folders and did not grade (`skipped`: path, why)."""

    skipped: tuple[tuple[str, str], ...] = ()


def grade(spec: Spec, files=(), *, report: Report | None = None, tolerance: str | Tolerance | None = None,
          variants=None, **values) -> Graded:
    """Check answers files (folders: their .toml files, and one student per subfolder) against `spec`, or its
    [expect] when there are none. `tolerance`: the instructor's for every key (else the spec's [grading], else
    the defaults); `variants`: a quiz's variants manifest (a path, or teaching.manifest.Manifest), to grade each
    file against its student's own network.

    A file that cannot be read gets a Result with its `error`, a claim that cannot be read a verdict with its
    `error`; the other files and claims are still checked.
    """
    if not isinstance(spec, Spec):
        raise TypeError(f"grade(spec, files): spec must be a Spec (archcalc.load(path)), got {type(spec).__name__}")
    if isinstance(files, (str, bytes, Path)):
        raise TypeError(f"grade(spec, files): files must be a list of paths, got a {type(files).__name__}: "
                        f"write grade(spec, [{str(files)!r}])")
    if report is not None and not isinstance(report, Report):
        raise TypeError(f"grade(..., report=): a Report (archcalc.analyze), got {type(report).__name__}")
    try:
        files = list(files)
    except TypeError:
        raise TypeError(f"grade(spec, files): files must be a list of paths, got {type(files).__name__}") from None
    for item in files:
        if not isinstance(item, (str, Path)):
            raise TypeError(f"grade(spec, files): each file is a str or a Path, got {type(item).__name__}")
    report = report or analyze(spec, **values)
    rules = grading_of(spec, report, tolerance)
    if variants is not None:
        variants = variants if isinstance(variants, Manifest) else Manifest.load(variants, spec)
    if not files:
        if not spec.expect:
            raise ClaimError("nothing to check: the spec has no [expect] table",
                             "give answers files: archcalc check SPEC ANSWERS...", path=spec.path)
        return Graded([_result(report, spec, None, rules)])
    found = answer_files(files)
    grader = _Grader(spec, report, rules, variants, values)
    out = Graded(grader.result(path, problem) for path, problem in found.files)
    out.skipped = tuple(found.skipped)
    return out


class _Grader:
    """Grades one file after another: each against the network of its quiz variant when there are variants."""

    def __init__(self, spec: Spec, report: Report, rules: Grading, variants, values: dict):
        self.spec, self.report, self.rules, self.variants, self.values = spec, report, rules, variants, values
        self.reports: dict = {}

    def result(self, path: str, problem: str | None) -> Result:
        if problem:
            return Result(path, "answers", error=f"{path}: {problem}")
        if self.variants is None:
            return _result(self.report, self.spec, path, self.rules)
        try:
            answers = claim_keys.load_answers(path)
            number, label = self.variants.variant_of(answers)
        except ArchcalcError as error:
            return Result(path, "answers", error=str(error))
        if number not in self.reports:
            report = analyze(self.spec, **(self.values | dict(self.variants.values(number))))
            self.reports[number] = (report, grading_of(self.spec, report, self.rules.tolerance if self.rules.source
                                                       == "--tolerance" else None))
        report, rules = self.reports[number]
        return dataclasses.replace(_result(report, self.spec, path, rules, answers), variant=label)


def _result(report: Report, spec: Spec, path: str | None, rules: Grading | None = None,
            answers: Answers | None = None) -> Result:
    """One file's Result: whatever goes wrong with it becomes its error, and the other files are still graded."""
    source = "expect" if path is None else "answers"
    student = {}
    try:
        if path is None:
            return Result(spec.path, source, tuple(_verdicts(report, *_expected(spec), spec=spec)))
        answers = answers or claim_keys.load_answers(path)
        student = answers.student
        pairs, place = _pairs(report, answers)
        return Result(path, source, tuple(_verdicts(report, pairs, place, rules, each=True, spec=spec)), student)
    except ArchcalcError as error:
        return Result(path or spec.path, source, student=student, error=str(error))
    except RecursionError:
        problem = "nested too deeply to grade"
    except MemoryError:
        problem = "too large to grade: it ran out of memory"
    except Exception as error:  # a grader goes on to the next student whatever one file does
        problem = f"could not be graded: {type(error).__name__}: {str(error)[:200]} (a bug in archcalc: please report it)"
    return Result(path or spec.path, source, student=student, error=f"{path or spec.path}: {problem}")


IGNORED = ("__MACOSX",)  # what a zip made on a Mac adds beside each file: never a student's


@dataclass
class Found:
    """What a list of paths holds to grade: (path, problem or None) per student, and what is left out, with why."""

    files: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)


def answer_files(paths) -> Found:
    """The answers files of `paths`: a file as given; in a folder, each .toml file (sorted), and each subfolder
    as one student's (an LMS export), whose one answers file is found in it (student_file says how).
    Anything else in a folder is skipped and listed, never silently."""
    found = Found()
    for path in map(Path, paths):
        if not path.is_dir():
            found.files.append((str(path), None))
            continue
        entries = sorted(path.iterdir(), key=lambda p: p.name)
        if not entries:
            found.files.append((str(path), "an empty folder: no answers files in it"))
        for entry in entries:
            if entry.name.startswith(".") or entry.name in IGNORED:
                found.skipped.append((str(entry), "hidden, or made by the system (not a student's)"))
            elif entry.is_dir() and entry.suffix != ".toml":  # a folder named *.toml is refused when read
                found.files.append(student_file(entry))
            elif entry.suffix == ".toml":
                found.files.append((str(entry), None))
            else:
                found.skipped.append((str(entry), "not a .toml file"))
    return found


def student_file(folder: Path) -> tuple[str, str | None]:
    """One student's folder: its one .toml file, searched at any depth (hidden files and __MACOSX aside); of
    several, the one whose name ends in answers.toml; otherwise the folder is an error that lists them."""
    found = sorted(p for p in folder.rglob("*.toml")
                   if not any(part.startswith(".") or part in IGNORED for part in p.relative_to(folder).parts))
    if len(found) > 1:
        found = [p for p in found if p.name.endswith("answers.toml")] or found
    if len(found) == 1:
        return str(found[0]), None
    if not found:
        return str(folder), "a student's folder with no .toml file in it: nothing to grade"
    names = ", ".join(str(p.relative_to(folder)) for p in found[:5]) + (", ..." if len(found) > 5 else "")
    return str(folder), (f"a student's folder with {len(found)} .toml files ({names}): which one are the answers? "
                         "Keep one, or name it ...answers.toml")


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


def verdict(report: Report, claim: Claim, at: Report | None = None, rules: Grading | None = None,
            spec: Spec | None = None) -> Verdict:
    """The verdict of one claim; `rules`: the instructor's grading policy (None: the claim's own precision);
    `spec`: the spec analysed, for the mistakes that redo the whole network."""
    key = claim.key
    at = at or at_qualifiers(report, key)
    env = dict(report.values) | ({"B": at.batch} if at.batch is not None else {})
    actual = value(at, key)
    within, whose = rules.rule(key, report) if rules is not None else (None, "")
    holds = claim.value.holds(actual, env, within)
    note = None
    if holds is None:
        names = sorted(num.free_names(num.mul(actual) if isinstance(actual, tuple) else actual))
        sets = " ".join(f"--set {name}=..." for name in names)
        note = (f"undecided: the true value is a formula in {', '.join(names)}, and a number cannot be compared with "
                f"it: give them values ({sets}) to grade this claim")
    elif isinstance(claim.value, Dims) and claim.value.order(actual, env) == "channels last":
        note = "read channels last (H×W×C), the way the course writes shapes"
    elif within is not None and isinstance(getattr(claim.value, "value", claim.value), (Approx, Bounds)):
        note = policy.describe(within, whose)
    ok = bool(holds)
    context = mistakes.Context(at, key, actual, env, within, spec)
    return Verdict(
        key=key.text,
        claimed=claim.raw,
        actual=actual,
        ok=ok,
        explanation=explain_claim.capped(explain_claim.text(at, key)) if holds is not None
        else explain_claim.short(at, key, actual),
        mistake=None if ok or holds is None else mistakes.recognise(claim.value, context),
        reading=claim.value.reading(env),
        note=note,
        line=claim.line,
        kind=key.kind,
        tolerance=None if within is None else within.text,
        decided=holds is not None,
    )
