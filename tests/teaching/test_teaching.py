"""DESIGN.md section 10 in claims and quizzes: receptive_field, jump, dense_equivalent_weights."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import ClaimError
from archcalc.teaching import quiz

ALEXNET = "specs/alexnet.toml"


@pytest.mark.parametrize("claim, tolerance, ok", [
    (195, None, True), ([195, 195], None, True), ("195×195", None, True), (196, None, False), ([195, 194], None, False),
    ("about 200", None, False),  # a receptive field is a count of pixels: exact unless the instructor says otherwise
    ("about 200", "5%", True), ("about 200", "2%", False),
])
def test_receptive_field_claims(claim, tolerance, ok):
    [verdict] = archcalc.check(archcalc.load(ALEXNET), {"pool3.receptive_field": claim}, tolerance=tolerance)
    assert verdict.ok is ok and verdict.actual == (195, 195)


def test_dense_equivalent_weights_of_conv1_is_the_courses_43_7_billion():
    spec = archcalc.load(ALEXNET)
    [verdict] = archcalc.check(spec, {"conv1.dense_equivalent_weights": (224 * 224 * 3) * (55 * 55 * 96)})
    assert verdict.ok and verdict.actual == 43_713_331_200
    assert "1,254,400× the conv's 34,848" in verdict.explanation
    with pytest.raises(ClaimError, match="only conv layers"):
        archcalc.check(spec, {"pool1.dense_equivalent_weights": 1})


def test_flattened_values_have_no_jump():
    with pytest.raises(ClaimError, match="no jump"):
        archcalc.check(archcalc.load(ALEXNET), {"fc1.jump": 1})


def test_quiz_asks_about_fields_and_its_key_passes():
    report = archcalc.analyze(archcalc.load(ALEXNET))
    drawn = quiz.draw(report, 60, seed=3)
    asked = {q.key for q in drawn.questions if q.category == "field"}
    assert {"conv1.dense_equivalent_weights", "pool3.receptive_field"} & asked
    answers = {q.key: q.answer for q in drawn.questions}
    assert answers.get("pool3.receptive_field", 195) == 195
    assert all(v.ok for v in archcalc.check(report, answers))


def test_graph_paths_take_field_claims():
    verdicts = archcalc.check(archcalc.load("specs/resnet18.toml"),
                              {"layer4.1.conv2.receptive_field": 435, "layer4.1.add.jump": 32, "avgpool.receptive_field": 627})
    assert [v.ok for v in verdicts] == [True, True, True]
