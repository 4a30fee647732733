"""Issue 19: the library's public functions check their arguments at the door. A wrong type is one
TypeError, a wrong value one SpecError, each naming the argument and what it may be; never an
AttributeError, a KeyError or a Fraction's ValueError from deep inside, and never a number for a
batch that cannot be one."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

import archcalc
from archcalc import SpecError
from archcalc.core import arguments
from tests.conftest import SPECS

LENET = archcalc.load(SPECS / "lenet5.toml")
SYMBOLIC = archcalc.load(SPECS / "alexnet_symbolic.toml")
REPORT = archcalc.analyze(LENET)

WRONG_TYPE = [None, [1], (1,), {"B": 1}, object(), b"1", 1j, Decimal("2"), {1}]
WRONG_VALUE = [float("nan"), float("inf"), float("-inf"), -3, 0, 2.5, Fraction(1, 2), "0", "1/2", "open('x')"]


@pytest.mark.parametrize("batch", WRONG_TYPE[1:], ids=repr)  # None: B stays a symbol
def test_a_batch_of_the_wrong_type_is_one_type_error_naming_it(batch):
    with pytest.raises(TypeError, match=r"^analyze\(batch=.*\): batch must be a number"):
        archcalc.analyze(LENET, batch=batch)


@pytest.mark.parametrize("batch", WRONG_VALUE, ids=repr)
def test_a_batch_of_a_wrong_value_is_one_spec_error_naming_it(batch):
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(LENET, batch=batch)
    assert (caught.value.where, caught.value.field) == ("values", "B")


@pytest.mark.parametrize("value", WRONG_TYPE, ids=repr)
def test_a_size_of_the_wrong_type_is_one_type_error_naming_it(value):
    with pytest.raises(TypeError, match=r"^analyze\(H=.*\): H must be a number \(int, Fraction, finite float\), a formula"):
        archcalc.analyze(SYMBOLIC, H=value, W=224)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5, 0, "1/0"], ids=repr)
def test_a_size_of_a_wrong_value_is_one_spec_error(value):
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(SYMBOLIC, H=value, W=224)
    assert caught.value.field in ("H", "input")


@pytest.mark.parametrize("value, params", [(224, None), (224.0, None), (Fraction(224), None), ("2 * 112", None)], ids=repr)
def test_numbers_of_every_kind_still_work(value, params):
    report = archcalc.analyze(SYMBOLIC, H=value, W=224, classes=1000, batch=value)
    assert report.totals["params"] == 62378344 and report.batch == 224


def test_numpy_numbers_work():
    numpy = pytest.importorskip("numpy")
    report = archcalc.analyze(SYMBOLIC, H=numpy.int64(224), W=numpy.float64(224.0), classes=1000, batch=numpy.int32(2))
    assert report.totals["params"] == 62378344 and report.batch == 2


# A byte count at a batch: memory.training.at(b) and every PerBatch's at(b).
@pytest.mark.parametrize("batch", [-3, 0, 2.5, Fraction(3, 2), float("nan"), "0"], ids=repr)
@pytest.mark.parametrize("bytes_", ["training", "params", "inference_peak", "saved"])
def test_bytes_at_a_batch_that_is_no_batch_are_refused(bytes_, batch):
    with pytest.raises(SpecError) as caught:
        getattr(REPORT.memory, bytes_).at(batch)
    assert (caught.value.where, caught.value.field) == ("at()", "batch")


@pytest.mark.parametrize("batch", [[1], object(), b"2", 1j, True], ids=repr)
def test_bytes_at_a_batch_of_the_wrong_type_are_a_type_error(batch):
    with pytest.raises(TypeError, match="batch must be"):
        REPORT.memory.training.at(batch)


def test_bytes_at_a_real_batch_still_work():
    at_two = REPORT.memory.training.at(2)
    assert REPORT.memory.training.at(2.0) == REPORT.memory.training.at(Fraction(2)) == at_two
    assert str(REPORT.memory.training.at(None)) == "60552*B + 493032"


def test_row_names_what_is_missing():
    with pytest.raises(KeyError, match="no layer is named 'conv9'; did you mean 'conv2'"):
        REPORT.row("conv9")
    with pytest.raises(TypeError, match="name must be a layer's name"):
        REPORT.row(None)


def test_a_number_is_checked_before_it_is_used():
    assert arguments.number("2 * 3", "n", "f") == 6
    assert arguments.number(0.5, "n", "f") == Fraction(1, 2)
    with pytest.raises(TypeError, match=r"f\(n=None\): n must be"):
        arguments.number(None, "n", "f")


def test_bench_options_are_checked():
    pytest.importorskip("torch")
    from archcalc.torch import Options, bench

    for bad in ({"batch": 0}, {"batch": 2.5}, {"steps": 0}, {"warmup": -1}, {"peak_tflops": float("nan")}, {"device": 3}):
        with pytest.raises((TypeError, ValueError), match=next(iter(bad))):
            Options(**bad)
    with pytest.raises(TypeError, match=r"options must be an archcalc\.torch\.Options"):
        bench(REPORT, None)


def test_a_byte_count_or_phase_by_a_wrong_name_says_which_names_there_are():
    with pytest.raises(KeyError, match="no byte count is named 'nope'; the keys are input_bytes, params_bytes"):
        REPORT.memory.quantity("nope")
    with pytest.raises(ValueError, match="name must be one of forward, backward, optimizer, got 'step'"):
        REPORT.memory.phase("step")
    assert REPORT.memory.phase("backward").at(2) <= REPORT.memory.training.at(2)
