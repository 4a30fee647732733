"""`archcalc solve`: every whole value of an unknown for which claims hold, checked against analysing each value."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import SpecError
from archcalc.cli.main import main
from archcalc.teaching.solve import solve

PADDED = """[model]
input = [3, 32, 32]
[vars]
p = 0
k = 3
[[layers]]
type = "conv"
out_channels = 16
kernel_size = "k"
padding = "p"
[[layers]]
type = "pool"
kernel_size = 2
"""


def brute(spec, name, key, claim, values, bound):
    """The oracle: analyse the network at every value and check the claim there."""
    out = []
    for n in range(bound[0], bound[1] + 1):
        try:
            [verdict] = archcalc.check(spec, {key: claim}, **values, **{name: n})
        except SpecError:
            continue
        if verdict.ok:
            out.append(n)
    return out


def test_alexnet_h_from_223_to_254_gives_pool3_6x6():
    spec = archcalc.load("specs/alexnet_symbolic.toml")
    found = solve(spec, "H", {"pool3.output": "256×6×6"}, {"W": 224}, (150, 300))
    assert found.ranges == ((223, 254),) and found.symbolic
    assert list(range(223, 255)) == brute(spec, "H", "pool3.output", "256×6×6", {"W": 224}, (150, 300))


@pytest.mark.parametrize("name, key, claim, values", [
    ("p", "conv1.output", [16, 32, 32], {}),  # which padding keeps the size (k = 3: 1)
    ("p", "conv1.output", [16, 32, 32], {"k": 5}),
    ("k", "conv1.output", [16, 28, 28], {}),  # which kernel gives this output
    ("k", "pool1.output", [16, 14, 14], {"p": 1}),
    ("p", "pool1.output", [16, 17, 17], {"k": 1}),
])
def test_solutions_are_exactly_the_values_that_hold(name, key, claim, values):
    spec = archcalc.loads(PADDED)
    found = solve(spec, name, {key: claim}, values, (0, 40))
    expected = brute(spec, name, key, claim, values, (0, 40))
    assert [n for a, b in found.ranges for n in range(a, b + 1)] == expected and expected


def test_cli_json_and_no_solution():
    runner = CliRunner()
    args = ["solve", "specs/alexnet_symbolic.toml", "--for", "H", "--set", "W=224"]
    result = runner.invoke(main, [*args, "--where", "pool3.output=256×6×6", "-f", "json"])
    assert result.exit_code == 0 and json.loads(result.output) == {"H": [[223, 254]]}
    result = runner.invoke(main, [*args, "--where", "flatten.output=9216", "--range", "0..100"])
    assert result.exit_code == 1 and "No whole value of H in 0..100" in result.output


@pytest.mark.parametrize("extra, problem", [
    (["--for", "Q", "--where", "params=1"], "no name 'Q'"),
    (["--for", "H", "--where", "pool9.output=1"], "no layer or layer type named 'pool9'"),
    (["--for", "H", "--where", "params"], "is not KEY=VALUE"),
    (["--for", "H", "--where", "params=1", "--range", "5..1"], "cannot search 5..1"),
    (["--for", "H", "--where", "params=1", "--range", "0..1000000"], "at most 100,000 values"),
    (["--for", "H", "--where", "params=1", "--set", "H=3"], "solved for"),
])
def test_bad_questions_exit_2(extra, problem):
    result = CliRunner().invoke(main, ["solve", "specs/alexnet_symbolic.toml", *extra])
    assert result.exit_code == 2 and problem in result.output, result.output
