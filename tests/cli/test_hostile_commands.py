"""Hostile inputs to the classroom commands (example, solve, draw, check --format gradescope, quiz --variants):
each gets one clear message and exit status 2, fast, and never a traceback (found by the review of issue 12's
commands: each case below crashed, hung or ran out of memory before its fix)."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from archcalc.cli.main import main
from tests.conftest import SPECS

FAST = 5.0  # seconds, generous: each case takes about 0.1 s
VARIANTS = (SPECS.parent / "tests" / "fixtures" / "variants.toml").read_text()
BLOCKS = ('[model]\nname = "long"\ninput = [3, 8, 8]\n[blocks.b]\nlayers = ['
          + ", ".join(f'{{name = "c{i}", type = "conv", out_channels = 3, kernel_size = 3, padding = 1}}' for i in range(10))
          + ']\n[[layers]]\nname = "x"\ntype = "block"\nblock = "b"\nrepeat = 60\n')

CASES = [  # (id, arguments ({tmp}: a fresh folder), files to write there, part of the message)
    ("pool kernel 0", ["example", "pool", "--matrix", "1 2; 3 4", "--kernel-size", "0"], {}, "kernel_size 0 is below 1"),
    ("pool stride 0", ["example", "pool", "--matrix", "1 2; 3 4", "--stride", "1,0"], {}, "stride 0 is below 1"),
    ("conv stride 0", ["example", "conv", "--matrix", "1 2; 3 4", "--kernel", "1", "--stride", "0"], {}, "stride 0 is below 1"),
    ("conv dilation 0", ["example", "conv", "--matrix", "1 2; 3 4", "--kernel", "1", "--dilation", "0"], {}, "dilation 0 is below 1"),
    ("conv padding 10^5", ["example", "conv", "--matrix", "1 2; 3 4", "--kernel", "1", "--padding", "100000"], {},
     "200002×200002: too big to work by hand"),
    ("a number 1e99999999", ["example", "pool", "--matrix", "1e99999999 1; 2 3"], {}, "too long a number"),
    ("p = 1e-99999999", ["example", "dropout", "--matrix", "1 2", "--p", "1e-99999999"], {}, "too long a number"),
    ("a superscript kernel", ["example", "pool", "--matrix", "1 2; 3 4", "--kernel-size", "²"], {}, "give a whole number"),
    ("a 5000-digit kernel", ["example", "pool", "--matrix", "1 2; 3 4", "--kernel-size", "9" * 5000], {}, "give a whole number"),
    ("a 5000-digit range", ["solve", str(SPECS / "alexnet_symbolic.toml"), "--for", "H", "--where", "params=1",
                            "--range", "0.." + "9" * 5000], {}, "is not LOW..HIGH"),
    ("a superscript range", ["solve", str(SPECS / "alexnet_symbolic.toml"), "--for", "H", "--where", "params=1",
                             "--range", "0..²"], {}, "is not LOW..HIGH"),
    ("100,000 values analysed one by one", ["solve", "{tmp}/when.toml", "--for", "H", "--where", "fc.output=[1000]",
                                            "--set", "W=224", "--range", "0..99999"],
     {"when.toml": (SPECS / "resnet18_symbolic.toml").read_text().replace('name = "fc"\n', 'name = "fc"\nwhen = "H > 100"\n')},
     "cannot analyse 100,000 values one by one"),
    ("draw into a FIFO", ["draw", str(SPECS / "lenet5.toml"), "-o", "{tmp}/fifo.svg"], {"fifo.svg": None}, "not a regular file"),
    ("draw 600 boxes", ["draw", "{tmp}/long.toml", "-o", "{tmp}/long.svg"], {"long.toml": BLOCKS}, "too many to draw"),
    ("infinite points", ["check", "{tmp}/key.toml", "{tmp}/answers.toml", "--format", "gradescope"],
     {"key.toml": (SPECS / "alexnet.toml").read_text() + '\n[weights]\n"params" = inf\n', "answers.toml": '"params" = 1\n'},
     "points must be a number >= 0, got inf"),
    ("a range of 10^12 variants", ["quiz", "{tmp}/v.toml", "--variants", "2", "-o", "{tmp}/out", "--seed", "1"],
     {"v.toml": VARIANTS.replace("c = {low = 8, high = 32, step = 8}", "c = {low = 1, high = 1000000000000}")},
     "got 1,000,000,000,000 values"),
]


@pytest.mark.parametrize("args, files, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_flag_or_file_gets_one_clear_message_and_status_2(args, files, says, tmp_path):
    if args[0] == "draw":
        pytest.importorskip("matplotlib")
    for name, text in files.items():
        if text is None:
            os.mkfifo(tmp_path / name)
        else:
            (tmp_path / name).write_text(text, encoding="utf-8")
    start = time.process_time()
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    seconds = time.process_time() - start
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output[-2000:]
    assert says in result.output, result.output[-2000:]
    assert seconds < FAST, f"{seconds:.2f} s"


def test_gradescope_keeps_checks_limit_on_claims(tmp_path):
    """Graded one claim at a time, a submission of 5,000 claims took minutes; it is refused as check refuses it."""
    answers = tmp_path / "answers.toml"
    answers.write_text("".join(f'"x{i}" = 1\n' for i in range(1001)), encoding="utf-8")
    start = time.process_time()
    result = CliRunner().invoke(main, ["check", str(SPECS / "alexnet.toml"), str(answers), "--format", "gradescope"])
    assert time.process_time() - start < FAST and result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["score"] == 0 and "1,001 claims: the limit is 1,000" in data["output"]


def test_import_names_a_fifo_for_what_it_is(tmp_path):
    pytest.importorskip("torch")
    os.mkfifo(tmp_path / "net.py")
    result = CliRunner().invoke(main, ["import", f"{tmp_path / 'net.py'}:Net", "--input", "3,8,8"])
    assert result.exit_code == 2 and "not a regular file" in result.output, result.output


# export (issue 19): whatever the model's or a block's name, the source parses and its class names are
# identifiers that clash with nothing it uses (nn, torch, F, builtins, keywords).
HOSTILE_NAMES = ["nn", "torch", "F", "Namespace", "none", "None", "true", "print", "super", "exception", "", "]", "1x",
                 "ℌ", "class", '"""', "a\\", "x y", "[red]net[/]", "Net", "checkpoint"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
@pytest.mark.parametrize("blocks", [False, True], ids=["chain", "graph"])
def test_export_writes_source_that_parses_for_any_model_name(name, blocks, tmp_path):
    pytest.importorskip("torch")
    import ast
    import builtins
    import keyword

    block = name.lower() if name.isidentifier() and name.isascii() and not keyword.iskeyword(name.lower()) else "b"
    body = (f'[blocks.{block}]\n[[blocks.{block}.layers]]\ntype = "conv"\nout_channels = 3\nkernel_size = 3\npadding = 1\n'
            f'[[layers]]\ntype = "block"\nblock = "{block}"\nrepeat = 2\n' if blocks else "")
    spec = tmp_path / "net.toml"
    spec.write_text(f'[model]\nname = {json.dumps(name)}\ninput = [3, 8, 8]\n' + body + '[[layers]]\ntype = "flatten"\n'
                    '[[layers]]\ntype = "dense"\nout_features = 2\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["export", str(spec)])
    assert result.exit_code == 0, result.output
    tree = ast.parse(result.stdout)
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes and len(set(classes)) == len(classes)
    for cls in classes:
        assert cls.isidentifier() and cls.isascii() and not keyword.iskeyword(cls)
        assert cls not in {"nn", "torch", "F", "checkpoint", *dir(builtins)}
    assert any(isinstance(node, ast.ImportFrom) and node.module == "torch" for node in tree.body)


def test_export_of_a_file_without_a_model_name_parses(tmp_path):
    """The class name comes from the file's name when the spec has none: None.toml, 1.toml, ].toml."""
    pytest.importorskip("torch")
    import ast

    for stem in ("None", "True", "1", "]", "print", "nn"):
        spec = tmp_path / f"{stem}.toml"
        spec.write_text('[model]\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n')
        result = CliRunner().invoke(main, ["export", str(spec)])
        assert result.exit_code == 0, result.output
        ast.parse(result.stdout)


@pytest.mark.parametrize("class_name", ["nn", "torch", "F", "print", "super", "Namespace", "None", "match"])
def test_a_class_name_that_would_shadow_what_the_source_uses_is_refused(class_name, tmp_path):
    pytest.importorskip("torch")
    spec = tmp_path / "net.toml"
    spec.write_text('[model]\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n')
    result = CliRunner().invoke(main, ["export", str(spec), "--class-name", class_name])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "class name" in result.output, result.output  # one message (a keyword is click's usage error: 4 lines)
    from archcalc import SpecError, analyze, load
    from archcalc.backends.export import source

    with pytest.raises((SpecError, TypeError)):
        source(analyze(load(spec)), class_name)
