"""Verdicts: the shipped specs' [expect], the course's errata, the mistake hints, JSON, the command line."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import archcalc
from archcalc.cli.main import main
from archcalc.render import check as render_check
from archcalc.teaching import explain_row
from tests.conftest import ROOT, SPECS

FIXTURES = ROOT / "tests" / "fixtures" / "alexnet_answers"
ERRATA = ROOT / "answers" / "course_errata"


def load(name: str):
    return archcalc.load(SPECS / name)


def one(spec: str, key: str, value, **values) -> archcalc.Verdict:
    [verdict] = archcalc.check(load(spec), {key: value}, **values)
    return verdict


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.toml")))
def test_every_shipped_spec_has_claims_and_they_hold(spec):
    verdicts = archcalc.check(load(spec))
    assert verdicts
    assert [v.key for v in verdicts if not v.ok] == []


def test_alexnet_carries_the_notes_claims():
    verdicts = {v.key: v for v in archcalc.check(load("alexnet.toml"))}
    for key in ("conv1.params", "flatten.output", "params", "dense.share", "fc1.share"):
        assert verdicts[key].ok, key
    assert float(verdicts["fc1.share"].actual) == pytest.approx(60.52, abs=0.005)  # "60%" holds: 60 ± 5
    assert verdicts["fc1.share"].reading == "60% ± 5"
    assert verdicts["params"].reading == "62,400,000 ± 50,000"


# The course's errata (DESIGN.md section 6): flagged, each with the right value, and nothing else flagged.
ERRATA_CASES = {
    "alexnet.toml": {
        "conv2.output": ((256, 27, 27), "the output channels taken for the input's"),
        "pool2.output": ((256, 13, 13), "96 channels is pool1's output: pool2 outputs 256 channels"),
    },
    "lenet5.toml": {"params": (61706, None)},
    "mlp_quiz_biases.toml": {
        "params": (22401, "the weights only: the 301 biases are missing"),
        "memory.course.backward_bytes@B=32": (2 * 22401 * 4 + 2 * 32 * 800 * 3, "the forward formula repeated"),
    },
}


@pytest.mark.parametrize("spec", sorted(ERRATA_CASES))
def test_the_course_errata_are_caught_with_the_right_values(spec):
    verdicts = archcalc.check(load(spec), archcalc.load_answers(ERRATA / spec))
    assert {v.key: (v.ok, v.actual) for v in verdicts} == {key: (False, actual) for key, (actual, _) in ERRATA_CASES[spec].items()}
    for v in verdicts:
        hint = ERRATA_CASES[spec][v.key][1]
        assert (hint in v.mistake) if hint else v.mistake is None, v.mistake


def test_the_quiz_count_is_right_without_biases_and_wrong_with_them():
    formula = "10*200 + 200*100 + 100*1"
    assert one("mlp_quiz.toml", "params", formula).ok
    assert not one("mlp_quiz_biases.toml", "params", formula).ok


def test_a_wrong_layer_claim_shows_the_explain_lines_for_that_quantity():
    report = archcalc.analyze(load("alexnet.toml"))
    verdict = one("alexnet.toml", "conv2.output", "27²×96")
    assert verdict.explanation == explain_row.text(report.row("conv2"), "output")
    verdict = one("alexnet.toml", "fc1.params", 1)
    assert verdict.explanation.splitlines() == [
        "weights = out_features·in_features = 4,096·9,216 = 37,748,736",
        "biases = out_features = 4,096",
        "params = 37,748,736 + 4,096 = 37,752,832",
    ]


def test_a_layers_input():
    verdict = one("alexnet.toml", "conv2.input", "27²×96")
    assert verdict.ok and verdict.actual == (96, 27, 27)
    assert one("alexnet.toml", "conv2.input", 1).explanation == "input = the output of pool1 = 96×27×27"
    assert one("alexnet.toml", "conv1.input", [3, 224, 224]).ok


def test_totals_types_and_shares_are_derived_as_sums():
    assert one("lenet5.toml", "params", 1).explanation == (
        "params = conv1 156 + conv2 2,416 + fc1 48,120 + fc2 10,164 + fc3 850 = 61,706")
    share = one("alexnet.toml", "dense.share", "50%").explanation.splitlines()
    assert share == [
        "dense params = fc1 37,752,832 + fc2 16,781,312 + fc3 4,097,000 = 58,631,144",
        "share = 58,631,144 / 62,378,344 = 93.99% of all parameters",
    ]


# Mistakes: a typical wrong answer for each recogniser, and the hint it gets.
MISTAKES = [
    ("kind_mistake", "dcgan_generator.toml", "main.3.output", [256, 2, 2], {}, "a convolution's output size"),
    ("batch_axis", "alexnet.toml", "conv1.output", [32, 96, 55, 55], {}, "the batch axis is written in"),
    ("axes_permuted", "alexnet.toml", "pool1.output", [27, 96, 27], {}, "the right sizes in another order"),
    ("not_flattened", "lenet5.toml", "flatten.output", [16, 5, 5], {}, "in one axis: the output is flat, [400]"),
    ("input_channels", "alexnet.toml", "conv2.output", "27²×96", {}, "the output channels taken for the input's"),
    ("stale_channels", "alexnet.toml", "pool2.output", "13²×96", {}, "96 channels is pool1's output"),
    ("plus_one_forgotten", "alexnet.toml", "pool1.output", "26²×96", {}, "the + 1 forgotten"),
    ("padding_once", "alexnet.toml", "conv2.output", [256, 25, 25], {}, "padding counted once"),
    ("padding_forgotten", "alexnet.toml", "conv2.output", [256, 23, 23], {}, "padding forgotten"),
    ("stride_forgotten", "alexnet.toml", "pool1.output", [96, 53, 53], {}, "stride forgotten"),
    ("rounded_up", "alexnet.toml", "conv1.output", [96, 56, 56], {}, "rounded up"),
    ("input_size", "alexnet.toml", "conv1.input", [3, 227, 227], {}, "worked out for a 227×227 input"),
    ("biases_forgotten", "alexnet.toml", "fc1.params", 4096 * 9216, {}, "the weights only: the 4,096 biases are missing"),
    ("biases_forgotten", "alexnet.toml", "params", 62367776, {}, "the weights only: the 10,568 biases are missing"),
    ("biases_added", "alexnet.toml", "conv1.weights", 34944, {}, "the 96 biases are counted too"),
    ("bias_per_input", "alexnet.toml", "fc1.biases", 9216, {}, "one bias per output (out_features = 4,096), not per input"),
    ("input_channels_forgotten", "alexnet.toml", "conv2.params", 256 * 5 * 5 + 256, {}, "the input channels are missing"),
    ("kernel_not_squared", "alexnet.toml", "conv2.weights", 256 * 96 * 5, {}, "the kernel is 5² = 25 weights per input channel"),
    ("layer_left_out", "alexnet.toml", "params", 62378344 - 4097000, {}, "fc3's 4,097,000 params are missing from the sum"),
    ("share_as_fraction", "alexnet.toml", "fc1.share", 0.605, {}, "a fraction, not a percentage"),
    ("macs_for_flops", "alexnet.toml", "conv1.flops", 105415200, {}, "that is the number of multiply-accumulates"),
    ("flops_for_macs", "alexnet.toml", "conv1.macs", 210830400, {}, "that is the number of FLOPs"),
    ("forward_only", "alexnet.toml", "fc1.training_flops", 2 * 37748736, {}, "the forward FLOPs only"),
    ("whole_batch", "alexnet.toml", "conv1.macs", 32 * 105415200, {"batch": 32}, "counted for the whole batch of 32"),
    ("backward_as_forward", "mlp_quiz_biases.toml", "memory.course.backward_bytes@B=32", 22401 * 4 + 32 * 800 * 3, {},
     "the forward formula repeated"),
    ("bits_for_bytes", "alexnet.toml", "memory.params_bytes", 8 * 249513376, {}, "bits, not bytes"),
    ("optimizer_state", "alexnet.toml", "memory.optimizer_bytes@optimizer=adam", 249513376, {}, "the state of momentum (1 per parameter)"),
    ("dtype_size", "alexnet.toml", "memory.params_bytes@dtype=bfloat16", 249513376, {}, "counted at float32 (4 bytes a value)"),
    ("jumps_forgotten", "alexnet.toml", "conv3.receptive_field", 1 + 10 + 2 + 4 + 2 + 2, {}, "moves by the jump"),
    ("field_start_forgotten", "alexnet.toml", "pool3.receptive_field", 194, {}, "the field starts at 1"),
    ("dense_as_conv", "alexnet.toml", "conv1.dense_equivalent_weights", 34848, {}, "that is the conv's own 34,848 weights"),
    ("dense_without_channels", "alexnet.toml", "conv1.dense_equivalent_weights", 224 * 224 * 55 * 55, {}, "the channels are missing"),
]


@pytest.mark.parametrize("recogniser, spec, key, wrong, values, hint", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_typical_wrong_answers_get_their_mistake(recogniser, spec, key, wrong, values, hint):
    verdict = one(spec, key, wrong, **values)
    assert not verdict.ok
    assert verdict.mistake is not None and hint in verdict.mistake


def test_memory_for_one_sample_instead_of_the_batch():  # one_sample
    report = archcalc.analyze(load("alexnet.toml"), batch=1)
    one_sample = report.memory.training.at(1)
    verdict = one("alexnet.toml", "memory.training_bytes@B=32", one_sample)
    assert "for one sample" in verdict.mistake


def test_every_recogniser_has_a_case():
    from archcalc.teaching.mistakes import MISTAKES as RECOGNISERS

    assert {r.__name__ for r in RECOGNISERS} == {case[0] for case in MISTAKES} | {"one_sample"}


# The forgotten + 1 of the output size, and every mistake that gives the student's value named (issue 19).
FORGOTTEN_PLUS_ONE = [("pool1.output", "26²×96"), ("conv2.output", "26²×256"), ("pool3.output", "5²×256")]


@pytest.mark.parametrize("key, wrong", FORGOTTEN_PLUS_ONE)
def test_a_forgotten_plus_one_is_named(key, wrong):
    verdict = one("alexnet.toml", key, wrong)
    assert not verdict.ok and verdict.mistake.startswith("the + 1 forgotten")


@pytest.mark.parametrize("key, wrong, named", [
    ("conv3.output", "12²×384", ("the + 1 forgotten", "padding counted once")),
    ("conv1.output", "54²×96", ("the + 1 forgotten", "padding counted once", "padding forgotten")),
    ("conv1.output", "56²×96", ("rounded up", "a 227×227 input")),
])
def test_every_mistake_that_gives_the_value_is_named(key, wrong, named):
    mistake = one("alexnet.toml", key, wrong).mistake
    assert mistake.startswith(f"{len(named)} mistakes give this value: ")
    assert all(hint in mistake for hint in named), mistake


def test_the_227_versus_224_confusion_is_named_both_ways(tmp_path):
    assert "a 227×227 input" in one("alexnet.toml", "conv1.input", "227²×3").mistake
    paper = (SPECS / "alexnet.toml").read_text().replace("input = [3, 224, 224]", "input = [3, 227, 227]")
    paper = paper.replace("padding = 2\n", "padding = 0\n", 1)
    spec = archcalc.loads(paper.split("\n[expect]")[0])
    [verdict] = archcalc.check(spec, {"flatten.output": 6400})  # 224 without padding: 54, 26, 12, 5: 256·5·5
    assert not verdict.ok and "a 224×224 input, the size the AlexNet paper states" in verdict.mistake


def test_a_list_in_channels_last_order_is_read_as_the_product_is():
    for claim in ([55, 55, 96], "[55, 55, 96]", "(55, 55, 96)", "55 x 55 x 96"):
        verdict = one("alexnet.toml", "conv1.output", claim)
        assert verdict.ok and "channels last" in verdict.note, claim
    assert one("alexnet.toml", "conv1.output", [96, 55, 55]).note is None


def test_a_wrong_answer_with_no_recognisable_mistake_has_none():
    verdict = one("alexnet.toml", "conv3.output", [384, 14, 14])
    assert not verdict.ok and verdict.mistake is None


def test_a_right_answer_has_no_mistake():
    verdict = one("alexnet.toml", "conv2.output", "27²×256")
    assert verdict.ok and verdict.mistake is None and verdict.note is None


def test_channels_last_in_a_product_is_read_and_said():
    verdict = one("alexnet.toml", "conv1.output", "55x55x96")
    assert verdict.ok and "channels last" in verdict.note


def test_memory_claims_at_their_batch_dtype_and_optimizer():
    report = archcalc.analyze(load("alexnet.toml"), batch=32, dtype="bfloat16", optimizer="adam")
    training = report.to_dict()["memory"]["training_bytes"]
    assert one("alexnet.toml", "memory.training_bytes@B=32,dtype=bfloat16,optimizer=adam", training).ok
    assert one("alexnet.toml", "memory.training_bytes", training, batch=32, dtype="bfloat16", optimizer="adam").ok
    assert not one("alexnet.toml", "memory.training_bytes@B=32", training).ok  # float32 and sgd by default
    assert one("alexnet.toml", "memory.params_bytes", "238 MiB").ok


def test_memory_without_a_batch_is_a_formula_in_B():
    report = archcalc.analyze(load("mlp_quiz.toml"))
    m = report.memory.saved
    formula = f"{m.per_sample}*B + {m.fixed}"
    assert one("mlp_quiz.toml", "memory.saved_for_backward_bytes", formula).ok
    verdict = one("mlp_quiz.toml", "memory.saved_for_backward_bytes", "about 100k")
    assert not verdict.ok and "formula in B" in verdict.note


def test_a_symbolic_spec_checks_formulas_and_asks_for_values_for_numbers():
    assert one("alexnet_symbolic.toml", "fc3.params", "4097*classes").ok
    verdict = one("alexnet_symbolic.toml", "params", "62.4M")
    assert not verdict.ok and "H" in verdict.note and "--set" in verdict.note
    assert one("alexnet_symbolic.toml", "params", "62,378,344", H=224, W=224, classes=1000).ok


def test_check_takes_a_report_and_pairs():
    report = archcalc.analyze(load("alexnet.toml"))
    verdicts = archcalc.check(report, [("conv1.params", 34944), ("fc1.params", 1)])
    assert [v.ok for v in verdicts] == [True, False]
    with pytest.raises(archcalc.ClaimError, match="no \\[expect\\]"):
        archcalc.check(report)


def test_verdict_to_dict_is_json_ready():
    data = one("alexnet.toml", "conv2.output", "27²×96").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["actual"] == [256, 27, 27] and data["read_as"] == "[96, 27, 27]" and data["kind"] == "shape"


# Grading many files ---------------------------------------------------------------------------------

def test_grade_a_folder_of_answers():
    results = archcalc.grade(load("alexnet.toml"), [FIXTURES])
    by_name = {Path(r.file).stem: r for r in results}
    assert sorted(by_name) == ["ada", "bob", "eve"]
    assert (by_name["ada"].right, len(by_name["ada"].verdicts), by_name["ada"].ok) == (8, 8, True)
    assert by_name["ada"].student == {"name": "Ada Lovelace", "id": 1815}
    assert (by_name["bob"].right, len(by_name["bob"].verdicts)) == (2, 5)
    eve = by_name["eve"]  # an unknown key is an error of that claim: her other claim is still graded
    assert eve.error is None and [v.ok for v in eve.verdicts] == [True, False]
    assert "conv6" in eve.verdicts[1].error and eve.errors == [eve.verdicts[1].error] and not eve.ok
    assert eve.student == {"name": "Eve", "id": 3}


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_cli_exit_status_0_when_every_claim_holds():
    result = run("check", SPECS / "alexnet.toml")
    assert result.exit_code == 0, result.output
    assert "22/22 right" in result.output


def test_cli_exit_status_1_when_a_claim_is_wrong():
    result = run("check", SPECS / "alexnet.toml", ERRATA / "alexnet.toml")
    assert result.exit_code == 1
    assert "0/2 right" in result.output and "likely mistake" in result.output and "256×27×27" in result.output


def test_cli_exit_status_2_for_a_bad_answers_file_but_the_others_are_graded():
    result = run("check", SPECS / "alexnet.toml", FIXTURES, "--format", "json")
    assert result.exit_code == 2
    assert "conv6" in result.stderr and "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert [f["right"] for f in data["files"]] == [8, 2, 1]
    assert data["summary"] == {"files": 3, "all_right": 1, "errors": 1, "right": 11, "total": 15}
    [bad] = [c for c in data["files"][2]["claims"] if c["error"]]
    assert bad["key"] == "conv6.params" and not bad["ok"] and bad["line"] == 3


@pytest.mark.parametrize("args, words", [
    (("check", "missing.toml"), "no such file"),
    (("check", SPECS / "alexnet.toml", "missing.toml"), "no such file"),
    (("check", SPECS / "alexnet.toml", "--format", "yaml"), "Invalid value"),
])
def test_cli_exit_status_2_for_bad_input(args, words):
    result = run(*args)
    assert result.exit_code == 2 and words in result.output
    assert "Traceback" not in result.output


def test_cli_a_spec_without_claims_and_no_answers(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text('[model]\ninput = [10]\n[[layers]]\ntype = "dense"\nout_features = 1\n')
    result = run("check", spec)
    assert result.exit_code == 2 and "nothing to check" in result.output


def test_cli_json_document_shape():
    result = run("check", SPECS / "alexnet.toml", FIXTURES / "bob.toml", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"spec", "model", "files", "summary", "skipped"}
    [file] = data["files"]
    assert set(file) == {"file", "source", "student", "right", "total", "undecided", "ok", "error", "variant", "claims"}
    assert file["student"] == {"name": "Bob", "id": 2} and (file["right"], file["total"]) == (2, 5)
    claim = file["claims"][1]
    assert set(claim) == {"key", "claimed", "read_as", "actual", "ok", "mistake", "note", "explanation", "line", "kind",
                          "tolerance", "error", "decided"}
    assert (claim["key"], claim["claimed"], claim["actual"], claim["ok"], claim["line"]) == (
        "conv2.output", "27²×96", [256, 27, 27], False, 3)


def test_cli_batch_and_optimizer_apply_to_memory_claims(tmp_path):
    report = archcalc.analyze(load("lenet5.toml"), batch=64, optimizer="adam")
    answers = tmp_path / "memory.toml"
    answers.write_text(f'"memory.training_bytes" = {report.to_dict()["memory"]["training_bytes"]}\n')
    assert run("check", SPECS / "lenet5.toml", answers, "--batch", "64", "--optimizer", "adam").exit_code == 0
    assert run("check", SPECS / "lenet5.toml", answers, "--batch", "64").exit_code == 1


def test_table_rendering():
    results = archcalc.grade(load("alexnet.toml"), [FIXTURES / "bob.toml", FIXTURES / "ada.toml"])
    console = Console(record=True, width=100)
    console.print(render_check.table(results))
    text = console.export_text()
    assert "bob.toml (answers: Bob, 2)" in text
    assert "2/5 right" in text and "8/8 right" in text
    assert "2 files: 1 all right, 1 with wrong claims; 10/13 claims right" in text
    assert "✗" in text and "✓" in text and "likely mistake: the weights only" in text


def test_expect_claims_carry_their_line_whether_the_spec_came_from_a_file_or_from_text():
    text = (SPECS / "lenet5.toml").read_text(encoding="utf-8")
    from_file = [v.line for v in archcalc.check(load("lenet5.toml"))]
    assert from_file and None not in from_file
    assert [v.line for v in archcalc.check(archcalc.loads(text))] == from_file
