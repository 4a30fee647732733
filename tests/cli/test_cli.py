"""`archcalc show` from the outside: its flags, its formats, and what it must not import."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import main
from tests.conftest import ROOT, SPECS

ALEXNET = str(SPECS / "alexnet.toml")
SYMBOLIC = str(SPECS / "alexnet_symbolic.toml")


def show(*args: str):
    result = CliRunner().invoke(main, ["show", *args])
    assert "Traceback" not in result.output
    return result


def ok(*args: str) -> str:
    result = show(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def test_table_by_default():
    out = ok(ALEXNET)
    assert "AlexNet: input 3×224×224, float32" in out
    assert "62,378,344 (62.4M)" in out
    assert "fc1: 37,752,832 (60.5%)" in out
    assert "conv 3,747,200 (6.0%) · dense 58,631,144 (94.0%)" in out


@pytest.mark.parametrize("form", ["table", "json", "markdown", "csv"])
def test_every_format(form):
    out = ok(ALEXNET, "--format", form)
    if form == "json":
        assert json.loads(out)["totals"]["params"] == 62378344
    elif form == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert sum(int(row["params"]) for row in rows) == 62378344
    elif form == "markdown":
        assert out.startswith("### AlexNet: input 3×224×224, float32\n")
        assert "| **total** |" in out
    else:
        assert "total" in out
    assert ok(ALEXNET, "-f", form) == out


def test_set_gives_the_numbers_back():
    out = ok(SYMBOLIC, "--set", "H=224", "--set", "W=224", "--set", "classes=1000", "--format", "json")
    data = json.loads(out)
    assert data["totals"]["params"] == 62378344
    assert data["layers"][0]["output"] == [96, 55, 55]
    assert data["input"] == [3, 224, 224]


def test_set_leaves_the_other_names_symbolic():
    data = json.loads(ok(SYMBOLIC, "--set", "classes=10", "--format", "json"))
    assert data["layers"][-1]["params"] == 40970
    assert data["layers"][0]["output"][1] == "floor(H/4 - 7/4) + 1"


def test_set_accepts_formulas_and_overrides_vars():
    data = json.loads(ok(ALEXNET, "--set", "classes=2 * 5", "--format", "json"))
    assert data["layers"][-1]["output"] == [10]
    assert data["totals"]["params"] == 62378344 - 4097 * 990


def test_batch():
    symbolic = json.loads(ok(ALEXNET, "--format", "json"))["memory"]
    data = json.loads(ok(ALEXNET, "--batch", "32", "--format", "json"))["memory"]
    assert (symbolic["batch"], data["batch"]) == ("B", 32)
    assert data["params_bytes"] == 62378344 * 4
    assert isinstance(data["training_bytes"], int) and isinstance(symbolic["training_bytes"], str)
    assert ok(ALEXNET, "-b", "32", "--format", "json") == ok(ALEXNET, "--batch", "32", "--format", "json")


def test_dtype():
    data = json.loads(ok(ALEXNET, "--dtype", "float16", "--batch", "1", "--format", "json"))["memory"]
    assert data["dtype"] == "float16"
    assert data["params_bytes"] == 62378344 * 2
    assert "AlexNet: input 3×224×224, bfloat16" in ok(ALEXNET, "--dtype", "bfloat16")


def test_explain():
    out = ok(ALEXNET, "--explain")
    assert "H_out = W_out = ⌊(224 + 2·2 − 11)/4⌋ + 1 = ⌊217/4⌋ + 1 = 55" in out
    assert "weights = C_out·C_in·kernel = 96·3·11² = 34,848" in out
    assert "drops a remainder of 1" in out
    data = json.loads(ok(ALEXNET, "--explain", "--format", "json"))
    assert "weights = C_out·C_in·kernel = 96·3·11² = 34,848" in data["layers"][0]["explain"]
    assert "weights = C_out·C_in·kernel = 96·3·11² = 34,848" in ok(ALEXNET, "--explain", "--format", "markdown")


def test_csv_has_no_room_for_explain():
    result = show(ALEXNET, "--format", "csv", "--explain")
    assert result.exit_code == 2
    assert "csv has no room for derivations" in result.stderr
    assert result.stdout == ""


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "show" in result.output
    out = ok("--help")
    for flag in ("--set NAME=VALUE", "--batch", "--dtype", "--format", "--explain"):
        assert flag in out
    assert ok("-h") == out


def test_version():
    result = CliRunner().invoke(main, ["--version"], prog_name="archcalc")
    assert result.exit_code == 0
    assert result.output == f"archcalc, version {archcalc.__version__}\n"


def test_no_command_shows_usage():
    result = CliRunner().invoke(main, [])
    assert "Usage:" in result.output


def test_the_output_is_the_library_report():
    """The CLI computes nothing: its JSON is the library's to_dict()."""
    report = archcalc.analyze(archcalc.load(ALEXNET), batch=8, dtype="float64")
    assert json.loads(ok(ALEXNET, "--batch", "8", "--dtype", "float64", "--format", "json")) == json.loads(
        json.dumps(report.to_dict())
    )


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_concrete_spec_never_imports_sympy():
    """sympy costs a quarter of a second on import; a spec with no unknown sizes must not pay it."""
    code = f"""
import sys
from archcalc.cli.main import main
for args in (["--format", "table"], ["--format", "json", "--batch", "32"], ["--format", "markdown", "--explain"],
             ["--format", "csv"]):
    try:
        main(["show", {ALEXNET!r}, *args])
    except SystemExit as exit:
        assert exit.code == 0, exit.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sympy", "torch"))
print("loaded:", loaded, file=sys.stderr)
"""
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stderr


def test_a_symbolic_spec_does_import_sympy():
    result = python(f"import sys, archcalc; archcalc.analyze(archcalc.load({SYMBOLIC!r})); print('sympy' in sys.modules)")
    assert result.stdout == "True\n", result.stderr


def test_import_archcalc_does_not_import_torch():
    result = python("import sys, archcalc, archcalc.cli.main; print(sorted(m for m in sys.modules if m.startswith(('torch', 'sympy'))))")
    assert result.stdout == "[]\n", result.stderr


def console_script() -> str:
    here = Path(sys.executable).parent / "archcalc"
    script = str(here) if here.exists() else shutil.which("archcalc")
    if script is None:
        pytest.skip("the archcalc console script is not installed")
    return script


def test_the_console_script_never_imports_sympy_for_a_concrete_spec():
    """`archcalc show specs/alexnet.toml` as a student types it, with Python's import log."""
    result = subprocess.run([sys.executable, "-X", "importtime", console_script(), "show", "specs/alexnet.toml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "62,378,344" in result.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "archcalc" in imported and "rich" in imported
    assert not imported & {"sympy", "torch"}
