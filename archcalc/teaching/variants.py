"""Quiz variants: each student a different network, drawn from the spec's [variants] ranges, each with its own key.

    [vars]
    k = 3                               # the network as written (show, check without --set)
    channels = 64
    [variants]
    k = [3, 5, 7]                       # a list: one of these values
    channels = {low = 16, high = 64, step = 16}   # a range, both ends included (step: default 1)
    stride = {low = 1, high = 2}

A [variants] name is a [vars] name or a free size of the spec. Variants are drawn with one
random.Random(seed): the same seed gives the same variants, in the same order. A drawn network
that a layer refuses (a kernel larger than its input) is drawn again; no two variants are the
same network.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

from ..analysis.engine import names
from ..core.errors import ArchcalcError, SpecError
from ..report import analyze
from ..spec.read import Spec
from . import quiz

ATTEMPTS = 50  # draws per variant before giving up on finding a new, valid network


def choices(spec: Spec) -> dict[str, tuple[int, ...]]:
    """The values each [variants] name may take."""
    known = names(spec)
    out = {}
    for name, raw in spec.variants:
        place = {"where": "[variants]", "field": name, "path": spec.path}
        if name not in known or name == "B":
            raise SpecError(f"the spec has no name {name!r} to vary", f"its names: {', '.join(sorted(known - {'B'}))}", **place)
        if isinstance(raw, list):
            values = raw
        elif isinstance(raw, dict):
            unknown = set(raw) - {"low", "high", "step"}
            low, high, step = raw.get("low"), raw.get("high"), raw.get("step", 1)
            if unknown or not all(_whole(v) for v in (low, high, step)) or step < 1 or low > high:
                raise SpecError(f"cannot read the range {raw!r}", "write {low = 16, high = 64, step = 16} (whole numbers, "
                                "low <= high, step >= 1)", **place)
            values = range(low, high + 1, step)  # its length known before any value is made
        else:
            raise SpecError(f"expected a list of values or a range, got {raw!r}",
                            "write k = [3, 5, 7] or k = {low = 3, high = 7}", **place)
        if not values or len(values) > 10_000 or not all(_whole(v) for v in values):
            shown = f"{len(values):,} values" if len(values) > 10 else repr(raw)
            raise SpecError(f"expected 1 to 10,000 whole numbers, got {shown}", "write k = [3, 5, 7]", **place)
        out[name] = tuple(dict.fromkeys(values))
    if not out:
        raise SpecError("no [variants] table: nothing to vary between students",
                        "add [variants] with ranges over [vars] names, e.g. k = [3, 5, 7]", path=spec.path)
    return out


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def draw(spec: Spec, variants: int, count: int, seed: int, spec_path: str | None = None, **options) -> list[quiz.Quiz]:
    """`variants` quizzes of `count` questions, each about a network of its own drawn from [variants]."""
    if not isinstance(spec, Spec):
        raise TypeError(f"variants.draw(spec, ...): spec must be a Spec (archcalc.load(path)), got {type(spec).__name__}")
    ranges = choices(spec)
    room = 1
    for values in ranges.values():
        room *= len(values)
    if variants > room:
        raise ArchcalcError(f"cannot draw {variants} different networks: [variants] allows {room}\n"
                            f"  hint: widen the ranges, or ask for --variants {room} or fewer")
    rng = random.Random(seed)
    seen: set[tuple] = set()
    out = []
    for index in range(1, variants + 1):
        for _ in range(ATTEMPTS):
            values = tuple((name, rng.choice(options_)) for name, options_ in ranges.items())
            if values in seen:
                continue
            seen.add(values)
            try:
                report = analyze(spec, **options, **dict(values))
            except SpecError:
                continue
            drawn = quiz.draw(report, count, rng.randrange(10**6), spec=spec_path)
            label = f"variant {index} of {variants}: archcalc quiz {spec_path or 'SPEC'} --variants {variants} --seed {seed}"
            out.append(replace(drawn, values=values, variant=label, number=index))
            break
        else:
            raise ArchcalcError(f"variant {index}: no new network that every layer accepts in {ATTEMPTS} draws\n"
                                "  hint: narrow the [variants] ranges to sizes the network accepts")
    return out


def files(quizzes: list[quiz.Quiz], stem: str) -> dict[str, str]:
    """A class's quizzes as files: each variant's own (`{stem}-v001-quiz.md`, its key, its answers sheet),
    then `{stem}-variants.json`, which says which student has which network."""
    out, manifest = {}, []
    for index, drawn in enumerate(quizzes, start=1):
        own = drawn.files(f"{stem}-v{index:03d}")
        out |= own
        manifest.append({"variant": index, "values": dict(drawn.values), "seed": drawn.seed, "files": list(own),
                         "check": drawn.check(f"{stem}-v{index:03d}-answers.toml")})
    out[f"{stem}-variants.json"] = json.dumps(manifest, indent=2) + "\n"
    return out
