"""The memory model's arithmetic: byte counts in B, budgets, the course's formula beside it."""

import json
import time

import pytest
import sympy
from click.testing import CliRunner
from hypothesis import given, strategies as st

import archcalc
from archcalc.cli.main import main
from archcalc.core.units import parse_size
from archcalc.memory.budget import largest_batch, require_sizes
from archcalc.memory.perbatch import PerBatch
from tests.conftest import SPECS

ALEXNET = str(SPECS / "alexnet.toml")


def alexnet(**options):
    return archcalc.analyze(archcalc.load(ALEXNET), **options)


@given(st.integers(0, 10**12), st.integers(0, 10**9))
def test_per_batch_prints_as_sympy_does(fixed, per_sample):
    b = sympy.Symbol("B", integer=True, positive=True)
    assert str(PerBatch(fixed, per_sample)) == str(sympy.Integer(fixed) + per_sample * b)


@pytest.mark.parametrize("text, value", [
    ("80GiB", 80 * 2**30), ("80 GiB", 80 * 2**30), ("24GB", 24 * 10**9), ("512MiB", 512 * 2**20),
    ("1.5TiB", 3 * 2**39), ("1000", 1000), ("64kib", 64 * 1024), ("2G", 2 * 10**9),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["80 lbs", "GiB", "-1GiB", "1e9", ""])
def test_bad_sizes_are_refused(text):
    with pytest.raises(archcalc.SpecError, match="cannot read"):
        parse_size(text)


def test_alexnet_memory_by_hand():
    m = alexnet(batch=128, optimizer="adam").memory
    params = 62378344 * 4
    assert (m.params.at(128), m.gradients.at(128), m.optimizer_state.at(128)) == (params, params, 2 * params)
    # conv1 keeps the image and its ReLU output; pool1 keeps that same output (counted once) and int64 indices...
    per_sample = (3 * 224 * 224 + 96 * 55 * 55) * 4 + 96 * 27 * 27 * 8
    assert m.per_row[0].per_sample + m.per_row[1].per_sample == per_sample
    assert m.summed.at(128) == 4 * params + m.saved.at(128) + m.transient.at(128)
    assert m.training.at(128) < m.summed.at(128)  # the parts are never all alive at once


def test_batch_stays_a_symbol():
    data = alexnet().to_dict()["memory"]
    assert data["batch"] == "B"
    assert data["params_bytes"] == 249513376  # does not depend on B: a number
    assert data["saved_for_backward_bytes"] == "4774400*B"
    assert data["summed_training_bytes"] == "6215936*B + 499026752"
    peak = sympy.sympify(data["training_bytes"])  # the test's own text, not a spec's
    assert isinstance(peak, sympy.Max) and data["peak_phase"] is None
    for batch in (1, 7, 64):
        concrete = alexnet(batch=batch).to_dict()["memory"]
        assert peak.subs(sympy.Symbol("B"), batch) == concrete["training_bytes"] == concrete["peak_bytes"]
        assert concrete["training_bytes"] == max(concrete["phases"].values())
        assert concrete["phases"][concrete["peak_phase"]] == concrete["training_bytes"]


def test_dtype_halves_the_bytes():
    full, half = alexnet(batch=8).memory, alexnet(batch=8, dtype="bfloat16").memory
    assert half.params.at(8) * 2 == full.params.at(8)
    indices = 8 * 8 * (96 * 27 * 27 + 256 * 13 * 13 + 256 * 6 * 6)  # int64 whatever the dtype
    assert (full.saved.at(8) - indices) == 2 * (half.saved.at(8) - indices)


def test_course_model():
    m = alexnet(batch=1).memory
    assert m.course_m == 96 * 55 * 55 * 4  # conv1's output is the largest
    assert m.course_layers == 14
    assert m.course_forward.at(10) == m.params.at(10) + 10 * m.course_m * 14
    assert m.course_backward.at(10) == 2 * m.params.at(10) + 2 * 10 * m.course_m * 14


def test_largest_batch_is_the_largest():
    report = alexnet(optimizer="adam")
    budget = parse_size("80GiB")
    fit = largest_batch(report, budget)
    training = report.memory.training
    assert training.at(fit.batch) <= budget < training.at(fit.batch + 1)


def test_symbolic_sizes_give_a_formula_for_the_batch():
    report = archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"), classes=1000)
    fit = largest_batch(report, parse_size("80GiB"))
    assert {s.name for s in fit.batch.free_symbols} == {"H", "W"}
    assert fit.batch.subs({sympy.Symbol("H", integer=True, positive=True): 224,
                           sympy.Symbol("W", integer=True, positive=True): 224}) == largest_batch(
        alexnet(), parse_size("80GiB")).batch


def test_memory_command():
    result = CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "80GiB", "--optimizer", "adam"])
    assert result.exit_code == 0, result.output
    assert "Largest batch: 17,302" in result.output
    data = json.loads(CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "80GiB", "--optimizer", "adam",
                                                "-f", "json"]).output)
    assert data["batch"] == 17302 and data["memory"]["training_bytes"] <= data["budget_bytes"]
    assert alexnet(batch=17303, optimizer="adam").memory.training.at(17303) > data["budget_bytes"]


def test_memory_command_when_nothing_fits():
    result = CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "300MiB"])
    assert result.exit_code == 1
    assert "Not even a batch of 1 fits" in result.output
    one = alexnet(batch=1).memory.training.at(1)
    assert f"({one - 300 * 2**20:,} bytes) more" in result.output


def test_memory_command_bad_budget():
    result = CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "lots"])
    assert result.exit_code == 2
    assert "cannot read 'lots' as a size" in result.output


def test_precision_names_are_lightnings():
    as_dtype = json.loads(CliRunner().invoke(main, ["show", ALEXNET, "--dtype", "bfloat16", "-b", "4", "-f", "json"]).output)
    as_precision = json.loads(CliRunner().invoke(main, ["show", ALEXNET, "--precision", "bf16-true", "-b", "4", "-f", "json"]).output)
    assert as_dtype == as_precision
    assert "precision" not in as_dtype["memory"]  # float32 and -true runs keep their JSON as it was


@pytest.mark.parametrize("precision, low", [("bf16-mixed", "bfloat16"), ("16-mixed", "float16")])
def test_mixed_precision_is_autocast_with_float32_parameters(precision, low):
    """show and memory take the -mixed names: parameters and optimizer state float32, the step under autocast."""
    mixed = json.loads(CliRunner().invoke(main, ["show", ALEXNET, "--precision", precision, "-b", "64", "-f", "json"]).output)
    plain = json.loads(CliRunner().invoke(main, ["show", ALEXNET, "-b", "64", "-f", "json"]).output)
    assert mixed["memory"]["precision"] == precision and mixed["memory"]["autocast"] == low
    assert mixed["memory"]["dtype"] == "float32" and mixed["memory"]["params_bytes"] == plain["memory"]["params_bytes"]
    # activations kept in 16 bits: well under float32's peak, above half of it (weights and their copies stay)
    assert plain["memory"]["peak_bytes"] / 2 < mixed["memory"]["peak_bytes"] < plain["memory"]["peak_bytes"]
    fit = CliRunner().invoke(main, ["memory", ALEXNET, "--precision", precision, "--budget", "8GiB", "-f", "json"])
    assert fit.exit_code == 0, fit.output
    more = json.loads(fit.output)["batch"]
    assert more > json.loads(CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "8GiB", "-f", "json"]).output)["batch"]


def test_card_takes_the_cuda_context_out():
    from archcalc.memory.timeline import CUDA_CONTEXT

    card = json.loads(CliRunner().invoke(main, ["memory", ALEXNET, "--card", "24GB", "-f", "json"]).output)
    budget = json.loads(CliRunner().invoke(main, ["memory", ALEXNET, "--budget", str(24 * 10**9 - CUDA_CONTEXT),
                                                  "--device", "cuda", "-f", "json"]).output)
    assert card["batch"] == budget["batch"] and card["cuda_context_bytes"] == CUDA_CONTEXT
    assert card["memory"]["device"] == "cuda"


def test_the_course_formula_only_where_asked():
    lenet = CliRunner().invoke(main, ["show", str(SPECS / "lenet5.toml")]).output
    assert "The course's model" in lenet  # the course's own spec
    stranger = SPECS / "resnet18.toml"
    plain = CliRunner().invoke(main, ["show", str(stranger), "-b", "2"]).output
    asked = CliRunner().invoke(main, ["show", str(stranger), "-b", "2", "--course"]).output
    assert "The course's model" not in plain and "The course's model" in asked


def test_solve_for_the_image_side():
    spec = str(SPECS / "alexnet_symbolic.toml")
    out = json.loads(CliRunner().invoke(main, ["memory", spec, "--budget", "4GiB", "--solve", "H", "-b", "16",
                                               "--set", "classes=10", "-f", "json"]).output)
    side = out["value"]

    def peak(h):
        return archcalc.analyze(archcalc.load(spec), batch=16, classes=10, H=h, W=h).memory.training.at(16)

    assert peak(side) <= 4 * 2**30 < peak(side + 1)
    missing = CliRunner().invoke(main, ["memory", ALEXNET, "--budget", "4GiB", "--solve", "T", "-b", "16"])
    assert missing.exit_code == 2 and "no size named 'T'" in missing.output


def test_a_budget_refuses_free_sizes_and_says_which_set_fixes_them():
    """memory --budget answers with a number: sizes left free are named, with the --set that fixes them
    (the value from the spec's own example command where it gives one)."""
    gpt2 = CliRunner().invoke(main, ["memory", str(SPECS / "gpt2.toml"), "--budget", "24GiB"])
    assert gpt2.exit_code == 2
    assert "gpt2.toml: --budget: T is left free: the largest batch depends on it" in gpt2.output
    assert "hint: give it with --set T=1024" in gpt2.output
    alex = CliRunner().invoke(main, ["memory", str(SPECS / "alexnet_symbolic.toml"), "--budget", "24GiB", "--set", "classes=10"])
    assert alex.exit_code == 2 and "H and W are left free" in alex.output and "--set H=224 --set W=224" in alex.output
    with pytest.raises(archcalc.SpecError) as refused:
        require_sizes(archcalc.analyze(archcalc.loads('[model]\ninput = ["n"]\n[[layers]]\ntype = "dense"\nout_features = "k"')))
    assert refused.value.where == "--budget" and "n and k are left free" in refused.value.problem
    assert refused.value.hint == "give them with --set n=VALUE --set k=VALUE"
    fits = CliRunner().invoke(main, ["memory", str(SPECS / "gpt2.toml"), "--budget", "24GiB", "--set", "T=1024", "-f", "json"])
    assert fits.exit_code == 0 and json.loads(fits.output)["batch"] >= 1


def test_largest_batch_over_free_sizes_is_quick():
    """The library still answers a formula in the free sizes, without sympy comparing every pair of bounds
    (19.9 s of CPU before, for AlexNet in H, W): a CPU-time bound, loose for a loaded machine."""
    report = archcalc.analyze(archcalc.load(SPECS / "alexnet_symbolic.toml"))
    start = time.process_time()
    largest_batch(report, parse_size("24GiB"))
    assert time.process_time() - start < 5
