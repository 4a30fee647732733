"""The instructor's grading policy (docs/grading.md, "How close is right"): how far a student's answer may be from the
true value, per key or for the whole key file, and what Gradescope shows the student when.

    [grading]                             # in the spec that is the answer key
    tolerance = "1%"                      # every key not listed below (shapes stay exact)
    visibility = "after_due_date"         # Gradescope: when each test's true value and derivation show
    "params" = "0.1%"                     # one key: a tolerance ...
    "memory.training_bytes" = {tolerance = "5%", visibility = "visible"}   # ... or its settings

Without any of it, counts, receptive fields and shapes are graded exactly and bytes and shares within
1% of the true value. The tolerance bounds how far the value a student wrote may be from the true
value; the precision the student states ("62.4M" is ± 0.05M) can only narrow it, never widen it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..core import untrusted
from ..core.errors import SpecError
from ..report import Report
from .claim_keys import Key, ValueKind, identity, line_of, parse_key
from .claim_values import EXACT, ClaimError, Tolerance, read_tolerance

DEFAULT_RELATIVE = "1%"  # bytes and shares: no student computes them to the byte or the last decimal
DEFAULTS: dict[str, Tolerance] = {
    ValueKind.count: EXACT,  # parameters, MACs, FLOPs: counting is the exercise
    ValueKind.axes: EXACT,  # receptive fields and jumps: pixels
    ValueKind.shape: EXACT,
    ValueKind.bytes: read_tolerance(DEFAULT_RELATIVE),
    ValueKind.share: read_tolerance(DEFAULT_RELATIVE),
}
VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")  # Gradescope's, from least to most shown
# Each test's default: its output holds the true value and its derivation, which a student who may resubmit
# should not see at once; the top-level output (always visible by default) says which claims are right.
DEFAULT_VISIBILITY = "after_due_date"
DEFAULT_OVERALL = "visible"
SETTINGS = ("tolerance", "visibility")  # what one key's entry may set
FILE_SETTINGS = ("tolerance", "visibility", "overall_visibility")  # what [grading] sets for the whole file


@dataclass(frozen=True)
class Setting:
    tolerance: Tolerance | None = None
    visibility: str | None = None


@dataclass(frozen=True)
class Grading:
    """The tolerance and Gradescope visibility of every key: per key, else for the file, else the defaults."""

    tolerance: Tolerance | None = None  # the whole file's (None: DEFAULTS, by what the quantity is)
    source: str = "default"  # where the file's tolerance comes from: "default", "[grading]", "--tolerance"
    keys: tuple[tuple[tuple, Setting], ...] = ()  # a key's identity (claim_keys.identity) -> its own settings
    visibility: str = DEFAULT_VISIBILITY
    overall_visibility: str = DEFAULT_OVERALL

    def _setting(self, key: Key, report: Report) -> Setting:
        table = dict(self.keys)
        found = table.get(identity(key, report))
        if found is None and key.at:  # "memory.training_bytes" in [grading] covers it at every batch and dtype
            found = table.get(identity(replace(key, at=()), report, resolve=False))
        return found or Setting()

    def tolerance_of(self, key: Key, report: Report) -> Tolerance:
        return self.rule(key, report)[0]

    def rule(self, key: Key, report: Report) -> tuple[Tolerance, str]:
        """The key's tolerance and whose it is: 'the instructor's for this key', 'the default for counts'."""
        own = self._setting(key, report).tolerance
        if own is not None:
            return own, "the instructor's for this key"
        if self.tolerance is not None and key.kind != ValueKind.shape:
            return self.tolerance, f"the instructor's for every key ({self.source})"
        what = {ValueKind.count: "counts", ValueKind.axes: "receptive fields and jumps", ValueKind.shape: "shapes",
                ValueKind.bytes: "bytes", ValueKind.share: "shares"}[key.kind]
        return DEFAULTS[key.kind], f"the default for {what}"

    def visibility_of(self, key: Key, report: Report) -> str:
        return self._setting(key, report).visibility or self.visibility


def visibility(raw: object, what: str = "visibility") -> str:
    if raw not in VISIBILITY:
        raise ClaimError(f"{what} {untrusted.one_line(repr(raw))[:60]} is not one of Gradescope's",
                         f"one of {', '.join(VISIBILITY)}")
    return str(raw)


def of(table, report: Report, *, tolerance=None, test_visibility=None, overall_visibility=None,
       path: str | None = None, text: str = "") -> Grading:
    """The policy of a spec's [grading] table (raw pairs), for `report`'s network; `tolerance` and the
    visibilities (the command line's) replace the file's own. ClaimError names the key and its line."""
    data = dict(table)
    file: dict = {}
    for name in FILE_SETTINGS:
        if name in data and not isinstance(data[name], dict):
            file[name] = data.pop(name)
    keys: dict[tuple, Setting] = {}
    for key_text, raw in _entries(data):
        place = {"where": "[grading]", "path": path, "line": line_of(text, f"grading.{key_text}")}
        shown = f'"{untrusted.one_line(key_text)[:80]}"'
        try:
            key = parse_key(key_text, report)
            raw = raw if isinstance(raw, dict) else {"tolerance": raw}
            unknown = sorted(set(raw) - set(SETTINGS))
            if unknown:
                raise ClaimError(f"{untrusted.one_line(unknown[0])[:40]!r} is not a setting of a key",
                                 f"a key takes {' and '.join(SETTINGS)}: \"params\" = {{tolerance = \"1%\"}}")
            own = read_tolerance(raw["tolerance"], key.kind) if "tolerance" in raw else None
            if own is not None and key.kind == ValueKind.shape and not own.exact:
                raise ClaimError(f"{key_text} is a shape: shapes are compared exactly", 'write "exact" or leave it out')
            keys[identity(key, report, resolve=bool(key.at))] = Setting(
                own, visibility(raw["visibility"]) if "visibility" in raw else None)
        except SpecError as error:
            raise ClaimError(error.problem, error.hint, shown, **place) from None
    place = {"where": "[grading]", "path": path}
    try:
        whole, source = None, "default"
        if tolerance is not None:
            whole, source = (tolerance if isinstance(tolerance, Tolerance) else read_tolerance(tolerance)), "--tolerance"
        elif "tolerance" in file:
            whole, source = read_tolerance(file["tolerance"]), "[grading]"
        tests = visibility(test_visibility if test_visibility is not None else file.get("visibility", DEFAULT_VISIBILITY))
        overall = visibility(overall_visibility if overall_visibility is not None
                             else file.get("overall_visibility", DEFAULT_OVERALL), "overall visibility")
    except SpecError as error:
        raise ClaimError(error.problem, error.hint, **place, line=line_of(text, "grading")) from None
    return Grading(whole, source, tuple(keys.items()), tests, overall)


def _entries(data: dict) -> list[tuple[str, object]]:
    """[grading]'s keys and their settings: a table of settings is one key's, any other table a dotted key's part."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value and not set(value) & set(SETTINGS):
            out += [(f"{key}.{inner}", v) for inner, v in _entries(value)]
        else:
            out.append((key, value))
    return out


def describe(tolerance: Tolerance, whose: str) -> str:
    """How an approximate answer was graded, for its verdict's note."""
    if tolerance.exact:
        return f"graded exactly ({whose}): an approximation is right only if it is the true value"
    return f"graded within {tolerance.text} of the true value ({whose})"
