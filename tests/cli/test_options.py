"""The shared flags, read once into one Options (archcalc/cli/options.py), and commands kept small."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.analysis.engine import network
from archcalc.cli import options as flags
from archcalc.cli.main import main
from archcalc.cli.options import Options
from archcalc.report import largest_size
from tests.conftest import ROOT, SPECS

LENET = str(SPECS / "lenet5.toml")
SYMBOLIC = str(SPECS / "alexnet_symbolic.toml")


def test_a_command_without_the_step_flags_asks_what_analyze_assumes():
    keywords = {name: p.default for function in (network, archcalc.analyze)
                for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY}
    del keywords["parallel"]  # the library's whole Layout; the command line gives its parts (--gpus, --strategy, --tp)
    assert Options().step() == keywords


def test_every_shared_flag_lands_in_a_field():
    fields = {f.name for f in dataclasses.fields(Options)} | {"precision"}  # --precision is read into dtype and autocast
    shared = [value for value in vars(flags).values() if isinstance(value, flags.Flag)]
    assert shared and {flag.name for flag in shared} <= fields


def test_precision_is_read_once_into_a_dtype_and_an_autocast():
    step = Options.read(precision="bf16-mixed").step()
    assert (step["dtype"], step["autocast"]) == ("float32", "bfloat16")
    assert Options.read(precision="16-true").step()["autocast"] is None
    with pytest.raises(archcalc.SpecError, match="not both"):
        Options.read(precision="16-true", dtype="float16")


@pytest.mark.parametrize("command", [["show", LENET], ["export", LENET], ["memory", LENET, "--budget", "1GiB"]])
def test_a_set_that_names_an_option_is_refused(command):
    result = CliRunner().invoke(main, [*command, "--set", "dtype=float16"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "'dtype' is an option, not a name of the spec" in result.output


def test_solve_refuses_a_spec_whose_memory_has_another_unknown():
    result = CliRunner().invoke(main, ["memory", SYMBOLIC, "--budget", "4GiB", "--solve", "H", "-b", "8"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "still a formula in classes" in result.output and "--set classes=..." in result.output


def test_largest_size_is_a_library_call():
    spec = archcalc.load(SPECS / "lstm_lm.toml")
    solved = largest_size(spec, "T", 2 * 2**30, batch=4)
    assert solved.value == 1133 and solved.report.memory.training.at(4) <= 2 * 2**30
    assert archcalc.analyze(spec, batch=4, T=1134).memory.training.at(4) > 2 * 2**30


def parameters(function: ast.FunctionDef) -> int:
    args = function.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return len([n for n in names if n not in ("self", "cls")]) + bool(args.vararg) + bool(args.kwarg)


@pytest.mark.parametrize("path", [*sorted((ROOT / "archcalc" / "cli").glob("*.py")), ROOT / "archcalc" / "spec" / "graph.py"],
                         ids=lambda p: Path(p).name)
def test_no_function_takes_more_than_six_parameters_or_forty_lines(path):
    functions = [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in functions if parameters(f) > 6] == []
    assert [f.name for f in functions if f.end_lineno - f.lineno >= 40] == []
