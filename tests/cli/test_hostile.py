"""Hostile specs and answers files (issue 8): each gets one clear message and exit status 2, fast, in bounded
memory, and never a traceback; a folder with bad files in it still grades the good ones.

Most cases run in-process (CliRunner, timed); the ones that could hang or eat memory (FIFOs, devices,
huge exponents) run as processes with a timeout, their peak memory read from the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import archcalc
from archcalc.cli.main import main
from archcalc.core import num
from archcalc.core.errors import SpecError
from archcalc.teaching import claim_values
from tests.conftest import ROOT, SPECS

ALEXNET = str(SPECS / "alexnet.toml")
MODEL = '[model]\ninput = [3, 32, 32]\n'
DENSE = '[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "dense"\nout_features = 10\n'
FAST = 5.0  # CPU seconds (never the wall clock, which a loaded machine stretches): the cases take well under 1 s


@dataclass
class Case:
    id: str
    text: str  # the file's text: a spec for `show`, an answers file for `check specs/alexnet.toml`
    says: str  # part of the one message on stderr
    command: str = "check"
    args: tuple[str, ...] = ()
    status: int = 2
    files: dict = field(default_factory=dict)

    def __post_init__(self):
        self.files = self.files or {"case.toml": self.text}


def deep(open_: str, close: str, n: int = 3000) -> str:
    return open_ * n + "1" + close * n


SPEC_CASES = [
    Case("a 400-digit input", MODEL.replace("32, 32", "32, 1" + "0" * 399) + DENSE, "more than 100 digits", "show"),
    Case("a 5000-digit input", MODEL.replace("32, 32", "32, " + "9" * 5000) + DENSE, "more than 100 digits", "show"),
    Case("a 20000-character line", MODEL.replace("32, 32", "32, " + "9_" * 10000) + DENSE, "characters long", "show"),
    Case("a 90-digit input", MODEL.replace("32, 32", "32, " + "9" * 90) + DENSE, "larger than any real network", "show"),
    Case("scale_factor = 1e308", MODEL + '[[layers]]\ntype = "upsample"\nscale_factor = 1e308\n', "larger than any real network", "show"),
    Case("scale_factor = 1e17", MODEL + '[[layers]]\ntype = "upsample"\nscale_factor = 100000000000000000\n',
         "larger than any real network", "show"),
    Case("--batch past 10^18", MODEL + DENSE, "larger than any real network", "show", ("--batch", "(2**64)**15*2**63")),
    Case("--set past 10^18", MODEL.replace("32, 32", '32, "W"') + DENSE, "larger than any real network", "show",
         ("--set", "W=10**30")),
    Case("arrays 3000 deep", "[model]\ninput = " + deep("[", "]") + "\n", "nested too deeply", "show"),
    Case("inline tables 1500 deep", "[model]\ninput = [3]\nx = " + deep("{a=", "}", 1500) + "\n", "nested too deeply", "show"),
    Case("inline tables 3000 deep", "[model]\ninput = [3]\nx = " + deep("{a = ", "}") + "\n", "characters long", "show"),
    Case("dotted keys 3000 deep", "[model]\ninput = [3]\n" + ".".join(["a"] * 3000) + " = 1\n", "nested too deeply", "show"),
    Case("type = []", MODEL + "[[layers]]\ntype = []\n", "unknown layer type []", "show"),
    Case("type = a table", MODEL + "[[layers]]\ntype = {a = 1}\n", "unknown layer type", "show"),
    Case("a fullwidth name that exports as conv1", MODEL + '[[layers]]\ntype = "flatten"\nname = "ｃｏｎｖ1"\n'
         '[[layers]]\ntype = "dense"\nout_features = 2\nname = "conv1"\n', "already taken", "show"),
    Case("a mangled name", MODEL + '[[layers]]\ntype = "flatten"\nname = "__conv"\n', "two underscores", "show"),
    Case("a model name with escapes", '[model]\nname = "\\u001b[2Jx"\ninput = [3]\n' + DENSE, "control characters", "show"),
    Case("100k layers, the last one bad", MODEL + '[[layers]]\ntype = "flatten"\n' + '[[layers]]\ntype = "dropout"\n' * 100_000
         + '[[layers]]\ntype = "dense"\nout_features = 0\n', "more than archcalc reads", "show"),
    Case("10k layers, the last one bad", MODEL + '[[layers]]\ntype = "flatten"\n' + '[[layers]]\ntype = "dropout"\n' * 9_990
         + '[[layers]]\ntype = "dense"\nout_features = 0\n', "must be at least 1", "show"),
    Case("a 100k-element shape", MODEL + '[[layers]]\ntype = "reshape"\nshape = [' + "1, " * 100_000 + "1]\n",
         "characters long", "show"),
    Case("a 100k-element shape, one a line", MODEL + '[[layers]]\ntype = "reshape"\nshape = [\n' + "1,\n" * 100_000 + "1]\n",
         "at most 64 axes", "show"),
    Case("blocks using blocks 3000 deep", '[model]\ninput = [4]\n[[layers]]\ntype = "block"\nblock = "b0"\n'
         + "".join(f'[[blocks.b{i}.layers]]\ntype = "block"\nblock = "b{i + 1}"\n' for i in range(3000))
         + '[[blocks.b3000.layers]]\ntype = "dense"\nout_features = 2\n', "nested too deeply", "show"),
    Case("blocks repeated twice, 40 deep", '[model]\ninput = [4]\n[[layers]]\ntype = "block"\nblock = "b0"\nrepeat = 2\n'
         + "".join(f'[[blocks.b{i}.layers]]\ntype = "block"\nblock = "b{i + 1}"\nrepeat = 2\n' for i in range(40))
         + '[[blocks.b40.layers]]\ntype = "dense"\nout_features = 4\n', "expand to more than 20,000 layers", "show"),
    Case("a var past 10^18", MODEL + "[vars]\nn = 1e300\n" + DENSE, "larger than any real network", "show"),
    # issue 19: memory --budget
    Case("a 400-digit budget", MODEL + DENSE, "no memory is that large", "memory", ("--budget", "1" + "0" * 399)),
    Case("a 5000-digit budget", MODEL + DENSE, "no memory is that large", "memory", ("--budget", "9" * 5000)),
    Case("300…0TiB", MODEL + DENSE, "no memory is that large", "memory", ("--budget", "3" + "0" * 30 + "TiB")),
    Case("an empty budget", MODEL + DENSE, "no size given", "memory", ("--budget", "")),
    Case("a blank card", MODEL + DENSE, "no size given", "memory", ("--card", " ")),
    Case("an escape as a budget", MODEL + DENSE, "cannot read '\\x1b[2J' as a size", "memory", ("--budget", "\x1b[2J")),
    # issue 19: torch's and Keras's words, styled letters, values that are no number
    Case("type = linear", MODEL + '[[layers]]\ntype = "flatten"\n[[layers]]\nname = "head"\ntype = "linear"\n',
         ':7: layers[2] "head": type: unknown layer type \'linear\'', "show"),
    Case("type = avgpool", MODEL + '[[layers]]\ntype = "avgpool"\n', "or 'pool' with op = \"avg\"", "show"),
    Case("kernel = 3", MODEL + '[[layers]]\ntype = "conv"\nout_channels = 4\nkernel = 3\n', ":6: layers[1]", "show"),
    Case("ℌ beside H", MODEL.replace("32, 32", '"H", "W"') + '[vars]\nH = 32\n"ℌ" = 4\n' + DENSE, "one name with 'H'", "show"),
    Case("--set ℌ", MODEL.replace("32, 32", '"H", "W"') + DENSE, "one name with 'H'", "show", ("--set", "ℌ=3")),
    Case("--batch nan", MODEL + DENSE, "expected a finite number, got 'nan'", "show", ("--batch", "nan")),
    Case("--batch x", MODEL + DENSE, "'x' names x, which the spec does not use", "show", ("--batch", "x")),
    Case("--set W=inf", MODEL.replace("32, 32", '32, "W"') + DENSE, "expected a finite number", "show", ("--set", "W=inf")),

    # answers files, checked against the course's AlexNet
    Case("an exponent of a billion", '"params" = "1e999999999"\n', "exponent"),
    Case("a tolerance of 1e99999999", '"params" = "62.4M ± 1e99999999"\n', "exponent"),
    Case("a share of 1e999999999%", '"fc1.share" = "1e999999999%"\n', "exponent"),
    Case("5000 digits", '"params" = ' + "9" * 5000 + "\n", "more than 100 digits"),
    Case("400 digits and a point", '"params" = "1' + "0" * 400 + '.5"\n', "more than 100 digits"),
    Case("90 digits", '"params" = "1' + "0" * 90 + '"\n', "larger than any quantity"),
    Case("an empty file", "", "no claims"),
    Case("only comments", "# I will answer later\n\n", "no claims"),
    Case("only a student", '[student]\nname = "Ada"\n', "no claims"),
    Case("a key with a trailing space", '"conv1.params" = 34944\n"conv1.params " = 34944\n', "the same claim as"),
    Case("a key with a tab", '"conv1.params" = 34944\n"conv1.params\t" = 34944\n', "the same claim as"),
    Case("a key as a table", '"conv1.params" = 34944\n[conv1]\nparams = 34944\n', "the same claim as"),
    Case("a type key two ways", '"dense.share" = "94%"\n"type.dense.share" = "94%"\n', "the same claim as"),
    Case("qualifiers in another order", '"memory.params_bytes@B=2,dtype=float32" = 1\n'
         '"memory.params_bytes@dtype=float32, B=2" = 1\n', "the same claim as"),
    Case("1 ± 1e12", '"params" = "1 ± 1e12"\n', "does not pin the value"),
    Case("0..1e30", '"params" = "0..1e30"\n', "larger than any quantity"),
    Case("0..1e20", '"params" = "0..1e20"\n', "does not pin the value"),
    Case("1..1e20", '"params" = "1..1e20"\n', "does not pin the value"),
    Case("> 0", '"params" = "> 0"\n', "an open bound"),
    Case("<= 1e18", '"params" = "<= 1e18"\n', "an open bound"),
    Case("50% ± 50", '"fc1.share" = "50% ± 50"\n', "does not pin the value"),
    Case("60M ± 100%", '"params" = "60M ± 100%"\n', "does not pin the value"),
    Case("@B=foo", '"memory.training_bytes@B=foo" = 1\n', "has no name 'foo'"),
    Case("@B=10**30", '"memory.training_bytes@B=10**30" = 1\n', "larger than any real network"),
    Case("an error in the second table", '[conv1]\nparams = 34944\n[conv2]\nparams = "x"\n', "case.toml:4:"),
    Case("10k qualified keys", "".join(f'"memory.training_bytes@B={b}" = 1\n' for b in range(1, 10_001)), "claims: the limit is"),
    Case("arrays 3000 deep in a claim", '"conv1.output" = ' + deep("[", "]") + "\n", "nested too deeply"),
    Case("dotted keys 3000 deep in a claim", ".".join(["c"] * 3000) + " = 1\n", "nested too deeply"),
    Case("200k blank lines and a bad key", "\n" * 200_000 + '"conv9.params" = 1\n', "case.toml:200001:"),
    Case("a 100k-element claimed shape", '"conv1.output" = [\n' + "1,\n" * 100_000 + "1]\n", "at most 64 axes"),
    Case("a date as a claim", '"params" = 1979-05-27\n', "expected a value"),
    Case("nan as a claim", '"params" = nan\n', "expected a number"),
    Case("a million empty arrays", '"conv1.output" = [\n' + "[],\n" * 1_000_000 + "]\n", "arrays and tables: more than"),
    Case("a million keys", "".join(f"k{i} = 1\n" for i in range(1_000_000))[: 4 * 2**20 - 100], "keys: more than"),
    Case("5 MiB", ("# " + "x" * 9000 + "\n") * 600 + '"params" = 1\n', "too large"),
    Case("a spec given as answers", (SPECS / "lenet5.toml").read_text(), "this is a spec"),
]


# Commands that write files or drive torch, and their flags.
COMMAND_CASES = [
    (["export", "{spec}", "--class-name", "class"], "not a usable Python class name"),
    (["export", "{spec}", "--class-name", "__X"], "not a usable Python class name"),
    (["export", "{spec}", "-o", "{spec}"], "that is the spec itself"),
    (["export", "{spec}", "-o", "{existing}"], "already exists"),
    (["quiz", "{spec}", "-o", "{existing}/sub"], "cannot make this folder"),
    (["quiz", "{spec}", "--seed", "1" + "0" * 300], "is not in the range"),
    (["bench", "{spec}", "--device", "meta"], "not 'meta'"),
    (["bench", "{spec}", "--peak-tflops", "nan"], "not a number of TFLOP/s"),
    (["verify", "{huge}"], "refused before allocating anything"),
    (["memory", "{spec}", "--budget", "24GB", "--solve", "H", "--batch", "nan"], "--batch: must be a whole number"),  # int('nan')
    (["memory", "{spec}", "--budget", "24GB", "--solve", "H", "--batch", ""], "--batch: must be a whole number"),
]


@pytest.mark.parametrize("args, says", COMMAND_CASES, ids=[" ".join(a[2:])[:40] for a, _ in COMMAND_CASES])
def test_commands_refuse_what_would_write_over_files_or_cannot_run(args, says, tmp_path):
    if args[0] in ("bench", "verify") or (args[0] == "export" and "-o" in args):
        pytest.importorskip("torch")
    spec = tmp_path / "net.toml"
    spec.write_text((SPECS / "lenet5.toml").read_text())
    huge = tmp_path / "huge.toml"
    huge.write_text('[model]\ninput = [3, 100000, 100000]\n[[layers]]\ntype = "conv"\nout_channels = 64\nkernel_size = 3\n')
    existing = tmp_path / "existing.py"
    existing.write_text("keep me\n")
    args = [a.format(spec=spec, existing=existing, huge=huge) for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert says in result.output, result.output
    assert existing.read_text() == "keep me\n" and spec.read_text() == (SPECS / "lenet5.toml").read_text()


def run_inprocess(case: Case, tmp_path: Path):
    for name, text in case.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    target = str(tmp_path / next(iter(case.files)))
    args = ["check", ALEXNET, target, *case.args] if case.command == "check" else [case.command, target, *case.args]
    start = time.process_time()
    result = CliRunner().invoke(main, args)
    return result, time.process_time() - start


@pytest.fixture(scope="module", autouse=True)
def warm():
    num.symbol("warm")  # sympy's first import (a quarter of a second) is no case's time
    archcalc.analyze(archcalc.load(ALEXNET))


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.id for c in SPEC_CASES])
def test_a_hostile_input_gets_one_clear_message_and_status_2(case: Case, tmp_path):
    result, seconds = run_inprocess(case, tmp_path)
    output = result.output
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert result.exit_code == case.status, output[-2000:]
    assert "Traceback" not in output
    assert case.says in output, output[-2000:]
    message = [line for line in output.splitlines() if line.startswith("archcalc: ")]
    assert len(message) == 1 and len(output) < 5000, output[-2000:]
    assert seconds < FAST, f"{case.id}: {seconds:.2f} s"


# Inputs that are not hostile, only unusual: they work, quickly.
def test_unusual_but_valid_inputs_work(tmp_path):
    chain = "[vars]\n" + "".join(f'v{i} = "v{i + 1} + 1"\n' for i in range(3000)) + "v3000 = 1\n"
    micro = '[vars]\n"µ" = 5\n'  # U+00B5 MICRO SIGN; the formula below writes U+03BC GREEK SMALL LETTER MU
    for text, params in (
        (MODEL + chain + '[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "dense"\nout_features = "v0 - 2990"\n', 3072 * 11 + 11),
        ("\n" * 200_000 + MODEL + DENSE, 3072 * 10 + 10),
        (MODEL.replace("[3, 32, 32]", "[10]") + micro + '[[layers]]\ntype = "dense"\nout_features = "μ + 1"\n', 66),
    ):
        start = time.process_time()
        report = archcalc.analyze(archcalc.loads(text))
        assert time.process_time() - start < FAST
        assert report.totals["params"] == params
    given = archcalc.loads(MODEL.replace("[3, 32, 32]", "[10]") + '[[layers]]\ntype = "dense"\nout_features = "µ"\n')
    assert archcalc.analyze(given, **{"μ": 3}).totals["params"] == 33  # given as U+03BC, written as U+00B5


def test_names_are_nfkc_normalised_the_way_python_reads_them():
    spec = archcalc.loads(MODEL.replace("[3, 32, 32]", "[10]") + '[[layers]]\ntype = "dense"\nout_features = 2\nname = "ｆｃ"\n')
    assert spec.layers[0].name == "fc"
    [verdict] = archcalc.check(spec, {"ｆｃ.params": 22})
    assert verdict.ok


# Files that are not regular files: refused before anything is read, so nothing blocks or fills memory.
# `python -m archcalc ARGS` that reports, as its last line on stderr, its own peak resident memory
# (VmHWM) and CPU seconds: the children's ru_maxrss would include this process's own peak, which a child
# spawned from it inherits at exec (a test that held a large model earlier in the same session would fail
# this one). Its CPU time is capped (RLIMIT_CPU): a case that computes without end is killed, not waited for.
LAUNCH = """import atexit, os, runpy, sys
try:
    import resource
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
except (ImportError, ValueError, OSError):
    pass
def _peak():
    cpu = sum(os.times()[:2])
    try:
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    except OSError:
        return
    sys.stderr.write("\\n@peak-kib " + line.split()[1] + " " + repr(cpu) + "\\n")
atexit.register(_peak)
sys.argv[0] = "archcalc"
runpy.run_module("archcalc", run_name="__main__", alter_sys=True)
"""


def run_process(args: list[str], env=None, timeout: float = 600) -> tuple[int, str, str, float, float]:
    """(status, stdout, stderr, CPU seconds, peak resident MiB) of `python -m archcalc ARGS`; `timeout` only keeps
    a case that blocks without computing (a FIFO read) from hanging the tests."""
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"archcalc {' '.join(args)} still blocked after {timeout} s")
    text = stderr.decode(errors="replace")
    head, marker, tail = text.rpartition("\n@peak-kib ")
    if marker:
        kib, cpu = tail.split()[:2]
        return process.returncode, stdout.decode(errors="replace"), head, float(cpu), int(kib) / 1024
    # no /proc: the children's usage (the largest so far, upper bounds)
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return process.returncode, stdout.decode(errors="replace"), text, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def test_devices_fifos_and_folders_are_refused_without_reading_them(tmp_path):
    folder = tmp_path / "answers"
    folder.mkdir()
    (folder / "good.toml").write_text('"conv1.params" = 34944\n')
    (folder / "zero.toml").symlink_to("/dev/zero")
    (folder / "random.toml").symlink_to("/dev/urandom")
    os.mkfifo(folder / "fifo.toml")
    (folder / "folder.toml").mkdir()
    status, stdout, stderr, _, peak = run_process(["check", ALEXNET, str(folder), "--format", "json"])
    assert status == 2 and "Traceback" not in stderr
    files = {Path(f["file"]).name: f for f in json.loads(stdout)["files"]}
    assert files["good.toml"]["right"] == 1 and files["good.toml"]["error"] is None
    for name in ("zero.toml", "random.toml", "fifo.toml"):
        assert "not a regular file" in files[name]["error"], name
    assert "is a directory" in files["folder.toml"]["error"]
    assert peak < 1024, f"{peak:.0f} MiB"
    status, _, stderr, _, _ = run_process(["show", str(folder / "fifo.toml")])
    assert status == 2 and "not a regular file" in stderr


def test_the_leads_smoke_test(tmp_path):
    """good.toml graded, huge.toml (an exponent of a billion) and long.toml (5000 digits) refused: fast, no traceback."""
    (tmp_path / "good.toml").write_text('"conv1.params" = 34944\n')
    (tmp_path / "huge.toml").write_text('"params" = "1e999999999"\n')
    (tmp_path / "long.toml").write_text('"params" = ' + "7" * 5000 + "\n")
    status, stdout, stderr, seconds, peak = run_process(["check", ALEXNET, str(tmp_path), "--format", "json"])
    assert status == 2 and "Traceback" not in stderr + stdout
    files = {Path(f["file"]).name: f for f in json.loads(stdout)["files"]}
    assert files["good.toml"]["right"] == 1 and files["good.toml"]["ok"]
    assert files["long.toml"]["error"]  # 5000 digits: TOML cannot be read
    [claim] = files["huge.toml"]["claims"]  # an error of that claim: the file's others would still be graded
    assert claim["error"] and claim["actual"] is None and not files["huge.toml"]["ok"]
    assert seconds < 10 and peak < 1024


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"COLUMNS": "10"}], ids=["ascii", "10 columns"])
def test_a_narrow_or_ascii_terminal_still_gets_the_output(env):
    status, stdout, stderr, _, _ = run_process(["check", ALEXNET], env=env)
    assert status == 0 and "Traceback" not in stderr
    assert "22/22 right" in stdout


# A class's folder: 30 files, 5 of them hostile. The 25 others are graded, in the table and in the JSON.
HOSTILE = {
    "h1.toml": '"params" = "1e999999999"\n',
    "h2.toml": "",
    "h3.toml": '"conv1.params" = 34944\n"conv1.params " = 34944\n',
    "h4.toml": '"params" = "> 0"\n',
    "h5.toml": '"conv1.output" = ' + deep("[", "]") + "\n",
}


def test_a_folder_with_hostile_files_grades_the_others(tmp_path):
    for i in range(25):
        right = 34944 if i % 2 == 0 else 34848
        (tmp_path / f"s{i:02d}.toml").write_text(f'"conv1.params" = {right}\n"params" = "62,378,344"\n[student]\nname = "S{i}"\n')
    for name, text in HOSTILE.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(main, ["check", ALEXNET, str(tmp_path), "--format", "json"])
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    files = {Path(f["file"]).name: f for f in document["files"]}
    assert len(files) == 30 and document["summary"]["errors"] == 5
    assert all(files[name]["error"] or any(c["error"] for c in files[name]["claims"]) for name in HOSTILE)
    assert [files[name]["error"] is None for name in HOSTILE] == [True, False, True, True, False]  # claims' errors
    graded = [f for name, f in files.items() if name.startswith("s")]
    assert all(f["error"] is None and f["total"] == 2 for f in graded)
    assert sum(f["right"] for f in graded) == 13 * 2 + 12
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", ALEXNET, str(tmp_path)])  # whole lines
    assert table.exit_code == 2 and "Traceback" not in table.output
    assert "30 files: 13 all right, 12 with wrong claims, 5 with errors (2 not checked); 39/54 claims right" in table.stdout
    results = archcalc.grade(archcalc.load(ALEXNET), [tmp_path])
    assert sum(r.error is not None or bool(r.errors) for r in results) == 5 and sum(r.right for r in results) == 39


def test_an_unexpected_failure_in_one_file_is_that_files_error(tmp_path, monkeypatch):
    (tmp_path / "a.toml").write_text('"conv1.params" = 34944\n')
    (tmp_path / "b.toml").write_text('"params" = 62378344\n')
    check_module = sys.modules["archcalc.teaching.check"]  # archcalc.check is the function
    original = check_module._verdicts

    def flaky(report, pairs, place, *args, **kwargs):
        if place["path"].endswith("a.toml"):
            raise RecursionError("maximum recursion depth exceeded")
        return original(report, pairs, place, *args, **kwargs)

    monkeypatch.setattr(check_module, "_verdicts", flaky)
    results = archcalc.grade(archcalc.load(ALEXNET), [tmp_path])
    assert "nested too deeply" in results[0].error and results[1].right == 1


# Student text is data: never markup, never control codes, always valid JSON.
def test_student_text_is_shown_as_written(tmp_path):
    (tmp_path / "a.toml").write_text('"\\u001b[2Jpool1.params" = 0\n')
    result = CliRunner().invoke(main, ["check", ALEXNET, str(tmp_path / "a.toml")])
    assert result.exit_code == 2 and "\x1b" not in result.output
    assert "\\x1b[2Jpool1.params" in result.output  # the key's escape, shown
    (tmp_path / "a.toml").write_text(
        '"fc3.output" = ["classes"]\n"conv1.params" = "about 34.944k"\n'
        '[student]\nname = "\\u001b[31mAda[/red]\\u009b"\nid = 1979-05-27\ngroup = nan\n'
    )
    result = CliRunner().invoke(main, ["check", ALEXNET, str(tmp_path / "a.toml")])
    assert result.exit_code == 0, result.output
    assert "[classes]" in result.output and "Ada[/red]" in result.output and "\\x1b[31m" in result.output
    assert "\x1b" not in result.output and "\x9b" not in result.output
    document = json.loads(CliRunner().invoke(main, ["check", ALEXNET, str(tmp_path / "a.toml"), "-f", "json"]).stdout)
    assert document["files"][0]["student"] == {"name": "\x1b[31mAda[/red]\x9b", "id": "1979-05-27", "group": "nan"}


# The library checks its arguments at the door.
@pytest.mark.parametrize("call, says", [
    (lambda: archcalc.loads(None), "text must be a str"),
    (lambda: archcalc.load(None), "path must be a str"),
    (lambda: archcalc.analyze("specs/alexnet.toml"), "spec must be a Spec"),
    (lambda: archcalc.check(archcalc.load(ALEXNET), "conv1.params = 1"), "claims must be a mapping"),
    (lambda: archcalc.check("specs/alexnet.toml"), "subject must be a Spec"),
    (lambda: archcalc.grade(archcalc.load(ALEXNET), "answers"), "files must be a list of paths"),
    (lambda: archcalc.grade("specs/alexnet.toml", ["answers"]), "spec must be a Spec"),
    (lambda: archcalc.load_answers(3), "path must be a str"),
    (lambda: archcalc.check(archcalc.load(ALEXNET), 5), "claims must be a mapping"),
    (lambda: archcalc.analyze(archcalc.load(ALEXNET), batch=[1]), "batch must be a number"),
    (lambda: archcalc.analyze(archcalc.load(ALEXNET), batch=object()), "batch must be a number"),
    (lambda: archcalc.analyze(archcalc.load(ALEXNET), batch=b"1"), "batch must be a number"),
    (lambda: archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"), H=None), "H must be a number"),
    (lambda: archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"), H=1j), "H must be a number"),
    (lambda: archcalc.grade(None), "spec must be a Spec"),
    (lambda: archcalc.analyze(archcalc.load(ALEXNET)).memory.training.at([2]), "batch must be"),
    (lambda: archcalc.analyze(archcalc.load(ALEXNET)).row(None), "name must be a layer's name"),
], ids=["loads(None)", "load(None)", "analyze(path)", "check(spec, str)", "check(path)", "grade(spec, str)",
        "grade(path)", "load_answers(3)", "check(spec, 5)", "batch=[1]", "batch=object()", "batch=b'1'", "H=None", "H=1j",
        "grade(None)", "training.at([2])", "row(None)"])
def test_library_arguments_are_checked_at_the_door(call, says):
    with pytest.raises(TypeError, match=says.replace("(", r"\(")):
        call()


# Generated: any value string, any answers text. Each is read or refused with a ClaimError, quickly.
VALUE_ALPHABET = "0123456789.,_ eE+-±%kMGTBiKb<>=~≈×x²^*/()[]abc"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(VALUE_ALPHABET, max_size=40), st.sampled_from(claim_values.KINDS))
def test_any_value_is_read_or_refused_quickly(text, kind):
    start = time.process_time()
    with contextlib.suppress(SpecError):  # a ClaimError; or a formula that reads but cannot be evaluated ("0/0")
        claim_values.read(text, kind).reading({})
    assert time.process_time() - start < 1.0


PIECES = ['"params" = ', '"conv1.params" = ', "[conv1]\n", "params = ", "1e99999", "62.4M", '"', "[", "]", "{", "}",
          "\n", "=", "nan", "1979-05-27", "# c\n", "[student]\n", "name = ", "\x1b", "0..1e30", "> 0", "±"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_any_answers_text_grades_to_one_result(tmp_path, pieces):
    path = tmp_path / "x.toml"
    path.write_text("".join(pieces), encoding="utf-8")
    start = time.process_time()
    [result] = archcalc.grade(archcalc.load(ALEXNET), [path])
    assert time.process_time() - start < 2.0
    assert result.error is None or "a bug in archcalc" not in result.error, result.error
    json.dumps(result.to_dict(), allow_nan=False, default=str)


SPEC_PIECES = ["[model]\n", "input = ", "[3, 8, 8]", "[[layers]]\n", 'type = "conv"\n', 'type = "dense"\n', "out_channels = ",
               "out_features = ", "kernel_size = ", "1e308", "9" * 30, '"n"', '"2**64"', "-1", "0", "\n", "[vars]\n", "n = ",
               '"n + 1"', "{", "}", "[", "]", 'name = "__x"\n', 'name = "µ"\n', "nan", "1979-05-27",
               # issue 19: what the line finder and the hints read
               '"""', "'''", "[\n", "]\n", 'type = "linear"\n', "kernel = 3\n", '"kernel_size" = ', '"ℌ"', 'name = "ℌ"\n',
               "[[blocks.b.layers]]\n", 'type = "block"\n', 'block = "b"\n', "# [[layers]]\n", "c = ", "[blocks.b]\n"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SPEC_PIECES), max_size=30))
def test_any_spec_text_is_analysed_or_refused_with_a_spec_error(pieces):
    start = time.process_time()
    with contextlib.suppress(SpecError):
        archcalc.analyze(archcalc.loads("".join(pieces)), batch=2).to_dict()
    assert time.process_time() - start < 2.0


def test_a_model_name_cannot_add_lines_to_its_quiz_files():
    from archcalc.teaching import quiz

    text = '[model]\nname = "x\\n\\"params\\" = 1\\n[student]"\ninput = [10]\n[[layers]]\ntype = "dense"\nout_features = 2\n'
    drawn = quiz.draw(archcalc.analyze(archcalc.loads(text)), 3, seed=1)
    import tomllib

    key = tomllib.loads(drawn.key_toml())
    assert "student" not in key and len(key) == 3
    assert tomllib.loads(drawn.sheet_toml()) == {"student": {"name": "", "id": ""}}


# Issue 19: file names are text. A spec or answers file named with rich markup is printed as named, one named
# with terminal control characters (an escape, a bidi override, a C1 control, a line break) as escapes, by
# every command that prints a path or a name taken from it. (quiz's own paths: see the report of issue 19.)
MARKUP_NAMES = ["[red]net[/].toml", "[bold]x.toml", "[link=http://e.vil]k[/link].toml"]
CONTROL_NAMES = ["a\x1b[31mb.toml", "u\u202ev.toml", "c\x9bd.toml", "n\nl.toml"]
PRINTING = [
    (["show"], True), (["show", "--explain"], True), (["show", "-f", "markdown"], True), (["show", "-f", "csv"], False),
    (["show", "-f", "json"], True), (["memory", "--budget", "1GB"], False), (["memory", "--budget", "1GB", "-f", "json"], False),
    (["check"], True), (["solve", "--for", "B", "--where", "params=1"], False), (["verify"], True), (["export"], True),
    (["draw", "-o", "{tmp}/out.svg"], False),
]


def _named(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "specs" / name  # "[red]net[/].toml" is the file "].toml" in the folder "[red]net["
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((SPECS / "lenet5.toml").read_text().replace('name = "LeNet-5"\n', ""), encoding="utf-8")
    return path


@pytest.mark.parametrize("args, names_it", PRINTING, ids=[" ".join(a) for a, _ in PRINTING])
@pytest.mark.parametrize("name", MARKUP_NAMES + CONTROL_NAMES, ids=repr)
def test_a_file_name_is_printed_as_text(name, args, names_it, tmp_path):
    if args[0] in ("verify", "export"):
        pytest.importorskip("torch")
    if args[0] == "draw":
        pytest.importorskip("matplotlib")
    path = _named(tmp_path, name)
    result = CliRunner().invoke(main, [args[0], str(path), *(a.format(tmp=tmp_path) for a in args[1:])])
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output[-2000:]
    assert not any(c in result.output for c in "\x1b\u202e\x9b"), result.output[-2000:]
    stem = path.stem
    if name in MARKUP_NAMES and names_it:
        assert stem in result.output, result.output[-2000:]  # the markup, as written
    if "\n" in stem and args[-1] != "json":
        assert "n\\nl" in result.output or not names_it, result.output[-2000:]


@pytest.mark.parametrize("name", MARKUP_NAMES + CONTROL_NAMES, ids=repr)
def test_an_answers_file_name_is_printed_as_text(name, tmp_path):
    answers = tmp_path / "answers" / name
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.write_text('"conv1.params" = 34944\n"params" = "1e999999999"\n', encoding="utf-8")
    for form in ("table", "json"):
        result = CliRunner().invoke(main, ["check", ALEXNET, str(answers), "-f", form])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert not any(c in result.output for c in "\x1b\u202e\x9b"), result.output
        if name in MARKUP_NAMES:
            assert answers.stem in result.output


def test_a_spec_named_with_control_characters_is_read_its_name_escaped(tmp_path):
    """The model's name defaults to the file's: shown with escapes, not refused as a name written with them."""
    report = archcalc.analyze(archcalc.load(_named(tmp_path, "a\x1b[31mb.toml")))
    assert report.model == "a\\x1b[31mb"


@pytest.mark.parametrize("name", CONTROL_NAMES, ids=repr)
def test_an_error_about_a_file_names_it_on_one_line(name, tmp_path):
    result = CliRunner().invoke(main, ["show", str(tmp_path / name)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(": no such file\n") and not any(c in result.stderr for c in "\x1b\u202e\x9b")
