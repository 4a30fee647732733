"""The commands that need PyTorch (archcalc/backends/): verify, export, bench, import."""

from __future__ import annotations

import keyword
import math
import sys
from pathlib import Path

import click

from ..core.errors import SpecError
from ..core.parallel import Strategy
from ..core.untrusted import one_line, visible
from .options import BATCH, DTYPE, FINETUNE, FORCE, OPTIMIZER, OUTPUT, PRECISION, SETS, SPEC, TABLE_OR_JSON, Flag, Options, bundle, shared
from .output import Files, console


@click.command("verify")
@shared(SPEC, SETS, BATCH.but(type=click.IntRange(min=1), help="Batch size of the forward pass (default 2)."), DTYPE,
        *FINETUNE, TABLE_OR_JSON)
def verify(options: Options) -> None:
    """Build SPEC in PyTorch and check every number of its report against it (a LoRA also against peft, where
    installed); exit 1 on a mismatch."""
    from ..backends import tables
    from ..backends.build import version
    from ..backends.peft_check import against_peft
    from ..backends.verify import batch_of, verify as checks_of

    report = options.report()
    checks = checks_of(report)
    peft = against_peft(report)
    if options.form == "json":
        click.echo(tables.verification_json(report, checks, batch_of(report), version(), peft), nl=False)
    else:
        console().print(tables.verification(report, checks, batch_of(report), version(), peft))
    if not all(check.ok for check in checks) or (peft is not None and not peft.ok):
        sys.exit(1)


@click.command("export")
@shared(SPEC, SETS, OUTPUT.but(help="The .py file to write; - for stdout."), FORCE)
@click.option("--class-name", metavar="NAME", help="The class's name (default: from the model's name).")
@click.option("--onnx", "to_onnx", is_flag=True, help="Write ONNX instead (-o FILE.onnx), dynamic axes named B and as the spec's input.")
def export(options: Options, class_name: str | None, to_onnx: bool) -> None:
    """Write SPEC as the Python source of a torch nn.Module class (or, with --onnx, as an ONNX file)."""
    from ..backends.export import source

    if to_onnx:
        return _onnx(options)
    if class_name is not None and (not class_name.isidentifier() or keyword.iskeyword(class_name)
                                   or not class_name.isascii() or class_name.startswith("__")):
        raise click.BadParameter(f"{visible(repr(class_name))} is not a usable Python class name "
                                 "(letters, digits and underscores, not a keyword)", param_hint="--class-name")
    options.files().put(source(options.report(), class_name), options.output)


def _onnx(options: Options) -> None:
    from ..backends.onnx import export as onnx

    if options.output == "-" or not options.output.endswith(".onnx"):
        raise click.BadParameter("ONNX goes to a file: -o NAME.onnx", param_hint="--output")
    exported = onnx(options.load(), **options.values)
    options.files().write(Path(options.output), exported.data)
    axes = ", ".join(f"{axis}: {name}" for axis, name in exported.dynamic.items())
    click.echo(f"wrote {one_line(options.output)} (dynamic axes {axes}; traced at {'×'.join(map(str, exported.traced))}; "
               f"checked with {exported.checked_with})", err=True)


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of TFLOP/s", param_hint="--peak-tflops")
    return value


# bench's own flags: what to time and how; they go to backends.bench.Options, not to an analysis.
BENCH = (
    Flag("--batch", "-b", type=click.IntRange(min=1), default=32, show_default=True, metavar="B", help="Batch size."),
    Flag("--device", metavar="DEVICE", help="cuda, cuda:1 or cpu (default: cuda if there is one)."),
    DTYPE.but(help="Parameters and compute in this dtype, as --precision D-true (default: the spec's)."),
    Flag("--amp/--no-amp", default=False, show_default=True,
         help="With --dtype float16/bfloat16: autocast with float32 parameters instead (--precision 16-mixed, bf16-mixed)."),
    PRECISION,
    Flag("--compile", "compile", is_flag=True, help="torch.compile the model (warm-up compiles)."),
    Flag("--channels-last", is_flag=True, help="Channels-last memory format for the model and the input."),
    Flag("--tf32", is_flag=True, help="Let float32 matmuls use tensor cores (TF32), as cuDNN convolutions do by default."),
    OPTIMIZER.but(help=None),
    Flag("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Timed steps of each kind."),
    Flag("--warmup", type=click.IntRange(min=0), help="Untimed steps first (default: min(5, steps))."),
    Flag("--peak-tflops", type=click.FloatRange(min=0, max=1e9, min_open=True), callback=lambda ctx, param, value: _finite(value),
         metavar="TFLOPS", help="The device's peak, instead of the table's."),
)


# bench under torchrun: the layout over N processes (the step per rank, its peak beside archcalc's for that rank)
RANKS = (
    Flag("--nproc", type=click.IntRange(min=1), metavar="N", help="Run the training step on N processes under torchrun (with --strategy)."),
    Flag("--strategy", type=click.Choice([s.value for s in Strategy]), help="With --nproc: ddp, zero1, fsdp, fsdp-no-reshard or tp."),
    Flag("--tp", type=click.IntRange(min=1), metavar="K", help="With --nproc and --strategy tp: tensor parallel in groups of K processes."),
)
ALONE = ("amp", "precision", "compile", "channels_last", "tf32", "peak_tflops")  # one process's flags, not under torchrun


@click.command("bench")
@shared(SPEC, SETS, TABLE_OR_JSON)
@bundle("flags", dict, *BENCH)
@bundle("ranks", dict, *RANKS)
def bench(options: Options, flags: dict, ranks: dict) -> None:
    """Time a training step and an inference step of SPEC in PyTorch: ms, images/s, TFLOP/s, share of peak, memory.

    With --nproc N --strategy S, the training step on N processes under torchrun (gloo on the CPU, NCCL on CUDA):
    each rank's time and peak beside archcalc's prediction for that rank, and the samples a second."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..backends import bench as timing, tables

    if ranks["nproc"] is not None or ranks["strategy"] is not None or ranks["tp"] is not None:
        _bench_ranks(options, flags, ranks)
        return
    report = options.report()
    run = timing.Options.of(report, **flags)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    stderr = Console(stderr=True)
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        task = bar.add_task("preparing", total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        result = timing.bench(report, run, progress)
    if options.form == "json":
        click.echo(tables.benchmark_json(result), nl=False)
    else:
        console().print(tables.benchmark(result))


def _bench_ranks(options: Options, flags: dict, ranks: dict) -> None:
    """bench --nproc N --strategy S: the step under torchrun (archcalc/backends/torchrun.py)."""
    from ..backends import tables, torchrun

    if ranks["nproc"] is None or ranks["strategy"] is None:
        raise SpecError("--strategy and --tp go with --nproc N, and --nproc with --strategy", "--nproc 2 --strategy ddp",
                        where="--nproc")
    given = [name for name in ALONE if flags[name] not in (None, False)]
    if given:
        raise SpecError(f"--{given[0].replace('_', '-')} is not taken with --nproc", "leave it out", where="--nproc")
    job = torchrun.Job(options.spec, options.values, ranks["strategy"], ranks["tp"], flags["batch"], flags["optimizer"],
                       flags["dtype"], flags["device"] or "cpu", flags["steps"], min(5, flags["steps"]) if flags["warmup"] is None else flags["warmup"])
    result = torchrun.launch(job, ranks["nproc"])
    if options.form == "json":
        click.echo(tables.benchmark_json(result), nl=False)
    else:
        console().print(tables.ranks(result))


IMPORT = (  # import's own flags, handed to its body as one dict
    Flag("--input", "input_shape", metavar="SHAPE",
         help="One sample's shape, no batch axis: 3,224,224, or 3,H,W for formulas in H and W "
              "(hf:PATH: T for token ids, or the config's image size, unless given)."),
    Flag("--args", metavar="JSON", help='Arguments when NAME is a class or a function that returns a module: \'{"num_classes": 10}\' or \'[10]\'.'),
    Flag("--class", "class_name", metavar="NAME", help="hf:PATH: the transformers class to build (default: the config's architectures[0])."),
    Flag("--name", "model_name", metavar="NAME", help="The model's name in the spec (default: the class name)."),
    Flag("--capture", type=click.Choice(["auto", "fx", "export"]), default="auto", show_default=True,
         help="How to record the model: torch.fx, torch.export (non-strict), or torch.fx then torch.export where it fails."),
    Flag("--flat", is_flag=True, help="Every layer on its own: no blocks recovered from repeated submodules."),
)


@click.command("import")
@click.argument("target", metavar="FILE.py:NAME|module:NAME|hf:PATH")
@shared(OUTPUT.but(metavar=None, help="Where to write the spec ('-': standard output)."),
        FORCE.but(help="Overwrite OUTPUT if it exists."))
@bundle("how", dict, *IMPORT)
def import_(options: Options, target: str, how: dict) -> None:
    """Write the spec of a PyTorch module, captured with torch.fx or torch.export.

    This imports FILE.py (or the module) and builds NAME: it runs that code, as any
    import does. Import only code you would run. hf:PATH builds a transformers model
    from a config.json alone (no weights, nothing downloaded). Every operation archcalc
    cannot map is listed with its source line, and nothing is written; the spec is read
    back and analysed first (exit 2 if archcalc refuses it). Submodules that repeat with
    the same layers and wiring become blocks (checked to give the same rows as flat layers).
    """
    from ..backends import importer
    from ..backends.importer.hf import default_input

    module = importer.load_target(target, how["args"], how["class_name"])
    shape = importer.parse_input(how["input_shape"]) if how["input_shape"] is not None else default_input(module)
    if shape is None:
        raise click.UsageError("Missing option '--input' (one sample's shape, e.g. 3,224,224).")
    text = importer.import_module(module, shape, how["model_name"], blocks=not how["flat"], capture=how["capture"])
    Files(target.rpartition(":")[0] or target, options.force).put(text, options.output)
