"""`archcalc check --format gradescope`: Gradescope's results.json, weighted by the spec's [weights]."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from archcalc.cli.main import main

WEIGHTS = '\n[weights]\n"conv1.params" = 2\n"pool3.receptive_field" = 1\n"conv2.output" = 1\n"params" = 3\n'


def key(tmp_path: Path, weights: str = WEIGHTS) -> str:
    path = tmp_path / "key.toml"
    path.write_text(Path("specs/alexnet.toml").read_text(encoding="utf-8") + weights, encoding="utf-8")
    return str(path)


def grade(tmp_path, answers: str, weights: str = WEIGHTS):
    submission = tmp_path / "answers.toml"
    submission.write_text(answers, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", key(tmp_path, weights), str(submission), "--format", "gradescope"])
    return result, (json.loads(result.output) if result.exit_code == 0 else None)


def test_weighted_tests_with_derivation_and_mistake(tmp_path):
    result, data = grade(tmp_path, '"conv1.params" = 34944\n"conv2.output" = "27²×96"\n"pool3.receptive_field" = 195\n'
                                   '"conv9.params" = 1\n[student]\nname = "Ada"\n')
    assert result.exit_code == 0, result.output
    tests = {t["name"]: t for t in data["tests"]}
    assert list(tests) == ["conv1.params", "pool3.receptive_field", "conv2.output", "params"]
    assert (tests["conv1.params"]["score"], tests["conv1.params"]["max_score"]) == (2, 2)
    assert tests["conv2.output"]["score"] == 0 and "likely mistake: the output channels" in tests["conv2.output"]["output"]
    assert tests["params"]["output"] == "no answer for 'params'"
    assert data["score"] == 3 and "conv9.params" in data["output"] and "Ada" in data["output"]


def test_without_weights_each_claim_is_one_point_and_a_bad_one_scores_zero(tmp_path):
    _, data = grade(tmp_path, '"conv1.params" = 34944\n"conv1.parms" = 1\n', weights="")
    assert [(t["name"], t["score"], t["max_score"]) for t in data["tests"]] == [("conv1.params", 1, 1), ("conv1.parms", 0, 1)]
    assert "did you mean 'conv1.params'" in data["tests"][1]["output"]


def test_an_unreadable_submission_scores_zero_everywhere(tmp_path):
    _, data = grade(tmp_path, "this is not toml = = =")
    assert data["score"] == 0 and all(t["score"] == 0 for t in data["tests"]) and "could not read" in data["output"]


def test_bad_weights_are_the_instructors_error(tmp_path):
    result, _ = grade(tmp_path, '"params" = 1\n', weights='\n[weights]\n"conv1.parms" = 1\n')
    assert result.exit_code == 2 and "[weights]" in result.output
    result, _ = grade(tmp_path, '"params" = 1\n', weights='\n[weights]\n"params" = "two"\n')
    assert result.exit_code == 2 and "points must be a number" in result.output


def test_one_submission_at_a_time(tmp_path):
    result = CliRunner().invoke(main, ["check", "specs/alexnet.toml", "a.toml", "b.toml", "--format", "gradescope"])
    assert result.exit_code == 2 and "one answers file" in result.output


def test_status_says_whether_the_claim_is_right_even_at_zero_points(tmp_path):
    weights = '\n[weights]\n"conv1.params" = 0\n"params" = 1\n'
    _, wrong = grade(tmp_path, '"conv1.params" = 1\n"params" = 62378344\n', weights)
    _, right = grade(tmp_path, '"conv1.params" = 34944\n"params" = 1\n', weights)
    assert [(t["name"], t["status"]) for t in wrong["tests"]] == [("conv1.params", "failed"), ("params", "passed")]
    assert [(t["name"], t["status"]) for t in right["tests"]] == [("conv1.params", "passed"), ("params", "failed")]


# Visibility, file names, the grading policy (issue 19) ------------------------------------------------------------

def test_the_true_values_are_not_shown_at_once_by_default(tmp_path):
    _, data = grade(tmp_path, '"conv1.params" = 1\n"conv2.output" = "27²×256"\n')
    assert data["visibility"] == "visible" and {t["visibility"] for t in data["tests"]} == {"after_due_date"}
    assert "34,944" in data["tests"][0]["output"]  # the true value, in the test shown after the due date
    assert "34,944" not in data["output"] and "likely mistake" not in data["output"]  # not in what is shown at once
    assert "conv1.params: wrong (0/2): claimed 1" in data["output"]
    assert "conv2.output: right (1/1)" in data["output"] and "shown after the due date" in data["output"]


def test_visibility_per_key_for_all_tests_and_overall(tmp_path):
    weights = WEIGHTS + '\n[grading]\nvisibility = "after_published"\noverall_visibility = "after_due_date"\n' \
                        '"params" = {visibility = "visible"}\n'
    _, data = grade(tmp_path, '"params" = 62378344\n', weights)
    assert data["visibility"] == "after_due_date"
    assert {t["name"]: t["visibility"] for t in data["tests"]}["params"] == "visible"
    assert {t["visibility"] for t in data["tests"] if t["name"] != "params"} == {"after_published"}
    submission = tmp_path / "answers.toml"
    result = CliRunner().invoke(main, ["check", key(tmp_path), str(submission), "-f", "gradescope", "--visibility", "visible",
                                       "--overall-visibility", "hidden"])
    data = json.loads(result.output)
    assert {t["visibility"] for t in data["tests"]} == {"visible"} and data["visibility"] == "hidden"
    result = CliRunner().invoke(main, ["check", key(tmp_path), str(submission), "-f", "gradescope", "--visibility", "soon"])
    assert result.exit_code == 2 and "after_due_date" in result.output


def test_the_tolerance_applies_and_a_key_matches_however_it_is_written(tmp_path):
    weights = '\n[weights]\n"params" = 1\n"dense.share" = 1\n"memory.params_bytes@dtype=float32" = 1\n'
    answers = '"params" = "62.4M"\n"type.dense.share" = "94%"\n"memory.params_bytes" = "238 MiB"\n'
    _, data = grade(tmp_path, answers, weights)
    assert [(t["name"], t["score"]) for t in data["tests"]] == [("params", 0), ("dense.share", 1),
                                                                ("memory.params_bytes@dtype=float32", 1)]
    assert "not graded" not in data["output"]
    result = CliRunner().invoke(main, ["check", key(tmp_path, weights), str(tmp_path / "answers.toml"), "-f", "gradescope",
                                       "--tolerance", "0.1%"])
    assert json.loads(result.output)["score"] == 3


def test_a_bad_claim_scores_zero_and_the_rest_are_graded_as_in_a_table(tmp_path):
    _, data = grade(tmp_path, '"conv1.params" = 34944\n"params" = "62,4M"\n', '\n[weights]\n"conv1.params" = 1\n"params" = 1\n')
    assert [(t["name"], t["score"]) for t in data["tests"]] == [("conv1.params", 1), ("params", 0)]
    assert "decimal separator" in data["tests"][1]["output"] and "params: not graded" in data["output"]


def submit(tmp_path, files: dict) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_the_submitted_file_is_found_whatever_its_name(tmp_path):
    folder = submit(tmp_path, {"lenet5-1-answers.toml": '"conv1.params" = 34944\n', "notes.txt": "hi"})
    result = CliRunner().invoke(main, ["check", key(tmp_path), str(folder), "-f", "gradescope"])
    assert json.loads(result.output)["tests"][0]["score"] == 2
    (folder / "scratch.toml").write_text('"conv1.params" = 1\n')  # of several, the one named *answers.toml
    assert json.loads(CliRunner().invoke(main, ["check", key(tmp_path), str(folder), "-f", "gradescope"]).output)["score"] == 2
    (folder / "lenet5-1-answers.toml").rename(folder / "mine.toml")
    data = json.loads(CliRunner().invoke(main, ["check", key(tmp_path), str(folder), "-f", "gradescope"]).output)
    assert data["score"] == 0 and "2 .toml files (mine.toml, scratch.toml)" in data["output"]


def test_the_shipped_run_autograder_grades_the_quiz_sheet(tmp_path):
    import os
    import subprocess
    import sys

    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "source" / "key.toml").write_text(Path("answers/gradescope/key.toml").read_text(encoding="utf-8"))
    submit(root, {"lenet5-1-answers.toml": '"conv1.weights" = 150\n"weights" = 61470\n[student]\nname = "Léa"\n'})
    env = os.environ | {"AUTOGRADER": str(root), "ARCHCALC": f"{sys.executable} -m archcalc",
                        "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(["bash", "answers/gradescope/run_autograder"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert data["score"] == 2 and "student: name Léa" in data["output"]
    assert sum(t["max_score"] for t in data["tests"]) == 7
