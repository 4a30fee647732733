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
