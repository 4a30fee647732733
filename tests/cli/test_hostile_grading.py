"""Hostile grading (issue 19): what a class's folder, a student's file or a grading script can throw at check,
grade and quiz. Each is graded as far as it can be, and says what it could not grade and why; nothing is
skipped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import main
from archcalc.teaching import claim_keys, quiz, variants
from tests.conftest import SPECS

ALEXNET = str(SPECS / "alexnet.toml")


def check(*args):
    """`archcalc check` in a pipe wide enough that a long path or summary stays on its line."""
    return CliRunner(env={"COLUMNS": "300"}).invoke(main, ["check", ALEXNET, *map(str, args)])


@pytest.mark.parametrize("call, says", [
    (lambda: archcalc.grade(None), "grade(spec, files): spec must be a Spec"),
    (lambda: archcalc.grade(archcalc.load(ALEXNET), None), "files must be a list of paths"),
    (lambda: quiz.draw(None, 3, 1), "quiz.draw(report, ...): report must be a Report"),
    (lambda: quiz.draw(archcalc.load(ALEXNET), 3, 1), "report must be a Report (archcalc.analyze), got Spec"),
    (lambda: quiz.draw(archcalc.analyze(archcalc.load(ALEXNET)), None, 1), "count must be a whole number"),
    (lambda: quiz.draw(archcalc.analyze(archcalc.load(ALEXNET)), 3, "1"), "seed must be a whole number"),
    (lambda: variants.draw(None, 2, 3, 1), "variants.draw(spec, ...): spec must be a Spec"),
    (lambda: archcalc.check(archcalc.load(ALEXNET), {"params": 1}, tolerance=[1]), "tolerance must be a str"),
], ids=["grade(None)", "grade(spec, None)", "quiz.draw(None)", "quiz.draw(Spec)", "quiz.draw(count=None)",
        "quiz.draw(seed='1')", "variants.draw(None)", "check(tolerance=[1])"])
def test_library_arguments_are_named(call, says):
    with pytest.raises(TypeError) as error:
        call()
    assert says in str(error.value)


def test_a_claim_hedged_through_a_default_qualifier_is_graded_once(tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('"memory.params_bytes" = 249513376\n"memory.params_bytes@dtype=float32" = "about 1G"\n')
    [result] = archcalc.grade(archcalc.load(ALEXNET), [answers])
    first, second = result.verdicts
    assert first.ok and first.error is None  # the first is graded ...
    assert not second.ok and "the same claim as \"memory.params_bytes\" (line 1)" in second.error  # ... the second refused
    assert "dtype=float32 is the default here" in second.error and (result.right, result.total) == (1, 2)
    other = tmp_path / "b.toml"  # another dtype is another claim
    other.write_text('"memory.params_bytes" = 249513376\n"memory.params_bytes@dtype=bfloat16" = 124756688\n')
    assert archcalc.grade(archcalc.load(ALEXNET), [other])[0].ok


@pytest.mark.parametrize("text, says", [
    ('"conv1.params" = 34944\n"conv6.params" = 1\n', "no layer or layer type named 'conv6'"),
    ('"conv1.params" = 34944\n"params" = "62,4M"\n', "the decimal separator is '.'"),
    ('"conv1.params" = 34944\n"params" = "> 0"\n', "an open bound"),
    ('"conv1.params" = 34944\n"fc1.params" = "1/0"\n', "division by zero"),
])
def test_one_bad_claim_is_that_claims_error_in_every_mode(tmp_path, text, says):
    answers = tmp_path / "a.toml"
    answers.write_text(text)
    table = check(answers)
    assert table.exit_code == 2 and says in table.stderr and "1/2 right, 1 not graded (errors)" in table.stdout
    document = json.loads(check(answers, "-f", "json").stdout)["files"][0]
    assert (document["right"], document["total"], document["error"]) == (1, 2, None)
    assert says in document["claims"][1]["error"] and document["claims"][1]["line"] == 2
    gradescope = json.loads(check(answers, "-f", "gradescope").stdout)
    assert [t["score"] for t in gradescope["tests"]] == [1, 0] and says in gradescope["tests"][1]["output"]


def lms_export(root: Path) -> Path:
    """A class's folder as an LMS exports it: a folder per student, files at any depth, the system's litter."""
    folder = root / "export"
    files = {
        "Alice_1001_assignsubmission_file/answers.toml": '"conv1.params" = 34944\n[student]\nname = "Alice"\nid = ""\n',
        "Bob_1002_assignsubmission_file/quiz/bob.toml": '"conv1.params" = 1\n',
        "Carl_1003_assignsubmission_file/notes.txt": "I forgot",
        "Dan_1004/a.toml": '"conv1.params" = 1\n', "Dan_1004/b.toml": '"conv1.params" = 2\n',
        "__MACOSX/Alice_1001_assignsubmission_file/._answers.toml": "\x00\x05",
        ".DS_Store": "\x00", "grades.csv": "name,grade\n", "zoe.toml": '"conv1.params" = 34944\n',
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_a_folder_of_student_folders_is_graded_one_student_each(tmp_path):
    folder = lms_export(tmp_path)
    results = archcalc.grade(archcalc.load(ALEXNET), [folder])
    files = [str(Path(r.file).relative_to(folder)) for r in results]
    assert files == ["Alice_1001_assignsubmission_file/answers.toml", "Bob_1002_assignsubmission_file/quiz/bob.toml",
                     "Carl_1003_assignsubmission_file", "Dan_1004", "zoe.toml"]
    assert [r.right for r in results] == [1, 0, 0, 0, 1]
    assert "no .toml file in it" in results[2].error and "2 .toml files (a.toml, b.toml)" in results[3].error
    assert sorted(Path(p).name for p, _ in results.skipped) == [".DS_Store", "__MACOSX", "grades.csv"]
    result = check(folder)
    assert result.exit_code == 2 and "is a directory" not in result.output
    assert "skipped " + str(folder / "grades.csv") + ": not a .toml file" in result.stdout
    assert "(answers: Alice)" in result.stdout  # a blank id is not shown as ", "
    document = json.loads(check(folder, "-f", "json").stdout)
    assert {Path(s["path"]).name for s in document["skipped"]} == {".DS_Store", "__MACOSX", "grades.csv"}


def test_a_subfolder_beside_answers_files_is_graded_too(tmp_path):
    (tmp_path / "a.toml").write_text('"conv1.params" = 34944\n')
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "answers.toml").write_text('"conv1.params" = 34944\n')
    results = archcalc.grade(archcalc.load(ALEXNET), [tmp_path])
    assert [Path(r.file).relative_to(tmp_path).as_posix() for r in results] == ["a.toml", "late/answers.toml"]
    assert all(r.ok for r in results)


def test_blank_student_fields_are_left_out(tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('"conv1.params" = 34944\n[student]\nname = "Léa"\nid = ""\n')
    assert claim_keys.load_answers(answers).student == {"name": "Léa"}
    assert f"{answers} (answers: Léa)" in check(answers).stdout
