"""The claim language (docs/claims.md): every value form, every key form, and the refusals."""

from fractions import Fraction

import pytest

import archcalc
from archcalc.teaching import claim_keys, claim_values
from archcalc.teaching.claim_values import Approx, Bounds, ClaimError, Dims, Exact
from tests.conftest import SPECS

ALEXNET = archcalc.analyze(archcalc.load(SPECS / "alexnet.toml"))
SYMBOLIC = archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"))


def holds(raw, kind, actual, env=None):
    return claim_values.read(raw, kind).holds(actual, env or {})


# (raw, kind, a true value it holds for, one it does not)
FORMS = [
    (34944, "count", 34944, 34945),
    ("34,944", "count", 34944, 34943),
    ("34 944", "count", 34944, 34943),
    ("34\u202f944", "count", 34944, 34943),  # narrow no-break space, as French typesets it
    ("34_944", "count", 34944, 34943),
    ("10*200 + 200*100 + 100*1", "count", 22100, 22401),
    ("96×3×11²", "count", 34848, 34944),
    ("96·3·11^2 + 96", "count", 34944, 34848),
    ("62.4M", "count", 62378344, 62340000),
    ("about 62.4M", "count", 62449999, 62460000),
    ("about 60M", "count", 62378344, 66000000),
    ("≈ 60 000 000", "count", 55000000, 54999999),
    ("~60k", "count", 61706, 66000),
    ("6.24e7", "count", 62378344, 62500000),
    ("62.4M ± 0.1M", "count", 62490000, 62510000),
    ("62.4M ± 0.1", "count", 62490000, 62510000),
    ("60M ± 10%", "count", 65900000, 66100000),
    ("200k..1M", "count", 200000, 61706),
    ("< 100k", "count", 61706, 100000),
    ("<= 100k", "count", 100000, 100001),
    ("≥ 1M", "count", 1000000, 999999),
    ("94%", "share", Fraction(9399, 100), Fraction(9349, 100)),
    ("60%", "share", Fraction(6052, 100), Fraction(6501, 100)),
    (60, "share", Fraction(6052, 100), Fraction(5499, 100)),
    ("60.0%", "share", Fraction(6004, 100), Fraction(6052, 100)),
    (60.5, "share", Fraction(6052, 100), Fraction(6056, 100)),
    ("60% ± 1", "share", Fraction(6099, 100), Fraction(6101, 100)),
    ("100*37752832/62378344", "share", Fraction(3775283200, 62378344), Fraction(6052, 100)),
    ("238 MiB", "bytes", 249513376, 251000000),
    ("about 250M", "bytes", 249513376, 256000000),
    ("1.5 GiB", "bytes", 1.5 * 2**30, 1.56 * 2**30),
    ([96, 27, 27], "shape", (96, 27, 27), (256, 27, 27)),
    ("[96, 27, 27]", "shape", (96, 27, 27), (27, 27, 96)),
    ("(96, 27, 27)", "shape", (96, 27, 27), (96, 27, 28)),
    ("27²×96", "shape", (96, 27, 27), (27, 27, 96)),
    ("96×27²", "shape", (96, 27, 27), (256, 27, 27)),
    ("27^2 × 96", "shape", (96, 27, 27), (96, 28, 28)),
    ("96×27×27", "shape", (96, 27, 27), (256, 27, 27)),
    ("27x27x96", "shape", (96, 27, 27), (96, 27, 28)),
    (69984, "shape", (96, 27, 27), (256, 27, 27)),
    ("about 70k", "shape", (96, 27, 27), (256, 27, 27)),
    ("9,216", "shape", (9216,), (9217,)),
]


@pytest.mark.parametrize("raw, kind, right, wrong", FORMS)
def test_every_form_holds_for_the_right_value_and_not_for_a_wrong_one(raw, kind, right, wrong):
    right = Fraction(right) if isinstance(right, float) else right
    wrong = Fraction(wrong) if isinstance(wrong, float) else wrong
    assert holds(raw, kind, right) is True
    assert holds(raw, kind, wrong) is False


@pytest.mark.parametrize("raw, kind, form, reading", [
    (34944, "count", Exact, "exactly 34,944"),
    ("62.4M", "count", Approx, "62,400,000 ± 50,000"),
    ("60%", "share", Approx, "60% ± 5"),
    ("94%", "share", Approx, "94% ± 0.5"),
    ("60.%", "share", Approx, "60% ± 0.5"),  # a decimal point makes the trailing zero count
    ("0%", "share", Approx, "0% ± 0.5"),
    ("≈ 60 000 000", "count", Approx, "60,000,000 ± 5,000,000"),
    ("60 000 000", "count", Exact, "exactly 60,000,000"),  # no marker: exact
    ("62378344.0", "count", Approx, "62,378,344 ± 0.05"),
    ("200k..1M", "count", Bounds, "from 200,000 to 1,000,000"),
    ("> 1M", "count", Bounds, "more than 1,000,000"),
    ("27²×96", "shape", Dims, "[96, 27, 27]"),
    ("96×27×27", "shape", Dims, "[96, 27, 27], or channels last"),
    ("10*200 + 200*100 + 100*1", "count", Exact, "exactly 10*200 + 200*100 + 100*1 = 22,100"),
])
def test_how_a_value_is_read(raw, kind, form, reading):
    value = claim_values.read(raw, kind)
    assert isinstance(value, form)
    assert value.reading() == reading


def test_a_list_is_read_channels_first_or_channels_last_as_a_product_is():
    assert holds([27, 27, 96], "shape", (96, 27, 27)) is True
    assert claim_values.read([27, 27, 96], "shape").order((96, 27, 27), {}) == "channels last"
    assert claim_values.read("27x27x96", "shape").order((96, 27, 27), {}) == "channels last"
    assert holds([27, 96, 27], "shape", (96, 27, 27)) is False
    assert holds("27²×96", "shape", (27, 27, 96)) is False  # the course's form says which factor is the channels


def test_formulas_compare_symbolically():
    row = SYMBOLIC.row("fc3")
    assert holds("4096*classes + classes", "count", row.params) is True
    assert holds("4096*classes", "count", row.params) is False
    conv1 = SYMBOLIC.row("conv1").output
    assert holds([96, "floor((H - 7)/4) + 1", "floor((W - 7)/4) + 1"], "shape", conv1) is True
    assert holds([96, "floor((W - 7)/4) + 1", "floor((H - 7)/4) + 1"], "shape", conv1) is False


def test_an_approximation_cannot_be_decided_against_a_formula():
    assert holds("62.4M", "count", SYMBOLIC.totals["params"]) is None


@pytest.mark.parametrize("raw, kind, words", [
    ("62,4M", "count", "decimal separator is '.'"),
    ("12 34", "count", "grouped by three"),
    ("60%", "count", "only for a share"),
    ("5kg", "count", "unknown unit 'kg'"),
    ("3M", "share", "unknown unit 'M'"),
    ("2 GiB", "count", "unknown unit 'GiB'"),
    ("about x", "count", "'about' needs a number"),
    ("__import__('os').system('ls')", "count", "not allowed"),
    ("(lambda: 1)()", "count", "not allowed"),
    ("2 ** ** 3", "count", "cannot read"),
    ("27²×5²", "shape", "one other factor"),
    ("[96, 27", "shape", "unbalanced"),
    ("13⁴×8", "shape", "at most 3 spatial axes"),
    ("", "count", "empty value"),
    (True, "count", "got true/false"),
    ({"a": 1}, "count", "got a table"),
    ([96, 27, 27], "count", "a list is a shape"),
    ([], "shape", "a list of sizes"),
    ([96, 27.5], "shape", "a list of sizes"),
    (float("nan"), "count", "expected a number"),
    ("1..", "count", "both ends"),
    ("1 ± 2 ± 3", "count", "more than one ±"),
    ("62.4M ± lots", "count", "tolerance"),
])
def test_malformed_values_are_refused_with_a_reason_and_the_forms_allowed(raw, kind, words):
    with pytest.raises(ClaimError) as caught:
        claim_values.read(raw, kind)
    assert words in str(caught.value)


def test_a_refusal_names_the_forms_of_that_quantity():
    with pytest.raises(ClaimError) as caught:
        claim_values.read("60%", "count")
    assert "62.4M" in caught.value.hint
    with pytest.raises(ClaimError) as caught:
        claim_values.read("96 by 27", "shape")
    assert "27²×96" in caught.value.hint


# Keys ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, scope, name, quantity", [
    ("conv1.params", "layer", "conv1", "params"),
    ("pool2.output", "layer", "pool2", "output"),
    ("fc1.training_flops", "layer", "fc1", "training_flops"),
    ("params", "total", None, "params"),
    ("flops", "total", None, "flops"),
    ("dense.share", "type", "dense", "share"),
    ("conv.macs", "type", "conv", "macs"),
    ("flatten.params", "layer", "flatten", "params"),  # AlexNet's layer named "flatten" wins over the type
    ("type.flatten.params", "type", "flatten", "params"),
    ("memory.training_bytes", "memory", None, "training_bytes"),
    ("memory.course.backward_bytes", "memory", None, "course.backward_bytes"),
])
def test_keys(text, scope, name, quantity):
    key = claim_keys.parse_key(text, ALEXNET)
    assert (key.scope, key.name, key.quantity) == (scope, name, quantity)


def test_memory_qualifiers():
    key = claim_keys.parse_key("memory.training_bytes@B=32, dtype=bfloat16,optimizer=adam,device=cuda", ALEXNET)
    assert dict(key.at) == {"B": 32, "dtype": "bfloat16", "optimizer": "adam", "device": "cuda"}
    assert key.kind == "bytes"


@pytest.mark.parametrize("text, words", [
    ("conv9.params", "no layer or layer type named 'conv9'"),
    ("conv1.param", "'param' is not a quantity of a layer"),
    ("dense.output", "'output' is not a quantity of a layer type"),
    ("parameters", "unknown quantity 'parameters'"),
    ("memory.trainig_bytes", "unknown memory quantity"),
    ("conv1.params@B=32", "only memory quantities"),
    ("memory.training_bytes@B=0", "whole number >= 1"),
    ("memory.training_bytes@dtype=float8", "unknown dtype 'float8'"),
    ("memory.training_bytes@B", "cannot read the qualifier"),
    ("memory.training_bytes@B=2,B=3", "given twice"),
    ("conv1.params.extra", "NAME.QUANTITY"),
])
def test_unknown_keys_are_refused(text, words):
    with pytest.raises(ClaimError) as caught:
        claim_keys.parse_key(text, ALEXNET)
    assert words in str(caught.value)


def test_an_unknown_key_suggests_the_nearest_and_lists_the_valid_ones():
    with pytest.raises(ClaimError) as caught:
        claim_keys.parse_key("conv1.param", ALEXNET)
    hint = caught.value.hint
    assert hint.startswith("did you mean 'conv1.params'?")
    for word in ("conv1, pool1, conv2", "output, input, weights", "conv, pool, flatten, dropout, dense", "training_bytes"):
        assert word in hint


def test_a_formula_with_a_name_the_spec_lacks_is_an_error_not_a_wrong_answer():
    with pytest.raises(ClaimError) as caught:
        claim_keys.read([("fc3.params", "4096*clases + clases")], ALEXNET)
    assert "'clases'" in str(caught.value) and "classes" in caught.value.hint


# Answers files -------------------------------------------------------------------------------------

def test_answers_file_with_dotted_keys_tables_and_a_student():
    answers = claim_keys.loads_answers(
        '"conv1.params" = 34944\nconv2.weights = 614400\n"memory.training_bytes@B=32" = 1\n\n'
        '[fc1]\nparams = 37752832\n\n[student]\nname = "Ada"\nid = 1815\n'
    )
    assert dict(answers.pairs) == {
        "conv1.params": 34944, "conv2.weights": 614400, "memory.training_bytes@B=32": 1, "fc1.params": 37752832,
    }
    assert answers.student == {"name": "Ada", "id": 1815}


def test_claims_after_the_student_table_are_explained():
    with pytest.raises(ClaimError) as caught:
        claim_keys.loads_answers('[student]\nname = "Ada"\n"conv1.params" = 34944\n', "ada.toml")
    error = caught.value
    assert (error.path, error.line, error.where) == ("ada.toml", 3, "[student]")
    assert "put [student] at the end" in error.hint


@pytest.mark.parametrize("text, words", [
    ("conv1.params = ", "not valid TOML"),
    ('[model]\ninput = [10]\n[[layers]]\ntype = "dense"\nout_features = 1\n', "this is a spec"),
    ('student = 3\n', "student must be a table"),
])
def test_bad_answers_files(text, words):
    with pytest.raises(ClaimError) as caught:
        claim_keys.loads_answers(text, "x.toml")
    assert words in str(caught.value)
    assert caught.value.path == "x.toml"


def test_a_bad_claim_names_file_line_and_key(tmp_path):
    path = tmp_path / "bob.toml"
    path.write_text('"conv1.params" = 34944\n\n"conv9.params" = 1\n')
    with pytest.raises(ClaimError) as caught:
        archcalc.check(ALEXNET, archcalc.load_answers(path))
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), 3, '"conv9.params"')
    assert str(error).startswith(f'{path}:3: "conv9.params": AlexNet has no layer')


def test_a_formula_that_cannot_be_evaluated_is_an_error_at_its_key():
    with pytest.raises(ClaimError) as caught:
        archcalc.check(ALEXNET, {"params": "2**10**10"})
    assert caught.value.field == '"params"' and "exponents" in str(caught.value)


def test_a_missing_answers_file():
    with pytest.raises(ClaimError, match="no such file"):
        archcalc.load_answers("/nonexistent/answers.toml")


# What archcalc prints is a claim that holds: `show`'s 62.4M, 34,944 and 60.5% read back as true.
from hypothesis import given, settings, strategies as st  # noqa: E402

from archcalc.core import fmt  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**15))
def test_printed_numbers_read_back_as_true_claims(n):
    assert holds(fmt.group(n), "count", n) is True
    assert holds(fmt.short(n), "count", n) is True
    assert holds(fmt.group(n), "count", n + 1) is False


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_printed_shares_read_back_as_true_claims(part, rest):
    share = Fraction(100 * part, part + rest)
    assert holds(fmt.percent(part, part + rest), "share", share) is True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=4))
def test_printed_shapes_read_back_as_true_claims(dims):
    shape = tuple(dims)
    assert holds(fmt.shape(shape), "shape", shape) is True
    assert holds(list(shape), "shape", shape) is True
