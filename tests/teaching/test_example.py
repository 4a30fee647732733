"""`archcalc example`: worked pooling, convolution and dropout, exact, against torch's functional ops."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from archcalc import SpecError
from archcalc.cli.main import main
from archcalc.teaching import example

NOTES_6X6 = "1 3 2 0 1 2; 4 6 5 1 3 1; 7 2 8 2 0 4; 3 5 0 6 7 3; 2 1 9 8 2 4; 1 0 3 5 2 1"


def run(*args):
    return CliRunner().invoke(main, ["example", *args])


def test_the_notes_max_pooling_example_gives_their_3x3():
    result = run("pool", "--op", "max", "--kernel-size", "2", "--stride", "2", "--matrix", NOTES_6X6, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["output"] == [[6, 5, 3], [7, 8, 7], [2, 9, 4]]


def test_the_notes_dropout_example_keeps_zeros_in_place_and_scales():
    result = run("dropout", "--matrix", "2 8 -3 11 5", "--mask", "1 0 1 0 1", "--format", "json")
    data = json.loads(result.output)
    assert data["masked"] == [[2, 0, -3, 0, 5]]  # the notes print (2, −3, 5): the zeros removed
    assert data["output"] == [[4, 0, -6, 0, 10]]  # PyTorch's 1/(1 − p) = 2 in training
    assert data["eval_output"] == [[2, 8, -3, 11, 5]]
    assert any("erratum" in note for note in data["notes"])


def test_table_output_shows_the_steps():
    result = run("conv", "--matrix", "1 2; 3 4", "--kernel", "1 1; 1 1")
    assert result.exit_code == 0 and "1·1 + 2·1 + 3·1 + 4·1 = 10" in result.output


def test_averages_are_exact_fractions():
    worked = example.pool(example.matrix("1 2; 2 0"), op="avg", kernel_size=(1, 2), stride=1)
    assert worked.output == ((Fraction(3, 2),), (1,)) and "(1 + 2) / 2 = 3/2" in worked.steps[0].text


@pytest.mark.parametrize("matrix, problem", [
    ("1 2; 3", "ragged rows: their lengths are 2, 1"),
    ("1 x; 3 4", "row 1: 'x' is not a number"),
    ("1 2; 3 nan", "'nan' is not a number"),
    (";".join(["1 " * 17] * 2), "too big"),
    ("", "no numbers"),
])
def test_bad_matrices_are_refused_with_exit_2(matrix, problem):
    result = run("pool", "--matrix", matrix)
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    with pytest.raises(SpecError, match=problem.replace("(", r"\(")):
        example.matrix(matrix)


def test_a_kernel_larger_than_the_input_is_refused():
    result = run("conv", "--matrix", "1 2; 3 4", "--kernel", "1 1 1; 1 1 1; 1 1 1")
    assert result.exit_code == 2 and "larger than the padded input" in result.output


torch = pytest.importorskip("torch")
F = torch.nn.functional

values = st.integers(-9, 9)


@st.composite
def matrices(draw, low=1, high=7):
    rows, cols = draw(st.integers(low, high)), draw(st.integers(low, high))
    return tuple(tuple(draw(values) for _ in range(cols)) for _ in range(rows))


def tensor(m):
    return torch.tensor([[list(map(float, row)) for row in m]], dtype=torch.float64)


def close(worked, y):
    got = [float(v) for row in worked.output for v in row]
    assert list(y.shape[-2:]) == [len(worked.output), len(worked.output[0])]
    assert got == pytest.approx(y.flatten().tolist(), abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(matrices(2), st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1),
       st.booleans())
def test_pooling_is_torchs(m, op, k, s, p, ceil):
    k = min(k, len(m), len(m[0]))
    p = min(p, k // 2)
    try:
        worked = example.pool(m, op=op, kernel_size=k, stride=s, padding=p, ceil_mode=ceil)
    except SpecError:
        return
    pool = F.max_pool2d if op == "max" else F.avg_pool2d
    close(worked, pool(tensor(m), k, s, p, ceil_mode=ceil))


@settings(max_examples=80, deadline=None)
@given(matrices(), matrices(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2), values)
def test_convolution_is_torchs(m, w, s, p, d, bias):
    try:
        worked = example.conv(m, w, stride=s, padding=p, dilation=d, bias=bias)
    except SpecError:
        return
    y = F.conv2d(tensor(m)[None], tensor(w)[None], torch.tensor([float(bias)], dtype=torch.float64), s, p, d)
    close(worked, y[0])


@settings(max_examples=30, deadline=None)
@given(matrices(), st.sampled_from([Fraction(1, 2), Fraction(1, 4), Fraction(2, 3)]), st.integers(0, 1000))
def test_dropout_is_torchs_training_dropout(m, p, seed):
    x = tensor(m) + 10  # no zeros: a zero in torch's output is then a dropped value
    torch.manual_seed(seed)
    y = F.dropout(x, float(p), training=True)
    mask = tuple(tuple(int(v != 0) for v in row) for row in y[0].tolist())
    shifted = tuple(tuple(v + 10 for v in row) for row in m)
    close(example.dropout(shifted, p=p, mask=mask), y)
