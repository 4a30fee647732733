"""Every whole value of an unknown for which claims hold: "which H gives pool3 6×6?", "which padding keeps the size?".

The network is analysed once with the unknown left a symbol; each claimed quantity is then a
formula (with its floors), evaluated exactly at every candidate in the search bound. The values
that pass are checked again on the network analysed at that value, which also drops the values
where a layer refuses its input (a kernel larger than the padded input, a padding over half the
kernel). Where the symbolic analysis cannot run (a condition that needs a number), every candidate
is analysed as a number.

>>> import archcalc
>>> found = solve(archcalc.load("specs/alexnet_symbolic.toml"), "H", {"pool3.output": "256×6×6"}, {"W": 224})
>>> found.ranges
((223, 254),)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.engine import names
from ..core import expr, num
from ..core.errors import ArchcalcError, SpecError
from ..report import analyze
from ..spec.read import Spec
from . import claim_keys
from .claim_values import ClaimError
from .truth import at_qualifiers, value as true_value

BOUND = (0, 1024)  # the default search bound, both ends included
MOST = 100_000  # the widest bound searched
MOST_ANALYSED = 2_048  # where each value is analysed (3 ms each on ResNet-18: 100,000 took five minutes)


@dataclass(frozen=True)
class Solution:
    name: str
    where: tuple[tuple[str, object], ...]  # the claims, as given
    bound: tuple[int, int]
    ranges: tuple[tuple[int, int], ...]  # every value in them makes every claim hold
    symbolic: bool  # whether the formulas were evaluated (else every candidate was analysed)

    @property
    def count(self) -> int:
        return sum(high - low + 1 for low, high in self.ranges)

    def to_dict(self) -> dict:
        return {self.name: [list(r) for r in self.ranges]}

    def text(self) -> str:
        claims = " and ".join(f"{key} = {value}" for key, value in self.where)
        bound = f"{self.bound[0]}..{self.bound[1]}"
        if not self.ranges:
            return f"No whole value of {self.name} in {bound} makes {claims} hold."
        spans = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in self.ranges)
        return (f"{self.name} = {spans} ({self.count} value{'s' * (self.count != 1)} in {bound}) makes {claims} hold"
                + ("" if self.symbolic else " (every value analysed: the spec needs numbers to be analysed)"))


def solve(spec: Spec, name: str, where: dict[str, object], values: dict | None = None,
          bound: tuple[int, int] = BOUND) -> Solution:
    """The whole values of `name` in `bound` for which every claim of `where` holds, as ranges."""
    values = dict(values or {})
    low, high = bound
    if not 0 <= low <= high or high - low + 1 > MOST:
        raise SpecError(f"cannot search {low}..{high}", f"a bound LOW..HIGH with 0 <= LOW <= HIGH, at most {MOST:,} values",
                        where="--range")
    if name not in names(spec):
        raise SpecError(f"the spec has no name {name!r}", f"its names: {', '.join(sorted(names(spec)))}", where="--for")
    if name in values:
        raise SpecError(f"{name} is given a value (--set) and solved for (--for)", "give one of the two", where="--for")
    if not where:
        raise SpecError("nothing to solve: give a claim with --where KEY=VALUE", "for example --where pool3.output=256×6×6",
                        where="--where")
    candidates = range(low, high + 1)
    symbolic = True
    try:
        report = analyze(spec, **values, **{name: name})  # the name given as itself: a free symbol, even over [vars]
        claims = claim_keys.read(list(where.items()), report, where="--where")
        formulas = [(claim, true_value(at_qualifiers(report, claim.key), claim.key)) for claim in claims]
        candidates = [n for n in candidates if all(_holds(claim, actual, name, n, report) for claim, actual in formulas)]
    except ClaimError:
        raise
    except ArchcalcError as error:
        symbolic = False  # a condition that needs numbers: analyse each candidate as a number
        if len(candidates) > MOST_ANALYSED:
            raise SpecError(f"cannot analyse {len(candidates):,} values one by one ({getattr(error, 'problem', None) or str(error).splitlines()[0]})",
                            f"a --range of at most {MOST_ANALYSED:,} values where the spec needs numbers", where="--range") from None
    found = [n for n in candidates if _verified(spec, name, n, values, where)]
    return Solution(name, tuple(where.items()), (low, high), _ranges(found), symbolic)


def _holds(claim, actual, name: str, n: int, report) -> bool:
    env = dict(report.values) | {name: n}
    point = {name: n}
    if isinstance(actual, tuple):
        actual = tuple(num.subs(d, point) for d in actual)
    else:
        actual = num.subs(actual, point)
    try:
        return bool(claim.value.holds(actual, env))
    except (ArchcalcError, ZeroDivisionError, TypeError):
        return False


def _verified(spec: Spec, name: str, n: int, values: dict, where: dict) -> bool:
    """The claims checked on the network analysed at name = n (False where the network refuses n)."""
    given = {k: expr.parse(v).evaluate({name: n}) if isinstance(v, str) else v for k, v in values.items()}
    try:
        report = analyze(spec, **given, **{name: n})
        claims = claim_keys.read(list(where.items()), report, where="--where")
        return all(claim.value.holds(true_value(at_qualifiers(report, claim.key), claim.key), dict(report.values))
                   for claim in claims)
    except ClaimError:
        raise
    except ArchcalcError:
        return False


def _ranges(found: list[int]) -> tuple[tuple[int, int], ...]:
    """[3, 4, 5, 9] -> ((3, 5), (9, 9))."""
    out: list[list[int]] = []
    for n in found:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return tuple((a, b) for a, b in out)
