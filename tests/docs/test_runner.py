"""The runner of the docs' examples (tests/docs/runner.py): how a transcript is read, compared and written again."""

from __future__ import annotations

import pytest
from sybil import Document
from sybil.example import SybilFailure

from tests.docs import runner


def test_a_transcript_is_commands_and_what_each_prints():
    found = runner.commands("$ archcalc show a.toml\nline 1\n\n$ python3 -c \"\n> print(1)\"\n1\n\n")
    assert [c.text for c in found] == ["archcalc show a.toml", 'python3 -c "\nprint(1)"']
    assert [c.expected for c in found] == [["line 1"], ["1"]]
    assert [c.gap for c in found] == [1, 1]  # the blank lines between commands are the page's layout
    assert runner.shown_command(found[1].text) == '$ python3 -c "\n> print(1)"'
    with pytest.raises(ValueError, match="starts with a command"):
        runner.commands("output before any command\n$ true\n")


def test_the_info_string_says_how_a_block_runs():
    assert runner.read_info("console torch slow columns=100") == ("console", frozenset({"torch", "slow"}), 100, None)
    assert runner.read_info("toml file=class/ada.toml") == ("toml", frozenset(), 80, "class/ada.toml")


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    (["a", "b"], ["a", "b"], True),
    (["a"], ["a", "b"], False),
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "d"], ["a", "d"], True),  # an elision may stand for no line
    (["...", "c", "..."], ["a", "b", "c", "d"], True),
    (["...", "x", "..."], ["a", "b"], False),
    (["a", "...", "b"], ["a", "c"], False),
    (["...", "(exit 2)"], ["error", "(exit 2)"], True),
])
def test_an_elision_stands_for_any_lines(expected, actual, ok):
    assert runner.matches(expected, actual) is ok


def test_what_the_machine_decides_is_left_out_of_the_comparison():
    shown = [" train       673.70        12   0.0784", "Setup  batch 8, torch 2.13.0"]
    printed = [" train      1673.71         8   0.0530", "Setup  batch 8, torch 2.14.1"]
    assert runner.matches(shown, printed, machine=True) and not runner.matches(shown, printed)
    assert not runner.matches(shown, [" infer      1673.71         8   0.0530", shown[1]], machine=True)


def test_regenerating_keeps_the_elisions_and_follows_the_output():
    assert runner.regenerate(["old"], ["new 1", "new 2"]) == ["new 1", "new 2"]
    printed = ["title", "", "row 1", "row 2 changed", "row 3", "total 7"]
    assert runner.regenerate(["title", "...", "row 2", "...", "total 6"], printed) == [
        "title", "...", "row 2 changed", "...", "total 7"]


def test_one_command_writes_what_the_examples_print(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("Before.\n\n```console\n$ echo hi\nbye\n$ true\n```\n\n```python\n>>> 1 + 1\n3\n```\nAfter.\n",
                    encoding="utf-8")
    document = Document.parse(str(page), runner.Parser())
    runner.setup(document.namespace)
    try:
        examples = list(document.examples())
        for example in examples:
            with pytest.raises(SybilFailure, match="prints otherwise"):
                example.evaluate()
        monkeypatch.setenv(runner.UPDATE, "1")
        for example in examples:
            example.evaluate()
        assert runner.apply_edits() == [str(page)]
    finally:
        runner.teardown(document.namespace)
    assert page.read_text(encoding="utf-8") == (
        "Before.\n\n```console\n$ echo hi\nhi\n$ true\n```\n\n```python\n>>> 1 + 1\n2\n```\nAfter.\n")


def test_a_command_runs_with_this_checkouts_archcalc_in_the_pages_folder(tmp_path):
    namespace = {}
    runner.setup(namespace)
    try:
        folder = namespace["__folder__"]
        printed = runner.run("archcalc --version; ls specs/alexnet.toml; python3 -c 'import archcalc; print(archcalc.__file__)'",
                             folder, 80)
    finally:
        runner.teardown(namespace)
    assert printed[0] == "archcalc, version 0.1.0"
    assert printed[1] == "specs/alexnet.toml"
    assert printed[2] == str(runner.ROOT / "archcalc" / "__init__.py")
    assert not folder.exists()
