import ctypes
import functools
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# stacks of token ids, a formula in T (the generic tests give H, W, classes): tested in test_modern_specs.py
SEQUENCE_STACKS = {"lstm_lm.toml"}


# The slow tests: `pytest -m "not slow"` leaves them out (the fast subset, under a minute on two busy cores); the
# full run keeps them. A module (every test in it) or a test function (all its cases), with the seconds that
# `--durations=0` gave them in a full run on two cores under a load of 7.5 (about three times their CPU time).
SLOW = {
    # the torch oracles: real networks, trained a step or run through every number
    "tests/memory/test_timeline_oracle.py",  # 98 s (VGG-16-BN with Adam: 3 GB, the run's peak)
    "tests/backends/test_torch_verify.py",  # 35
    "tests/memory/test_ranks_oracle.py",  # 73 (spawned gloo worlds of 2 and 4 ranks, each importing transformers)
    "tests/memory/test_memory_oracle.py",  # 29
    "tests/memory/test_finetune_oracle.py",  # 13 (frozen layers on drawn networks, LoRA against peft)
    "tests/memory/test_finetune_gpt2.py",  # 16 (transformers' GPT-2 fine-tuned four ways, twice, and drawn small)
    "tests/backends/test_verify_peft.py",  # 4 (peft's LoRA beside the build, verify's lines)
    "tests/analysis/test_graph_specs.py",  # 28
    "tests/backends/test_torch_import.py",  # 27
    "tests/backends/test_import_torchvision.py::test_segmentation_models_import_exactly_with_their_heads",  # 9
    "tests/backends/test_import_torchvision.py::test_timm_models_import_exactly",  # 10
    "tests/backends/test_import_torchvision.py::test_more_torchvision_families_import_exactly",  # 7 CPU s (22 wall at a load of 5)
    "tests/backends/test_import_hf.py::test_hf_imports_keep_the_bytes_torch_keeps_for_backward",  # 3.4 (two configs, imported twice)
    "tests/backends/test_torch_export.py",  # 20 (every shipped spec, a network per layer kind, GPT-2 by the CLI)
    "tests/analysis/test_modern_specs.py",  # 15
    "tests/backends/test_torch_onnx.py",  # 15
    "tests/memory/test_checkpoint.py",  # 13
    "tests/analysis/test_torch_oracle.py",  # 12
    "tests/layers/test_layers_oracle.py",  # 9
    "tests/backends/test_torch_build.py",  # 8
    "tests/layers/test_modern_oracle.py",  # 8
    "tests/layers/test_real_kinds_oracle.py",  # 6 (torchvision's and timm's modules, a training step each)
    "tests/layers/test_llama_oracle.py",  # 3 (transformers' LlamaForCausalLM, a training step each)
    "tests/layers/test_import_kinds_oracle.py",  # 7 (torchvision's Swin attention, transformers' T5, CLIP, GPT-2 pieces)
    "tests/memory/test_generation_oracle.py",  # 20 at a load of 5 (transformers' GPT-2, Llama, Mistral generating)
    "tests/analysis/test_graph_oracle.py",  # 7
    "tests/analysis/test_reference_nets.py",  # 6
    "tests/analysis/test_receptive.py",  # 4
    "tests/memory/test_timeline_attention.py",  # 4
    "tests/cli/test_finetune_sweep.py::test_every_fine_tuning_of_gpt2_exits_cleanly",  # 5 (204 runs of show)
    # spawned processes under torch.distributed (gloo), world sizes 2 and 4
    "tests/memory/test_timeline_tensor_parallel.py::test_gpt2_per_rank_against_torch_tensor_parallel",  # 34
    "tests/backends/test_bench_nproc.py::test_bench_runs_tensor_parallel_gpt2_on_two_processes",  # 8 (torchrun)
    "tests/memory/test_timeline_tensor_parallel.py::test_a_large_vocabulary_puts_the_forward_peak_at_the_loss",  # 10
    "tests/memory/test_timeline_gpt2.py::test_hugging_face_gpt2_step_by_step",  # 1.5
    "tests/backends/test_torch_graph.py::test_drawn_graphs_verify_layer_by_layer_and_export",  # 2.2
    # every shipped spec, at many widths or on every CUDA card
    "tests/render/test_speed.py",  # 20
    "tests/memory/test_timeline_cuda.py",  # 6
    "tests/memory/test_memory.py::test_symbolic_sizes_give_a_formula_for_the_batch",  # 91 (largest_batch on formulas)
    "tests/teaching/test_quiz.py::test_the_answer_key_passes_check",  # 7.7
    "tests/core/test_expr.py::test_symbolic_then_substituted_equals_concrete",  # 1.6
    "tests/core/test_numbers.py::test_a_symbolic_network_writes_its_formulas_as_text",  # 1.3
    "tests/render/test_render.py::test_explain_derives_each_number",  # 1.5
    "archcalc/teaching/solve.py::archcalc.teaching.solve",  # 1.7 (its docstring's examples)
    "tests/teaching/test_solve.py::test_alexnet_h_from_223_to_254_gives_pool3_6x6",  # 0.8
    "tests/teaching/test_claims.py::test_printed_shapes_read_back_as_true_claims",  # 0.5
    "tests/backends/test_modern_verify.py::test_a_grouped_conv_verifies_with_torchs_overcount_noted",  # 2.0 (alone)
    "tests/render/test_draw.py::test_writes_svg_and_png",  # 0.7 (matplotlib's first import)
    # many cases, each a command run in full
    "tests/cli/test_hostile.py::test_a_hostile_input_gets_one_clear_message_and_status_2",  # 16
    "tests/cli/test_hostile_commands.py::test_a_hostile_flag_or_file_gets_one_clear_message_and_status_2",  # 3.5
    # fresh interpreters (python -c, the console script, a whole collection)
    "tests/cli/test_cli.py::test_a_symbolic_spec_does_import_sympy",  # 4.4
    "tests/cli/test_cli.py::test_set_leaves_the_other_names_symbolic",  # 2.3
    "tests/cli/test_cli.py::test_a_concrete_spec_never_imports_sympy",  # 1.9
    "tests/cli/test_cli.py::test_import_archcalc_does_not_import_torch",  # 1.7
    "tests/cli/test_cli.py::test_the_console_script_never_imports_sympy_for_a_concrete_spec",  # 1.0
    "tests/cli/test_hostile.py::test_a_narrow_or_ascii_terminal_still_gets_the_output",  # 3.5
    "tests/cli/test_hostile.py::test_devices_fifos_and_folders_are_refused_without_reading_them",  # 2.0
    "tests/cli/test_hostile.py::test_the_leads_smoke_test",  # 1.2
    "tests/backends/test_torch_optional.py::test_a_missing_torch_says_how_to_install_it",  # 2.4
    "tests/backends/test_torch_optional.py::test_the_library_raises_an_archcalc_error_without_torch",  # 2.2
    "tests/test_suite.py::test_the_whole_suite_collects_without_torch",
    # the examples of README.md and docs/ say it themselves, in their block's first line: ```console slow
}


def pytest_collection_modifyitems(config, items):
    names = {}  # item -> ("tests/x/test_y.py", "test_function")
    for item in items:
        path = Path(str(item.path)).resolve()
        if ROOT in path.parents:
            names[item] = (path.relative_to(ROOT).as_posix(), getattr(item, "originalname", item.name))
    modules, functions = {m for m, _ in names.values()}, set(names.values())
    for entry in SLOW | CRASHED:
        module, _, function = entry.partition("::")
        if not (ROOT / module).is_file() or (module in modules and function and (module, function) not in functions):
            raise pytest.UsageError(f"tests/conftest.py names {entry}, which is no test (renamed or removed?)")
    for item, (module, function) in names.items():
        if module in SLOW or f"{module}::{function}" in SLOW:
            item.add_marker(pytest.mark.slow)
        if f"{module}::{function}" in CRASHED and hasattr(os, "fork"):
            item.runtest = functools.partial(_in_a_child, item.runtest)


# Tests in which torch's CPU backward has crashed, rarely (a segmentation fault, not reproduced since: 5,400 drawn
# cases of the two under 26 hypothesis seeds, 100,000 permute → GroupNorm/InstanceNorm → GELU backward passes under
# bf16 and fp16 autocast with glibc's heap checks on): each runs in a forked child, so that a crash fails that test
# (faulthandler prints where) instead of killing the whole run.
CRASHED = {
    "tests/memory/test_timeline_oracle.py::test_newer_kinds_under_autocast",  # the permute → GroupNorm → GELU case seen
    "tests/layers/test_layers_oracle.py::test_views_and_copies_match_torch",  # under FlopCounterMode
}


def _in_a_child(runtest) -> None:
    """runtest() in a forked child; its failure (or skip) reported here, a signal that killed it as a failure."""
    import pickle
    import signal
    import traceback

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-up (atexit, pytest's)
        os.close(read)
        outcome = ("passed", "")
        try:
            runtest()
        except pytest.skip.Exception as skipped:
            outcome = ("skipped", str(skipped.msg))
        except BaseException:
            outcome = ("failed", traceback.format_exc())
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        pytest.fail(f"the test's process died of {name} (a crash inside torch: faulthandler's traceback is in its stderr)", pytrace=False)
    kind, text = pickle.loads(data)
    if kind == "skipped":
        pytest.skip(text)
    if kind == "failed":
        pytest.fail(text, pytrace=False)


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim  # glibc's: give the freed heap back to the system
except (OSError, AttributeError):
    _malloc_trim = None


@pytest.fixture(scope="module", autouse=True)
def _memory_back_after_each_module():
    """What a module's tests freed goes back to the system before the next module: the torch oracles free
    gigabytes that glibc would otherwise keep (the run's peak resident memory, its baseline for the next ones)."""
    yield
    if _malloc_trim is not None:
        _malloc_trim(0)


@pytest.fixture
def spec_path():
    return lambda name: str(SPECS / name)


GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = "ARCHCALC_UPDATE_GOLDEN"


@pytest.fixture
def golden():
    """Compare text with tests/golden/NAME; ARCHCALC_UPDATE_GOLDEN=1 writes the text there instead."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get(UPDATE_GOLDEN) == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"no golden {path.name}: run {UPDATE_GOLDEN}=1 pytest tests/render/test_render.py, then read it"
        assert text == path.read_text(encoding="utf-8"), (
            f"{name} differs from its golden; if the change is meant, {UPDATE_GOLDEN}=1 rewrites it (read the diff)"
        )

    return check
