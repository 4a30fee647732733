"""The memory panel at 80 columns: values left-aligned and broken only between terms; a peak that is the
largest of many formulas in B and T (symbolic GPT-2) shown at sizes a reader can use, exactly."""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given, settings, strategies as st
from rich.console import Console

import archcalc
from archcalc.core import fmt
from archcalc.render import report as render, wrap
from tests.conftest import SPECS


def printed(renderable, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    return "".join(line.rstrip() + "\n" for line in console.export_text().splitlines())


def report(name: str, **values):
    return archcalc.analyze(archcalc.load(SPECS / f"{name}.toml"), **values)


def test_a_memory_formula_is_whole_and_left_aligned_at_80_columns():
    lines = printed(render.memory_panel(report("alexnet"), 80), 80).splitlines()
    forward = next(i for i, line in enumerate(lines) if line.startswith("forward peak"))
    assert lines[forward].endswith("  237.95 MiB + 4.57 MiB × B")  # was "237.95 MiB + 4.57" / "MiB × B", right-aligned
    column = lines[forward].index("237.95")
    assert lines[forward + 1] == " " * column + "(249,513,376 + 4,790,792·B) bytes"  # the bytes below, from the same column
    backward = next(i for i, line in enumerate(lines) if line.startswith("backward peak"))
    assert [line[column:] for line in lines[backward: backward + 3]] == [
        "max(475.78 MiB + 3.90 MiB × B,", "473.43 MiB + 4.62 MiB × B,", "464.99 MiB + 4.68 MiB × B)"]


@pytest.mark.parametrize("text, width, expected", [
    ("237.95 MiB + 4.57 MiB × B", 20, ["237.95 MiB", "+ 4.57 MiB × B"]),
    ("(246,824 + 41,736·B) bytes", 22, ["(246,824 + 41,736·B)", "bytes"]),
    ("32×112×112", 6, ["32×112", "×112"]),  # a shape is one token: cut only where nothing else fits
    ("96×(floor(H/4 - 7/4) + 1)×(floor(W/4 - 7/4) + 1)", 24, ["96", "×(floor(H/4 - 7/4) + 1)", "×(floor(W/4 - 7/4) + 1)"]),
    ("conv 3×3/2, p1, no bias", 16, ["conv 3×3/2, p1,", "no bias"]),
    ("bottleneck ×3 · 23 layers", 20, ["bottleneck ×3 ·", "23 layers"]),
    ("max(1.07 GiB + 385.00 KiB × B, 621.94 MiB + 188.06 MiB × B)", 32, ["max(1.07 GiB + 385.00 KiB × B,",
                                                                        "621.94 MiB + 188.06 MiB × B)"]),
])
def test_lines_break_between_terms(text, width, expected):
    assert wrap.lines(text, width) == expected


TERMS = ["T", "T**2", "floor(H/4 - 7/4)", "(256*floor(H/32 - 63/32) + 256)", "B", "classes"]
formulas = st.lists(st.tuples(st.integers(1, 10**9), st.lists(st.sampled_from(TERMS), max_size=3)), min_size=1, max_size=8).map(
    lambda terms: " + ".join("*".join([str(c), *factors]) for c, factors in terms))


@settings(max_examples=200, deadline=None)
@given(formulas, st.integers(8, 60))
def test_lines_keep_every_character_and_break_only_where_they_may(text, width):
    out = wrap.lines(text, width)
    assert "".join(out).replace(" ", "") == text.replace(" ", "")  # nothing lost, nothing added
    assert all(len(line) <= width for line in out)
    if width >= wrap.narrowest(text):  # then no line starts inside a token: each at a break
        starts = {begin for _, begin, _ in wrap._breaks(text)}
        at = 0
        for line in out:
            start = text.index(line, at)
            assert start == 0 or start in starts, (line, text)
            at = start + len(line)


def rows(r) -> dict[str, tuple[str, str]]:
    return {units.split("\n")[0]: (units, exact) for label, units, exact in render.memory_lines(r) if units.startswith("at ")}


@pytest.mark.parametrize("size", [128, 1024])
def test_symbolic_gpt2s_peak_is_shown_at_a_few_sizes_exactly(size):
    """Each example is the peak `--set T=...` gives: its formula in B (or its number at --batch)."""
    shown = rows(report("gpt2"))[f"at T = {size}:"]
    concrete = report("gpt2", T=size).memory.training
    assert shown[0] == f"at T = {size}:\n" + fmt.per_batch(concrete, None)[0]
    at_batch = rows(report("gpt2", batch=8))[f"at T = {size}:"]
    assert at_batch == (f"at T = {size}:\n" + fmt.size_bytes(concrete.at(8)), f"{fmt.group(concrete.at(8))} bytes, the backward peak")


def test_symbolic_gpt2s_table_and_explanation_say_how_to_get_a_number():
    r = report("gpt2")
    for text in (printed(render.table(r, width=80), 80), printed(render.table(r, width=80, explained=True), 80)):
        assert re.search(r"training step, peak +the largest of \d+ formulas in B, T\n", text)
        assert "at T = 1024:" in text and "at T = 128:" in text
        assert "at any size: --set T=… --batch B" in text
    explained = printed(render.explanation(r), 80) + render.markdown(r, explained=True)
    assert explained.count("the largest of") >= 2 and explained.count("backward peak") >= 4
    assert "for a number: --set T=… --batch B; --format json lists every formula" in render.markdown(r, explained=True)
    data = json.loads(render.json(r))["memory"]  # JSON stays the formulas themselves
    assert data["training_bytes"] == str(r.memory.training.at(None)) and data["peak_phase"] is None


def test_a_symbolic_peak_at_a_batch_is_the_largest_of_its_formulas_there():
    shown = rows(report("alexnet_symbolic", batch=4))["at H = 224, W = 224, classes = 1000:"]
    value = report("alexnet_symbolic", batch=4, H=224, W=224, classes=1000).memory.training.at(4)
    assert shown == (f"at H = 224, W = 224, classes = 1000:\n{fmt.size_bytes(value)}", f"{fmt.group(value)} bytes, the backward peak")
