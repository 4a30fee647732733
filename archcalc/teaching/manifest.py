"""Which network each student's quiz was about: the manifest `archcalc quiz --variants N` writes
(STEM-SEED-variants.json), read back to grade every student against their own variant.

    [{"variant": 1, "values": {"k": 5, "c": 16}, "seed": ..., "files": [...], "check": "...",
      "students": ["1815", "ada@example.org"]},       # optional: who was given this variant
     ...]

A student's variant is found, in this order of trust: their id or email in a variant's `students`
(the instructor's list; on Gradescope also the submitter's id and email from
submission_metadata.json); the `variant = N` their blank sheet came with (in [student]); the
sheet's file name (STEM-SEED-v003-answers.toml). When two of these disagree, the file is not
graded and the error says which said what.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..analysis.engine import names
from ..core import untrusted
from ..spec.read import Spec
from .claim_keys import Answers
from .claim_values import ClaimError

_FILE = re.compile(r"-v(\d{1,5})-answers\.toml$")  # the blank sheet's name: alexnet-7-v003-answers.toml
MAX_MANIFEST = 4 * 2**20


@dataclass(frozen=True)
class Manifest:
    """The variants of one quiz: each one's number, values and (optionally) the students given it."""

    path: str
    entries: tuple[tuple[int, tuple[tuple[str, int], ...], tuple[str, ...]], ...]  # (number, values, students)

    @classmethod
    def load(cls, path: str | Path, spec: Spec) -> Manifest:
        """Read and check a manifest against the spec it was drawn from (every name one the spec varies)."""
        if not isinstance(path, (str, Path)):
            raise TypeError(f"variants: a manifest's path (a str or a Path), got {type(path).__name__}")
        place = {"path": str(path)}
        try:
            if Path(path).stat().st_size > MAX_MANIFEST:
                raise ClaimError("a variants manifest over 4 MiB", **place)
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise ClaimError(f"cannot read the variants manifest: {error.strerror or error}", **place) from None
        except (ValueError, RecursionError) as error:
            raise ClaimError(f"not a variants manifest (JSON): {str(error)[:100]}",
                             "give the STEM-SEED-variants.json that `archcalc quiz --variants N` wrote", **place) from None
        if not isinstance(data, list) or not data:
            raise ClaimError("a variants manifest is a list of variants", "as `archcalc quiz --variants N` writes it", **place)
        known = names(spec)
        entries = []
        for i, entry in enumerate(data, start=1):
            where = f"variant {i}"
            if not isinstance(entry, dict) or not isinstance(entry.get("variant"), int) \
                    or not isinstance(entry.get("values"), dict):
                raise ClaimError("each variant has a number ('variant') and its 'values'", where=where, **place)
            values = entry["values"]
            for name, value in values.items():
                if name not in known or isinstance(value, bool) or not isinstance(value, int):
                    raise ClaimError(f"{untrusted.one_line(repr(name))[:40]} = {untrusted.one_line(repr(value))[:40]} is "
                                     f"not a whole value of one of {spec.name}'s names",
                                     "was this manifest drawn from this spec?", where=where, **place)
            students = entry.get("students", [])
            if not isinstance(students, list) or not all(isinstance(s, (str, int)) and not isinstance(s, bool)
                                                          for s in students):
                raise ClaimError("'students' is a list of ids or emails", where=where, **place)
            entries.append((entry["variant"], tuple(values.items()), tuple(str(s).strip() for s in students)))
        numbers = [number for number, _, _ in entries]
        if len(set(numbers)) != len(numbers):
            raise ClaimError("a variant number is listed twice", **place)
        given = [s for _, _, students in entries for s in students]
        twice = sorted({s for s in given if given.count(s) > 1})
        if twice:
            raise ClaimError(f"{untrusted.one_line(twice[0])[:60]} is given two variants", **place)
        return cls(str(path), tuple(entries))

    def values(self, number: int) -> tuple[tuple[str, int], ...]:
        return {n: v for n, v, _ in self.entries}[number]

    def label(self, number: int) -> str:
        return f"variant {number}: " + ", ".join(f"{name} = {value}" for name, value in self.values(number))

    def variant_of(self, answers: Answers, ids: tuple[str, ...] = ()) -> tuple[int, str]:
        """(number, label) of the variant `answers` were written for; `ids`: the submitter's, from outside the
        file (Gradescope's metadata). ClaimError when it cannot be told, or two ways of telling disagree."""
        said: dict[str, int] = {}
        student = answers.student
        known = {str(student[f]).strip() for f in ("id", "email") if str(student.get(f, "")).strip()} | set(ids)
        for number, _, students in self.entries:
            for who in known & set(students):
                said[f"the manifest gives {who} variant {number}"] = number
        if "variant" in student:
            number = student["variant"]
            if isinstance(number, str) and number.strip().isdigit():
                number = int(number)
            if not isinstance(number, int) or isinstance(number, bool):
                raise ClaimError(f"variant = {untrusted.one_line(repr(number))[:40]}: a variant is a number",
                                 "keep the variant = N line the blank sheet came with", where="[student]",
                                 path=answers.path)
            said[f"the file says variant = {number}"] = number
        if answers.path and (match := _FILE.search(Path(answers.path).name)):
            said[f"the file's name says variant {int(match.group(1))}"] = int(match.group(1))
        if not said:
            raise ClaimError("which quiz variant are these answers for? The file has no variant = N in [student], "
                             "its name is not a variant's sheet's, and no student in the manifest has its id",
                             "keep the blank sheet's variant = N line, or list each student's id under 'students' "
                             "in the manifest", path=answers.path)
        if len(set(said.values())) > 1:
            raise ClaimError("which quiz variant? " + "; ".join(said), "the manifest's list of students is the one to "
                             "correct, or the student's file", path=answers.path)
        number = next(iter(said.values()))
        if number not in {n for n, _, _ in self.entries}:
            raise ClaimError(f"variant {number} is not in {self.path} (it has {len(self.entries)})", path=answers.path)
        return number, self.label(number)
