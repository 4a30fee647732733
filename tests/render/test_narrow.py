"""What show, memory, check, example, quiz and solve print, for every shipped spec, at 80 columns and in a
pipe: no line over 80 columns, no line with trailing blanks, no cell left blank where a value exists.

The one token that may run past the width is a path the user gave that is itself wider (none here)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

import archcalc
from archcalc.cli.main import main
from archcalc.core import fmt, num
from tests.conftest import SPECS

ALL = sorted(path.name for path in SPECS.glob("*.toml"))
WIDTH = 80


def printed(args: list[str], width: int = WIDTH, codes=(0,), formulas: bool = True) -> list[str]:
    """A command's standard output in a pipe COLUMNS wide, each line checked (`formulas`: none ends on an operator)."""
    result = CliRunner().invoke(main, args, env={"COLUMNS": str(width)})
    assert result.exit_code in codes, (args, result.output)
    lines = result.stdout.splitlines()
    for line in lines:
        assert cell_len(line) <= width, (args, line)
        assert line == line.rstrip(), (args, line)
        assert not (formulas and line.endswith((" +", " -", " ×"))), (args, line)  # a formula breaks before its operator
    assert lines and lines[-1].strip(), "no empty line at the end"
    return lines


def report(name: str):
    return archcalc.analyze(archcalc.load(SPECS / name))


def row_line(lines: list[str], name: str) -> str:
    """The table's line that opens a layer's row: its name is its first word (continued on the next lines,
    before a dot, where the name is wider than its column)."""
    for i, line in enumerate(lines):
        first = line.split()[:1]
        for below in lines[i + 1:]:
            if not (first and below.split()[:1] and below.split()[0].startswith(".")):
                break
            first = [first[0] + below.split()[0]]
        if first == [name]:
            return line
    raise AssertionError(f"no row for {name}")


@pytest.mark.parametrize("name", ALL)
def test_show_at_80_columns_shows_every_row_its_shape_and_parameters(name):
    lines = printed(["show", str(SPECS / name)])
    r = report(name)
    for row in r.rows:
        line = row_line(lines, row.name)
        if num.is_concrete(row.params):
            assert fmt.group(row.params) in line.split(), (row.name, line)
        if all(map(num.is_concrete, row.output)):
            assert fmt.shape(row.output) in line, (row.name, line)
    assert any(line.startswith("training step, peak") for line in lines)


@pytest.mark.parametrize("name", ["resnet50.toml", "gpt2.toml", "densenet121.toml", "unet.toml"])
def test_show_with_depth_at_80_columns_keeps_a_folded_block_readable(name):
    lines = printed(["show", str(SPECS / name), "--depth", "1"])
    for use in report(name).uses:
        if "." in use.path:
            continue
        line = row_line(lines, use.path)
        if use.repeat:  # "bottleneck ×3 · 23 layers" (its own column, or after a dot), never "bottleneck ×3 23 layers"
            assert not re.search(rf"×{use.repeat} \d", line), line
            assert re.search(rf"{use.block} ×{use.repeat}( ·|$| {{2}})", line), line


@pytest.mark.parametrize("name", ["lenet5.toml", "alexnet_symbolic.toml", "gpt2.toml"])
def test_show_explained_at_80_columns(name):
    printed(["show", str(SPECS / name), "--explain"])


CONCRETE = [name for name in ALL if name not in {"alexnet_symbolic.toml", "resnet18_symbolic.toml", "gpt2.toml",
                                                    "lstm_lm.toml"}]


@pytest.mark.parametrize("name", CONCRETE)
def test_memory_at_80_columns(name):
    lines = printed(["memory", str(SPECS / name), "--budget", "80GiB"])
    assert lines[0].startswith("Largest batch: ")


@pytest.mark.parametrize("name", ALL)
def test_check_at_80_columns_ends_with_its_summary(name):
    lines = printed(["check", str(SPECS / name)])
    assert lines[-1].endswith(" right")


def test_check_of_wrong_answers_at_80_columns():
    # render/check.py's "why" column is wrapped by rich at words: a derivation may end a line on its "+"
    printed(["check", str(SPECS / "alexnet.toml"), str(SPECS.parent / "tests" / "fixtures" / "alexnet_answers")], codes=(1, 2),
            formulas=False)


@pytest.mark.parametrize("name", ["alexnet.toml", "lenet5.toml", "gpt2.toml", "resnet18.toml"])
def test_quiz_at_80_columns(name, tmp_path):
    printed(["quiz", str(SPECS / name), "-n", "10", "--seed", "7", "-o", str(tmp_path)])


def test_quiz_variants_at_80_columns(tmp_path):
    printed(["quiz", str(SPECS.parent / "tests" / "fixtures" / "variants.toml"), "--variants", "4", "-n", "3", "--seed", "1",
             "-o", str(tmp_path)])


@pytest.mark.parametrize("args", [
    ["alexnet_symbolic.toml", "--for", "H", "--where", "pool3.output=256×6×6", "--set", "W=224"],
    ["alexnet_symbolic.toml", "--for", "H", "--where", "flatten.output=9216", "--set", "W=224", "--range", "0..2000"],
    [str(SPECS.parent / "tests" / "fixtures" / "variants.toml"), "--for", "k", "--where", "conv1.output=[16, 24, 24]",
     "--set", "s=1", "--set", "c=16"],
])
def test_solve_at_80_columns(args):
    printed(["solve", str(SPECS / args[0]), *args[1:]])


NOTES_6X6 = "1 3 2 0 1 2; 4 6 5 1 3 1; 7 2 8 2 0 4; 3 5 0 6 7 3; 2 1 9 8 2 4; 1 0 3 5 2 1"
WIDE = "; ".join(" ".join(f"{(-1) ** (r + c) * (10 ** 12 + 37 * r + c)}/7" for c in range(16)) for r in range(16))
EXAMPLES = [
    ["dropout", "--p", "0.5", "--matrix", "2 8 -3 11 5", "--mask", "1 0 1 0 1"],  # docs/cli.md's
    ["conv", "--matrix", "1 2 3 4 5 6 7 8; 8 7 6 5 4 3 2 1; 1 2 3 4 5 6 7 8; 1 1 1 1 1 1 1 1", "--kernel", "1 0; 0 -1"],
    ["pool", "--op", "max", "--kernel-size", "2", "--stride", "2", "--matrix", NOTES_6X6],
    ["pool", "--op", "avg", "--kernel-size", "3", "--stride", "1", "--padding", "1", "--matrix", NOTES_6X6],
    ["dropout", "--p", "1/3", "--seed", "4", "--matrix", "; ".join(" ".join(str(16 * r + c) for c in range(16)) for r in range(16))],
    ["pool", "--op", "avg", "--kernel-size", "1", "--matrix", WIDE],  # 16×16 numbers of 16 characters each
]


@pytest.mark.parametrize("width", [60, 80])
@pytest.mark.parametrize("args", EXAMPLES, ids=lambda args: " ".join(args[:1] + args[-1:])[:40])
def test_every_matrix_cell_is_shown(args, width):
    """Each value of each matrix (input, kernel, mask, output...) stands in a cell of its grid, as on a
    terminal wide enough for all of them side by side."""
    data = json.loads(CliRunner().invoke(main, ["example", *args, "--format", "json"]).stdout)
    matrices = [data[key] for key in ("input", "kernel", "mask", "masked", "eval_output", "output") if key in data]
    wide = cells(printed(["example", *args], 400), 400)
    assert sum(wide.values()) == sum(len(m) * len(m[0]) for m in matrices)  # every cell, none blank
    assert cells(printed(["example", *args], width), width) == wide


def cells(lines: list[str], width: int) -> Counter:
    """The texts in the grids' cells (box rows split at their borders)."""
    return Counter(cell.strip() for line in lines if "│" in line for cell in line.split("│")
                   if cell.strip() and not any("\u2500" <= c <= "\u257f" for c in cell))  # a shorter grid's bottom edge
