"""archcalc quiz: the same seed gives the same quiz, and its answer key passes `archcalc check`."""

import tomllib

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import main
from archcalc.teaching import claim_keys
from archcalc.teaching.quiz import CATEGORIES, draw
from tests.conftest import SPECS


def report(name: str, **values):
    return archcalc.analyze(archcalc.load(SPECS / name), **values)


def test_the_same_seed_gives_the_same_quiz():
    a, b = draw(report("alexnet.toml"), 12, seed=7), draw(report("alexnet.toml"), 12, seed=7)
    assert a == b
    assert a.markdown() == b.markdown() and a.key_toml() == b.key_toml()


def test_another_seed_gives_another_quiz():
    quizzes = {tuple(q.key for q in draw(report("alexnet.toml"), 8, seed=seed).questions) for seed in range(5)}
    assert len(quizzes) > 1


def test_the_draw_uses_no_global_random_state():
    import random

    random.seed(1)
    first = draw(report("lenet5.toml"), 6, seed=3)
    random.seed(2)
    assert draw(report("lenet5.toml"), 6, seed=3) == first


def test_questions_are_different_and_take_each_category_in_turn():
    quiz = draw(report("alexnet.toml"), len(CATEGORIES), seed=11)
    assert len({q.key for q in quiz.questions}) == len(CATEGORIES)
    assert {q.category for q in quiz.questions} == set(CATEGORIES)


@pytest.mark.parametrize("spec, values, seed", [
    ("alexnet.toml", {}, 0), ("alexnet.toml", {}, 1), ("lenet5.toml", {}, 0), ("lenet5.toml", {}, 1),
    ("mlp_quiz.toml", {}, 0), ("mlp_quiz_biases.toml", {}, 0),
    ("alexnet_symbolic.toml", {"H": 224, "W": 224, "classes": 1000}, 0),
    ("alexnet_symbolic.toml", {}, 0),  # formulas in H, W and classes (slow: sympy's Max in the memory figures)
])
def test_the_answer_key_passes_check(spec, values, seed):
    r = report(spec, **values)
    count = _available(r)  # every question the network offers
    quiz = draw(r, count, seed=seed)
    answers = claim_keys.loads_answers(quiz.key_toml())
    verdicts = archcalc.check(r, answers)
    assert len(verdicts) == count
    assert [v.key for v in verdicts if not v.ok] == []


def _available(r) -> int:
    with pytest.raises(archcalc.ArchcalcError) as caught:
        draw(r, 10**6, seed=0)
    return int(str(caught.value).split("there are ")[1].split()[0])


def test_a_wrong_answer_to_a_quiz_fails_check():
    r = report("lenet5.toml")
    quiz = draw(r, 5, seed=4)
    key = tomllib.loads(quiz.key_toml())
    first = next(iter(key))
    key[first] = [1, 2, 3] if isinstance(key[first], list) else "1/7" if "share" in first else 1
    verdicts = archcalc.check(r, key)
    assert [v.ok for v in verdicts].count(False) == 1


def test_too_many_questions_is_refused():
    with pytest.raises(archcalc.ArchcalcError, match=r"cannot draw 500 questions(.|\n)*hint: ask for --count"):
        draw(report("mlp_quiz.toml"), 500, seed=0)


def test_the_blank_sheet_is_valid_toml_with_every_key():
    quiz = draw(report("alexnet.toml"), 6, seed=5)
    sheet = quiz.sheet_toml()
    assert tomllib.loads(sheet) == {"student": {"name": "", "id": ""}}
    for question in quiz.questions:
        assert f'# "{question.key}" = ' in sheet


def test_cli_writes_questions_key_and_sheet(tmp_path):
    args = ["quiz", str(SPECS / "alexnet.toml"), "--count", "6", "--seed", "3", "-o", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["alexnet-3-answers.toml", "alexnet-3-key.toml", "alexnet-3-quiz.md"]
    assert (tmp_path / "alexnet-3-quiz.md").read_text().count("key: `") == 6
    check = CliRunner().invoke(main, ["check", str(SPECS / "alexnet.toml"), str(tmp_path / "alexnet-3-key.toml")])
    assert check.exit_code == 0 and "6/6 right" in check.output
    again = CliRunner().invoke(main, args)
    assert again.output == result.output


def test_cli_refuses_an_impossible_count():
    result = CliRunner().invoke(main, ["quiz", str(SPECS / "mlp_quiz.toml"), "--count", "500", "-o", "/tmp"])
    assert result.exit_code == 2 and "cannot draw 500" in result.output
