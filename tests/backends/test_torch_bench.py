"""bench on the CPU (CI has no GPU): it runs, and its numbers are sane and consistent with the report."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends.bench import Options, bench  # noqa: E402
from archcalc.backends.peaks import peak  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

LENET = str(SPECS / "lenet5.toml")


def run(*args):
    return CliRunner().invoke(main, ["bench", *args])


def sane(timing: dict) -> None:
    for key in ("ms_per_step", "images_per_s", "tflops", "seconds"):
        assert math.isfinite(timing[key]) and timing[key] > 0, key


def test_bench_on_cpu_in_two_steps_reports_sane_numbers():
    result = run(LENET, "--device", "cpu", "--steps", "2", "--batch", "8", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    report = archcalc.analyze(archcalc.load(LENET))
    for mode in ("train", "inference"):
        sane(data[mode])
        timing = data[mode]
        assert timing["steps"] == 2
        assert timing["images_per_s"] == pytest.approx(8 * 1000 / timing["ms_per_step"])
        assert timing["tflops"] == pytest.approx(timing["flops_per_step"] / (timing["ms_per_step"] / 1000) / 1e12)
    assert data["inference"]["flops_per_step"] == 8 * report.totals["flops"]
    assert data["train"]["flops_per_step"] == 8 * report.totals["training_flops"]
    assert data["device"].startswith("CPU") and data["options"]["warmup"] == 2
    assert data["memory"]["measured_bytes"] is None  # torch tracks the peak on CUDA only
    assert data["memory"]["predicted_bytes"] == archcalc.analyze(archcalc.load(LENET), batch=8).memory.training.at(8)
    assert data["peak_tflops"] is None and data["train"]["share_of_peak"] is None


def test_bench_prints_a_table():
    result = run(LENET, "--device", "cpu", "--steps", "2", "--batch", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    train = next(line.split() for line in lines if line.strip().startswith("train"))
    assert float(train[1]) > 0 and "inference" in result.output and "LeNet-5 on CPU" in result.output


@pytest.mark.parametrize("flags", [
    ["--dtype", "bfloat16", "--amp"],  # autocast, float32 parameters
    ["--dtype", "float16", "--amp", "--optimizer", "momentum"],  # autocast with a GradScaler
    ["--dtype", "bfloat16", "--optimizer", "adam"],  # parameters in bfloat16 (bf16-true)
    ["--dtype", "float64", "--channels-last", "--optimizer", "none"],
])
def test_bench_options_run(flags):
    result = run(LENET, "--device", "cpu", "--steps", "2", "--warmup", "1", "--batch", "4", "-f", "json", *flags)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    sane(data["train"])
    sane(data["inference"])
    mixed = data["options"]["dtype"] in ("float16", "bfloat16") and data["options"]["amp"]
    # the prediction for the same step: under autocast, float32 parameters and the step in the dtype
    dtype, autocast = ("float32", data["options"]["dtype"]) if mixed else (data["options"]["dtype"], None)
    report = archcalc.analyze(archcalc.load(LENET), batch=4, dtype=dtype, optimizer=data["options"]["optimizer"],
                              autocast=autocast)
    assert data["memory"]["predicted_bytes"] == report.memory.training.at(4)


@pytest.mark.parametrize("precision, dtype, amp", [("bf16-mixed", "bfloat16", True), ("16-mixed", "float16", True),
                                                   ("bf16-true", "bfloat16", False)])
def test_bench_takes_lightnings_precision_names(precision, dtype, amp):
    result = run(LENET, "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch", "2", "-f", "json", "--precision", precision)
    assert result.exit_code == 0, result.output
    options = json.loads(result.output)["options"]
    assert (options["dtype"], options["amp"]) == (dtype, amp)


@pytest.mark.parametrize("dtype, precision", [("bfloat16", "bf16-true"), ("float16", "16-true")])
def test_dtype_means_the_same_on_bench_as_on_show(dtype, precision):
    """--dtype D is D-true everywhere (issue 19: bench read it as autocast, show and memory as pure D, so a
    prediction and a measurement compared different set-ups); autocast is asked for by name (--precision X-mixed)."""
    args = ("--device", "cpu", "--steps", "1", "--warmup", "0", "--batch", "2", "-f", "json")
    by_dtype = json.loads(run(LENET, *args, "--dtype", dtype).output)
    by_name = json.loads(run(LENET, *args, "--precision", precision).output)
    assert (by_dtype["options"]["dtype"], by_dtype["options"]["amp"]) == (dtype, False) == (by_name["options"]["dtype"],
                                                                                             by_name["options"]["amp"])
    shown = json.loads(CliRunner().invoke(main, ["show", LENET, "--dtype", dtype, "-b", "2", "-f", "json"]).output)["memory"]
    assert by_dtype["memory"]["predicted_bytes"] == by_name["memory"]["predicted_bytes"] == shown["peak_bytes"]
    assert shown["dtype"] == dtype and "autocast" not in shown
    report = archcalc.analyze(archcalc.load(LENET))
    assert Options.of(report, dtype=dtype) == Options.of(report, precision=precision)
    assert Options.of(report, dtype=dtype).autocast is False and Options.of(report, dtype=dtype, amp=True).autocast


def test_the_training_step_trains():
    # the step really is forward, loss, backward and an optimizer step: the parameters move
    report = archcalc.analyze(archcalc.load(SPECS / "mlp_quiz.toml"))
    seen = []
    result = bench(report, Options(device="cpu", batch=4, steps=3, warmup=1), lambda *args: seen.append(args))
    assert seen[0] == ("train: warm-up", 1, 1) and ("train", 3, 3) in seen and seen[-1] == ("inference", 3, 3)
    assert result.train.flops == 4 * report.totals["training_flops"]


def test_a_peak_gives_a_share():
    result = run(LENET, "--device", "cpu", "--steps", "2", "--batch", "4", "--peak-tflops", "0.5", "-f", "json")
    data = json.loads(result.output)
    assert data["peak_source"] == "--peak-tflops"
    assert data["train"]["share_of_peak"] == pytest.approx(100 * data["train"]["tflops"] / 0.5)


def test_the_peak_table_knows_the_usual_gpus():
    assert peak("NVIDIA H100 80GB HBM3", "bfloat16") == (989.4, "H100 SXM")
    assert peak("NVIDIA H100 PCIe", "bfloat16") == (756, "H100 PCIe")
    assert peak("NVIDIA H200", "tf32") == (494.7, "H200 SXM")
    assert peak("NVIDIA A100-SXM4-80GB", "float16") == (312, "A100")
    assert peak("NVIDIA L4", "bfloat16") == (121, "L4")
    assert peak("NVIDIA L40S", "bfloat16") == (362, "L40S")  # not the L4's
    assert peak("NVIDIA GeForce RTX 4090", "float32") == (82.6, "GeForce RTX 4090")
    assert peak("Tesla T4", "bfloat16") is None  # no bfloat16 on a T4
    assert peak("CPU (2 threads)", "float32") is None


def test_refusals_exit_2():
    flat = run(str(SPECS / "mlp_quiz.toml"), "--device", "cpu", "--steps", "1", "--channels-last")
    assert flat.exit_code == 2 and "--channels-last needs an image input" in flat.output
    if not torch.cuda.is_available():
        cuda = run(LENET, "--device", "cuda", "--steps", "1")
        assert cuda.exit_code == 2 and "no CUDA device" in cuda.output


def test_torchs_own_refusals_are_exit_2_not_a_traceback(tmp_path):
    path = tmp_path / "bn.toml"
    path.write_text('[model]\ninput = [4]\n[[layers]]\ntype = "batchnorm"\n')  # batchnorm cannot train on one sample
    result = run(str(path), "--device", "cpu", "--batch", "1", "--steps", "1")
    assert result.exit_code == 2
    assert "torch stopped the benchmark: Expected more than 1 value per channel" in result.output
