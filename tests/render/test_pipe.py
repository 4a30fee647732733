"""Output into a pipe or a file: COLUMNS honoured (else 80 columns), no line with trailing blanks, and no
empty line at the end, so `archcalc check ... | tail -1` is the summary."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

import archcalc
from archcalc.cli.main import main
from archcalc.cli.output import Trimmed, pipe_width
from archcalc.render import report as render
from tests.conftest import ROOT, SPECS


@pytest.mark.parametrize("columns, width", [(None, 80), ("100", 100), ("200", 200), ("60", 60), ("10", 60), ("", 80),
                                            ("wide", 80), ("9" * 40, 80)])
def test_a_pipe_is_as_wide_as_columns_says_or_80(columns, width):
    assert pipe_width({} if columns is None else {"COLUMNS": columns}) == width


@pytest.mark.parametrize("writes, written", [
    (["a  \n", "b\n"], "a\nb\n"),
    (["a", "   ", "b   \n"], "a   b\n"),  # blanks inside a line stay, even split across writes
    (["total\n", "\n", "\n"], "total\n"),  # empty lines at the end: dropped
    (["x\n\n", "\n", "y\n"], "x\n\n\ny\n"),  # empty lines with text after them: kept
    (["│ 2 │    \n", "    \n", "    "], "│ 2 │\n"),
    (["", "\n"], ""),
])
def test_trimmed_drops_trailing_blanks_and_empty_lines_at_the_end(writes, written):
    out = io.StringIO()
    stream = Trimmed(out)
    for text in writes:
        assert stream.write(text) == len(text)
    assert out.getvalue() == written


def lines(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize("columns", [None, "100", "72"])
def test_show_in_a_pipe_follows_columns_and_pads_nothing(columns):
    env = {"COLUMNS": columns} if columns else {}
    env.setdefault("COLUMNS", None)  # unset: CliRunner removes variables set to None
    printed = lines(CliRunner().invoke(main, ["show", str(SPECS / "lenet5.toml")], env=env))
    width = int(columns or 80)
    assert max(map(cell_len, printed)) <= width
    assert not [line for line in printed if line != line.rstrip()]
    assert printed[-1].strip()  # no empty line at the end
    header = next(line for line in printed if line.lstrip().startswith("layer"))
    assert ("FLOPs" in header) == (width >= 100)  # at 100 columns every column fits; at 80 the compact table


def test_check_piped_into_tail_gives_the_summary():
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(f"{sys.executable} -m archcalc check specs/gpt2.toml | tail -1", shell=True, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout == "6/6 right\n", done.stderr


def test_parameters_are_not_repeated_when_the_short_form_is_the_number():
    spec = archcalc.loads('[model]\ninput = [1, 8, 8]\n[[layers]]\ntype = "conv"\nout_channels = 6\nkernel_size = 5\n')
    report = archcalc.analyze(spec)
    assert dict(render.summary_lines(report))["Parameters"] == "156: weights 150, biases 6"
    assert "- **Parameters**: 156: weights 150, biases 6" in render.markdown(report)
    alexnet = archcalc.analyze(archcalc.load(SPECS / "alexnet.toml"))
    assert dict(render.summary_lines(alexnet))["Parameters"].startswith("62,378,344 (62.4M): ")
