"""The command line: flags in, one library call, output out. Bad input exits with status 2."""

from __future__ import annotations

import dataclasses
import functools
import random
import sys
from pathlib import Path

import click

from . import analyze, load, quiz, render, render_check
from .check import grade
from .dtypes import PRECISIONS, DType, precision_dtype
from .errors import ArchcalcError, SpecError
from .memory import Device, Optimizer, largest_batch, parse_size


def _console():
    """A terminal's own width; piped into a file, wide enough that nothing folds."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def refusals(command):
    """Turn an ArchcalcError into its message on stderr and exit status 2: never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ArchcalcError as error:
            click.echo(f"archcalc: {error}", err=True)
            sys.exit(2)

    return wrapper


def parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        values[name.strip()] = value.strip()
    return values


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archcalc")
def main() -> None:
    """Shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec."""


# Options several commands share, each declared once (click makes a new parameter at each use).
SPEC = click.argument("spec", metavar="SPEC")
SETS = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Give a value to a name of the spec (repeatable).")
DTYPE = click.option("--dtype", type=click.Choice([d.value for d in DType]), help="Override the spec's dtype.")
PRECISION = click.option("--precision", type=click.Choice(list(PRECISIONS)),
                         help="Lightning's names: 32-true (default), 64-true, bf16-true, 16-true (mixed: not modelled yet).")
COURSE = click.option("--course", is_flag=True, help="Also the course's memory formula M + B·m·L (always on the course's own specs).")
TABLE_OR_JSON = click.option("--format", "-f", "form", type=click.Choice(["table", "json"]), default="table", show_default=True)


def spec_options(command):
    """The options every command that analyses a spec shares."""
    for option in reversed([
        SPEC,
        SETS,
        DTYPE,
        click.option("--optimizer", type=click.Choice([o.value for o in Optimizer]), default="sgd", show_default=True,
                     help="Optimizer state to count: sgd none, momentum 1, adam 2 copies of the parameters."),
        click.option("--device", type=click.Choice([d.value for d in Device]), default="cpu", show_default=True,
                     help="Where the step runs (dropout masks: the dtype's size on cpu, 1 byte on cuda)."),
    ]):
        command = option(command)
    return command


@main.command()
@spec_options
@click.option("--batch", "-b", metavar="B", help="Batch size (default: the symbol B).")
@click.option("--format", "-f", "form", type=click.Choice([f.value for f in render.Format]), default="table", show_default=True)
@click.option("--explain", is_flag=True, help="Derive every number step by step.")
@COURSE
@PRECISION
@refusals
def show(spec: str, sets, dtype, optimizer, device, batch, form: str, explain: bool, course: bool, precision) -> None:
    """Show the layers of SPEC: output shapes, parameters and their shares, FLOPs, memory."""
    dtype = precision_dtype(precision, dtype)
    report = analyze(load(spec), batch=batch, dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    report = dataclasses.replace(report, course=True) if course else report
    if form == "table":
        console = _console()
        console.print(render.table(report, width=console.width, explained=explain))
    elif form == "csv":
        if explain:
            raise click.BadParameter("csv has no room for derivations; use table, markdown or json", param_hint="--explain")
        click.echo(render.csv(report), nl=False)
    else:
        click.echo(getattr(render, form)(report, explained=explain), nl=False)


@main.command()
@spec_options
@click.option("--budget", metavar="SIZE", help="Memory available: 80GiB, 24GB, 512MiB, or bytes.")
@click.option("--card", metavar="SIZE", help="A CUDA card's memory (24GB): the CUDA context is taken out first; implies --device cuda.")
@TABLE_OR_JSON
@COURSE
@PRECISION
@refusals
def memory(spec: str, sets, dtype, optimizer, device, budget, card, form: str, course: bool, precision) -> None:
    """The largest batch whose training step fits in --budget (or on a --card), and the memory at that batch.

    On CUDA the per-sample bytes are counted with the allocator's headroom under a cap (measured).
    Exits with status 1 when not even a batch of 1 fits."""
    dtype = precision_dtype(precision, dtype)
    if (budget is None) == (card is None):
        raise SpecError("give --budget SIZE or --card SIZE (one of them)", "--card 24GB: a card's memory, the CUDA context taken out",
                        where="--budget")
    report = analyze(load(spec), dtype=dtype, optimizer=optimizer, device="cuda" if card else device, **parse_sets(sets))
    fit = largest_batch(dataclasses.replace(report, course=True) if course else report, parse_size(budget or card),
                        card=card is not None)
    if form == "json":
        click.echo(render.fit_json(fit), nl=False)
    else:
        _console().print(render.fit(fit))
    if fit.batch is None:
        sys.exit(1)


@main.command("check")
@spec_options
@click.argument("answers", nargs=-1, metavar="[ANSWERS]...")
@click.option("--batch", "-b", metavar="B", help="Batch size (default: the symbol B; a memory claim may give its own).")
@TABLE_OR_JSON
@refusals
def check_command(spec: str, sets, dtype, optimizer, device, answers, batch, form: str) -> None:
    """Check claims about SPEC: its own [expect] table, or ANSWERS files (or folders of them).

    Exits with status 0 when every claim holds, 1 when one is wrong, 2 when a spec or answers file is bad."""
    spec_ = load(spec)
    report = analyze(spec_, batch=batch, dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    results = grade(spec_, answers, report=report)
    if form == "json":
        click.echo(render_check.json(results, report), nl=False)
    else:
        _console().print(render_check.table(results))
    for result in results:
        if result.error:
            click.echo(f"archcalc: {result.error}", err=True)
    sys.exit(2 if any(r.error for r in results) else 0 if all(r.ok for r in results) else 1)


@main.command("quiz")
@spec_options
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="How many questions.")
@click.option("--seed", "-s", type=int, help="The draw: the same seed gives the same quiz (default: a random one, printed).")
@click.option("--output", "-o", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the questions, the answer key and a blank answers sheet.")
@refusals
def quiz_command(spec: str, sets, dtype, optimizer, device, count: int, seed, folder: str) -> None:
    """Draw questions about SPEC and write them with an answer key that `archcalc check SPEC KEY` passes."""
    report = analyze(load(spec), dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    seed = random.SystemRandom().randrange(10**6) if seed is None else seed
    drawn = quiz.draw(report, count, seed, spec=spec)
    stem = f"{Path(spec).stem}-{seed}"
    files = {f"{stem}-quiz.md": drawn.markdown(), f"{stem}-key.toml": drawn.key_toml(),
             f"{stem}-answers.toml": drawn.sheet_toml()}
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (Path(folder) / name).write_text(text, encoding="utf-8")
    click.echo(drawn.markdown())
    paths = [str(Path(folder) / name) for name in files]
    click.echo(f"Wrote {paths[0]} (the questions), {paths[1]} (the answer key) and {paths[2]} (a blank answers sheet).")


@main.command("verify")
@SPEC
@SETS
@click.option("--batch", "-b", type=click.IntRange(min=1), metavar="B", help="Batch size of the forward pass (default 2).")
@DTYPE
@TABLE_OR_JSON
@refusals
def verify_command(spec: str, sets, batch, dtype, form: str) -> None:
    """Build SPEC in PyTorch and check every number of its report against it; exit 1 on a mismatch."""
    from .backends import tables
    from .backends.torch import version
    from .backends.verify import batch_of, verify

    report = analyze(load(spec), batch=batch, dtype=dtype, device="cpu", **parse_sets(sets))
    checks = verify(report)
    if form == "json":
        click.echo(tables.verification_json(report, checks, batch_of(report), version()), nl=False)
    else:
        _console().print(tables.verification(report, checks, batch_of(report), version()))
    if not all(check.ok for check in checks):
        sys.exit(1)


@main.command("export")
@SPEC
@SETS
@click.option("--output", "-o", "output", default="-", show_default=True, metavar="FILE", help="The .py file to write; - for stdout.")
@click.option("--class-name", metavar="NAME", help="The class's name (default: from the model's name).")
@click.option("--onnx", "to_onnx", is_flag=True, help="Write ONNX instead (-o FILE.onnx), dynamic axes named B and as the spec's input.")
@refusals
def export_command(spec: str, sets, output: str, class_name: str | None, to_onnx: bool) -> None:
    """Write SPEC as the Python source of a torch nn.Module class (or, with --onnx, as an ONNX file)."""
    from .backends.export import source

    if to_onnx:
        return _onnx(spec, sets, output)

    if class_name is not None and not class_name.isidentifier():
        raise click.BadParameter(f"{class_name!r} is not a Python name", param_hint="--class-name")
    text = source(analyze(load(spec), **parse_sets(sets)), class_name)
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise ArchcalcError(f"{output}: cannot write it: {error.strerror}") from None
    click.echo(f"wrote {output}", err=True)


@main.command("bench")
@SPEC
@SETS
@click.option("--batch", "-b", type=click.IntRange(min=1), default=32, show_default=True, metavar="B", help="Batch size.")
@click.option("--device", metavar="DEVICE", help="cuda, cuda:1 or cpu (default: cuda if there is one).")
@click.option("--dtype", type=click.Choice([d.value for d in DType]), help="Compute dtype (default: the spec's).")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="float16/bfloat16: autocast with float32 parameters; --no-amp casts the parameters too.")
@click.option("--compile", "compiled", is_flag=True, help="torch.compile the model (warm-up compiles).")
@click.option("--channels-last", is_flag=True, help="Channels-last memory format for the model and the input.")
@click.option("--tf32", is_flag=True, help="Let float32 matmuls use tensor cores (TF32), as cuDNN convolutions do by default.")
@click.option("--optimizer", type=click.Choice([o.value for o in Optimizer]), default="sgd", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Timed steps of each kind.")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed steps first (default: min(5, steps)).")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), metavar="TFLOPS", help="The device's peak, instead of the table's.")
@TABLE_OR_JSON
@refusals
def bench_command(spec: str, sets, batch, device, dtype, amp, compiled, channels_last, tf32, optimizer, steps, warmup,
                  peak_tflops, form: str) -> None:
    """Time a training step and an inference step of SPEC in PyTorch: ms, images/s, TFLOP/s, share of peak, memory."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .backends import tables
    from .backends.bench import Options, bench

    report = analyze(load(spec), **parse_sets(sets))
    options = Options(device=device, batch=batch, dtype=dtype or str(report.dtype), amp=amp, compile=compiled,
                      channels_last=channels_last, tf32=tf32, optimizer=optimizer, steps=steps, warmup=warmup,
                      peak_tflops=peak_tflops)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    stderr = Console(stderr=True)
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        task = bar.add_task("preparing", total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        result = bench(report, options, progress)
    if form == "json":
        click.echo(tables.benchmark_json(result), nl=False)
    else:
        _console().print(tables.benchmark(result))


@main.command("import")
@click.argument("target", metavar="FILE.py:NAME|module:NAME")
@click.option("--input", "input_shape", required=True, metavar="SHAPE",
              help="One sample's shape, no batch axis: 3,224,224, or 3,H,W for formulas in H and W.")
@click.option("--args", metavar="JSON", help='Constructor arguments when NAME is a class: \'{"num_classes": 10}\' or \'[10]\'.')
@click.option("--name", "model_name", metavar="NAME", help="The model's name in the spec (default: the class name).")
@click.option("--output", "-o", default="-", show_default=True, help="Where to write the spec ('-': standard output).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@refusals
def import_command(target: str, input_shape: str, args, model_name, output: str, force: bool) -> None:
    """Write the spec of a PyTorch module, traced with torch.fx.

    This imports FILE.py (or the module) and builds NAME: it runs that code, as any
    import does. Import only code you would run. Every operation archcalc cannot map is
    listed with its source line, and nothing is written.
    """
    from .backends import importer

    shape = importer.parse_input(input_shape)
    text = importer.import_module(importer.load_target(target, args), shape, model_name)
    _write(text, output, force)


def _write(text: str, output: str, force: bool) -> None:
    """Text to a file (or standard output for '-'); an existing file only with --force."""
    if output == "-":
        click.echo(text, nl=False)
        return
    path = Path(output)
    if path.exists() and not force:
        raise ArchcalcError(f"{output}: exists already\n  hint: pass --force to overwrite it, or choose another file")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ArchcalcError(f"{output}: cannot write it: {error.strerror}") from None
    click.echo(f"wrote {output}", err=True)


def _onnx(spec: str, sets, output: str) -> None:
    from .backends.onnx import export

    if output == "-" or not output.endswith(".onnx"):
        raise click.BadParameter("ONNX goes to a file: -o NAME.onnx", param_hint="--output")
    exported = export(load(spec), **parse_sets(sets))
    Path(output).write_bytes(exported.data)
    axes = ", ".join(f"{axis}: {name}" for axis, name in exported.dynamic.items())
    click.echo(f"wrote {output} (dynamic axes {axes}; traced at {'×'.join(map(str, exported.traced))}; "
               f"checked with {exported.checked_with})", err=True)
