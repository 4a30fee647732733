"""The command line: flags in, one library call, output out. Bad input exits with status 2."""

from __future__ import annotations

import atexit
import dataclasses
import functools
import gc
import json
import keyword
import math
import random
import sys
from pathlib import Path

import click

from .. import analyze, load
from ..core.dtypes import PRECISIONS, Device, DType, Optimizer, precision_autocast, precision_dtype
from ..core.errors import ArchcalcError, SpecError
from ..core.untrusted import visible
from ..memory.closed import largest_batch, parse_size
from ..render import report as render


def _console():
    """A terminal's own width; piped into a file, wide enough that nothing folds."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def run() -> None:
    """The `archcalc` command as a process (`python -m archcalc`, the installed script): `main` and exit,
    without the collector's last pass over every object (sympy's: a tenth of a second at exit)."""
    atexit.register(gc.freeze)
    main()


def refusals(command):
    """Turn an ArchcalcError into its message on stderr and exit status 2: never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ArchcalcError as error:
            click.echo(f"archcalc: {visible(str(error))}", err=True)
        except RecursionError:
            click.echo("archcalc: the input is nested too deeply to read", err=True)
        except MemoryError:
            click.echo("archcalc: the input needs more memory than this machine has", err=True)
        sys.exit(2)

    return wrapper


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of TFLOP/s", param_hint="--peak-tflops")
    return value


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
    for stream in (sys.stdout, sys.stderr):  # PYTHONIOENCODING=ascii: × and ² become escapes, not a traceback
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="backslashreplace")


# Options several commands share, each declared once (click makes a new parameter at each use).
SPEC = click.argument("spec", metavar="SPEC")
SETS = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Give a value to a name of the spec (repeatable).")
DTYPE = click.option("--dtype", type=click.Choice([d.value for d in DType]), help="Override the spec's dtype.")
PRECISION = click.option("--precision", type=click.Choice(list(PRECISIONS)),
                         help="Lightning's names: 32-true (default), 64-true, bf16-true, 16-true; bf16-mixed, 16-mixed (autocast).")
COURSE = click.option("--course", is_flag=True, help="Also the course's memory formula M + B·m·L (always on the course's own specs).")
FORCE = click.option("--force", is_flag=True, help="Write over files that already exist.")
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
@click.option("--depth", type=click.IntRange(min=1), metavar="N", help="Fold blocks deeper than N levels into one row each.")
@COURSE
@PRECISION
@refusals
def show(spec: str, sets, dtype, optimizer, device, batch, form: str, explain: bool, depth: int | None, course: bool,
         precision) -> None:
    """Show the layers of SPEC: output shapes, parameters and their shares, FLOPs, memory."""
    collecting = gc.isenabled()
    gc.disable()  # one analysis makes no cyclic garbage worth the collector's passes over sympy's new objects
    try:
        _show(spec, sets, dtype, optimizer, device, batch, form, explain, depth, course, precision)
    finally:
        if collecting:
            gc.enable()


def _show(spec, sets, dtype, optimizer, device, batch, form, explain, depth, course, precision) -> None:
    dtype = precision_dtype(precision, dtype)
    report = analyze(load(spec), batch=batch, dtype=dtype, optimizer=optimizer, device=device,
                     autocast=precision_autocast(precision), **parse_sets(sets))
    report = dataclasses.replace(report, course=True) if course else report
    if form == "table":
        console = _console()
        console.print(render.table(report, width=console.width, explained=explain, depth=depth))
    elif form == "csv":
        if explain:
            raise click.BadParameter("csv has no room for derivations; use table, markdown or json", param_hint="--explain")
        click.echo(render.csv(report), nl=False)
    elif form == "markdown":
        click.echo(render.markdown(report, explained=explain, depth=depth), nl=False)
    else:
        click.echo(render.json(report, explained=explain), nl=False)


@main.command()
@spec_options
@click.option("--budget", metavar="SIZE", help="Memory available: 80GiB, 24GB, 512MiB, or bytes.")
@click.option("--card", metavar="SIZE", help="A CUDA card's memory (24GB): the CUDA context is taken out first; implies --device cuda.")
@TABLE_OR_JSON
@COURSE
@PRECISION
@refusals
@click.option("--solve", metavar="NAME", help="Solve for a size instead of the batch: H (the image side, W too), T (the sequence length).")
@click.option("--batch", "-b", metavar="B", help="The batch, with --solve.")
def memory(spec: str, sets, dtype, optimizer, device, budget, card, form: str, course: bool, precision, solve, batch) -> None:
    """The largest batch whose training step fits in --budget (or on a --card), and the memory at that batch.

    On CUDA the per-sample bytes are counted with the allocator's headroom under a cap (measured).
    Exits with status 1 when not even a batch of 1 fits."""
    dtype = precision_dtype(precision, dtype)
    if (budget is None) == (card is None):
        raise SpecError("give --budget SIZE or --card SIZE (one of them)", "--card 24GB: a card's memory, the CUDA context taken out",
                        where="--budget")
    if solve is not None:
        _solve(spec, sets, dtype, optimizer, "cuda" if card else device, budget or card, card is not None, solve, batch, form,
               precision_autocast(precision))
        return
    report = analyze(load(spec), dtype=dtype, optimizer=optimizer, device="cuda" if card else device,
                     autocast=precision_autocast(precision), **parse_sets(sets))
    fit = largest_batch(dataclasses.replace(report, course=True) if course else report, parse_size(budget or card),
                        card=card is not None)
    if form == "json":
        click.echo(render.fit_json(fit), nl=False)
    else:
        _console().print(render.fit(fit))
    if fit.batch is None:
        sys.exit(1)


def _solve(spec, sets, dtype, optimizer, device, size, card, name, batch, form, autocast=None) -> None:
    """memory --solve NAME: the largest value of NAME (H: the image side, W with it) that fits at --batch."""
    from ..memory.closed import CUDA_HEADROOM, largest_size
    from ..memory.timeline import CUDA_CONTEXT

    if batch is None:
        raise SpecError("--solve needs --batch B: the batch to fit", where="--solve")
    spec_, values = load(spec), parse_sets(sets)
    cuda = device == "cuda"
    budget = parse_size(size) - (CUDA_CONTEXT if card and cuda else 0)
    square = name == "H"

    def analyze_at(value):
        given = values | {name: value} | ({"W": value} if square and "W" not in values else {})
        return analyze(spec_, batch=batch, dtype=dtype, optimizer=optimizer, device=device, autocast=autocast, **given)

    try:
        analyze_at(1)
    except SpecError as error:
        if "no name" in str(error):
            raise SpecError(f"the spec has no size named {name!r} to solve for", "H for an image side, T for a sequence length",
                            where="--solve") from None
    solved = largest_size(analyze_at, name, budget, int(batch), CUDA_HEADROOM if cuda else 1)
    if form == "json":
        click.echo(json.dumps({"solve": name, "value": solved.value, "batch": int(batch), "budget_bytes": budget,
                               "memory": solved.report.memory.to_dict() if solved.report else None}, indent=2))
    elif solved.value is None:
        click.echo(f"No {name} fits {size} at batch {batch}.")
    else:
        click.echo(f"Largest {name}{' = W' if square else ''}: {solved.value:,} fits {size} at batch {batch}"
                   f" (peak {solved.report.memory.training.at(int(batch)):,} bytes)")
    if solved.value is None:
        sys.exit(1)


@main.command("check")
@spec_options
@click.argument("answers", nargs=-1, metavar="[ANSWERS]...")
@click.option("--batch", "-b", metavar="B", help="Batch size (default: the symbol B; a memory claim may give its own).")
@click.option("--format", "-f", "form", type=click.Choice(["table", "json", "gradescope"]), default="table", show_default=True,
              help="gradescope: Gradescope's results.json for one submission, weighted by the spec's [weights] (exit 0 once written).")
@refusals
def check_command(spec: str, sets, dtype, optimizer, device, answers, batch, form: str) -> None:
    """Check claims about SPEC: its own [expect] table, or ANSWERS files (or folders of them).

    Exits with status 0 when every claim holds, 1 when one is wrong, 2 when a spec or answers file is bad."""
    from ..render import check as render_check
    from ..teaching.check import grade

    spec_ = load(spec)
    report = analyze(spec_, batch=batch, dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    if form == "gradescope":
        from ..render.gradescope import results as gradescope_results

        if len(answers) > 1:
            raise click.BadParameter("Gradescope grades one submission: give one answers file", param_hint="ANSWERS")
        click.echo(json.dumps(gradescope_results(spec_, report, answers[0] if answers else None), indent=2, ensure_ascii=False))
        return
    results = grade(spec_, answers, report=report)
    if form == "json":
        click.echo(render_check.json(results, report), nl=False)
    else:
        _console().print(render_check.table(results))
    for result in results:
        if result.error:
            click.echo(f"archcalc: {visible(result.error)}", err=True)
    sys.exit(2 if any(r.error for r in results) else 0 if all(r.ok for r in results) else 1)


@main.command("quiz")
@spec_options
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="How many questions.")
@click.option("--seed", "-s", type=click.IntRange(0, 2**63 - 1), help="The draw: the same seed gives the same quiz (default: a random one, printed).")
@click.option("--output", "-o", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the questions, the answer key and a blank answers sheet.")
@click.option("--variants", type=click.IntRange(min=1, max=10_000), metavar="N",
              help="N students, N different networks drawn from the spec's [variants] ranges, each with its own key.")
@FORCE
@refusals
def quiz_command(spec: str, sets, dtype, optimizer, device, count: int, seed, folder: str, variants, force: bool) -> None:
    """Draw questions about SPEC and write them with an answer key that `archcalc check SPEC KEY` passes."""
    if variants:
        _variants(spec, sets, dtype, optimizer, device, count, seed, folder, variants, force)
        return
    from ..teaching import quiz

    report = analyze(load(spec), dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    seed = random.SystemRandom().randrange(10**6) if seed is None else seed
    drawn = quiz.draw(report, count, seed, spec=spec)
    stem = f"{Path(spec).stem}-{seed}"
    files = {f"{stem}-quiz.md": drawn.markdown(), f"{stem}-key.toml": drawn.key_toml(),
             f"{stem}-answers.toml": drawn.sheet_toml()}
    _folder(folder)
    for name, text in files.items():
        _write(Path(folder) / name, text, force, spec, again=True)
    click.echo(drawn.markdown())
    paths = [str(Path(folder) / name) for name in files]
    click.echo(f"Wrote {paths[0]} (the questions), {paths[1]} (the answer key) and {paths[2]} (a blank answers sheet).")


def _folder(folder: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchcalcError(f"{visible(folder)}: cannot make this folder: {error.strerror or error}") from None


def _variants(spec, sets, dtype, optimizer, device, count, seed, folder, variants, force: bool) -> None:
    from ..teaching.variants import draw

    seed = random.SystemRandom().randrange(10**6) if seed is None else seed
    quizzes = draw(load(spec), variants, count, seed, spec, dtype=dtype, optimizer=optimizer, device=device, **parse_sets(sets))
    _folder(folder)
    stem, manifest = f"{Path(spec).stem}-{seed}", []
    for index, drawn in enumerate(quizzes, start=1):
        files = {f"{stem}-v{index:03d}-{what}": text for what, text in (
            ("quiz.md", drawn.markdown()), ("key.toml", drawn.key_toml()), ("answers.toml", drawn.sheet_toml()))}
        for name, text in files.items():
            _write(Path(folder) / name, text, force, spec, again=True)
        manifest.append({"variant": index, "values": dict(drawn.values), "seed": drawn.seed, "files": list(files),
                         "check": drawn.check(f"{stem}-v{index:03d}-answers.toml")})
    path = Path(folder) / f"{stem}-variants.json"
    _write(path, json.dumps(manifest, indent=2) + "\n", force, spec, again=True)
    for entry in manifest:
        click.echo(f"variant {entry['variant']}: " + ", ".join(f"{k} = {v}" for k, v in entry["values"].items()))
    click.echo(f"Wrote {variants} quizzes, keys and answers sheets to {folder}, and {path} (which student has which network).")


@main.command("verify")
@SPEC
@SETS
@click.option("--batch", "-b", type=click.IntRange(min=1), metavar="B", help="Batch size of the forward pass (default 2).")
@DTYPE
@TABLE_OR_JSON
@refusals
def verify_command(spec: str, sets, batch, dtype, form: str) -> None:
    """Build SPEC in PyTorch and check every number of its report against it; exit 1 on a mismatch."""
    from ..backends import tables
    from ..backends.build import version
    from ..backends.verify import batch_of, verify

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
@FORCE
@refusals
def export_command(spec: str, sets, output: str, class_name: str | None, to_onnx: bool, force: bool) -> None:
    """Write SPEC as the Python source of a torch nn.Module class (or, with --onnx, as an ONNX file)."""
    from ..backends.export import source

    if to_onnx:
        return _onnx(spec, sets, output, force)

    if class_name is not None and (not class_name.isidentifier() or keyword.iskeyword(class_name)
                                   or not class_name.isascii() or class_name.startswith("__")):
        raise click.BadParameter(f"{visible(repr(class_name))} is not a usable Python class name "
                                 "(letters, digits and underscores, not a keyword)", param_hint="--class-name")
    text = source(analyze(load(spec), **parse_sets(sets)), class_name)
    if output == "-":
        click.echo(text, nl=False)
        return
    _write(Path(output), text, force, spec)
    click.echo(f"wrote {visible(output)}", err=True)


def _holds(path: Path, data: bytes) -> bool:
    """Whether a file already holds exactly `data` (the same quiz drawn again): writing it changes nothing."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _may_write(path: Path, force: bool, spec: str) -> None:
    """Refuse to write over the spec, over what is not a regular file, or over a file without --force."""
    try:
        same = path.exists() and Path(spec).exists() and path.samefile(spec)
    except OSError:
        same = False
    if same:
        raise ArchcalcError(f"{visible(str(path))}: that is the spec itself: refusing to write over it")
    if path.exists() and not path.is_file():
        raise ArchcalcError(f"{visible(str(path))}: not a regular file: refusing to write over it")
    if path.exists() and not force:
        raise ArchcalcError(f"{visible(str(path))}: already exists\n  hint: --force writes over it")


def _write(path: Path, text: str | bytes, force: bool, spec: str, *, again: bool = False) -> None:
    """Write a file the command makes; never the spec, and an existing file only with --force
    (`again`: or when it already holds exactly this, as a quiz drawn again with its seed does)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    _may_write(path, force or (again and _holds(path, data)), spec)
    try:
        path.write_bytes(data)
    except OSError as error:
        raise ArchcalcError(f"{visible(str(path))}: cannot write it: {error.strerror or error}") from None


@main.command("bench")
@SPEC
@SETS
@click.option("--batch", "-b", type=click.IntRange(min=1), default=32, show_default=True, metavar="B", help="Batch size.")
@click.option("--device", metavar="DEVICE", help="cuda, cuda:1 or cpu (default: cuda if there is one).")
@click.option("--dtype", type=click.Choice([d.value for d in DType]), help="Compute dtype (default: the spec's).")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="float16/bfloat16: autocast with float32 parameters; --no-amp casts the parameters too.")
@PRECISION
@click.option("--compile", "compiled", is_flag=True, help="torch.compile the model (warm-up compiles).")
@click.option("--channels-last", is_flag=True, help="Channels-last memory format for the model and the input.")
@click.option("--tf32", is_flag=True, help="Let float32 matmuls use tensor cores (TF32), as cuDNN convolutions do by default.")
@click.option("--optimizer", type=click.Choice([o.value for o in Optimizer]), default="sgd", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Timed steps of each kind.")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed steps first (default: min(5, steps)).")
@click.option("--peak-tflops", type=click.FloatRange(min=0, max=1e9, min_open=True), callback=lambda ctx, param, value: _finite(value),
              metavar="TFLOPS", help="The device's peak, instead of the table's.")
@TABLE_OR_JSON
@refusals
def bench_command(spec: str, sets, batch, device, dtype, amp, precision, compiled, channels_last, tf32, optimizer, steps,
                  warmup, peak_tflops, form: str) -> None:
    """Time a training step and an inference step of SPEC in PyTorch: ms, images/s, TFLOP/s, share of peak, memory."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..backends import tables
    from ..backends.bench import Options, bench

    report = analyze(load(spec), **parse_sets(sets))
    if precision is not None:  # Lightning's names: X-mixed is autocast in X (float32 parameters), X-true casts everything
        dtype = precision_autocast(precision) or precision_dtype(precision, dtype)
        amp = precision_autocast(precision) is not None
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


def _digits(text: str) -> bool:
    """A whole number int() reads: ASCII digits only ('²' is a digit to str.isdigit), at most 18 of them."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _axes(text: str | None) -> int | tuple[int, ...] | None:
    """'2' -> 2; '2,1' or '2 1' -> (2, 1): one value, or one per axis (H, W)."""
    if text is None:
        return None
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts or not all(_digits(p) for p in parts) or len(parts) > 2:
        raise click.BadParameter(f"{text!r}: give a whole number, or two (H,W)")
    values = tuple(int(p) for p in parts)
    return values[0] if len(values) == 1 else values


@main.group("example")
def example_group() -> None:
    """Work a small example by hand, step by step, as the course does: pool, conv, dropout."""


MATRIX = click.option("--matrix", "-m", "matrix_text", required=True, metavar='"1 3; 4 6"',
                      help='The input: rows split by ";", numbers by spaces (integers, decimals, fractions such as 1/3).')


def _show_example(worked, form: str) -> None:
    from ..render import example as render_example

    if form == "json":
        click.echo(render_example.json(worked), nl=False)
    else:
        _console().print(render_example.table(worked))


def _number(text: str, flag: str):
    """One exact number from a flag: '0.5', '1/3', '-2'."""
    from ..teaching import example

    values = example.matrix(text, flag)
    if len(values) != 1 or len(values[0]) != 1:
        raise click.BadParameter(f"{text!r}: one number", param_hint=flag)
    return values[0][0]


@example_group.command("pool")
@MATRIX
@click.option("--op", type=click.Choice(["max", "avg"]), default="max", show_default=True)
@click.option("--kernel-size", default="2", show_default=True, metavar="K", help="K, or H,W.")
@click.option("--stride", metavar="S", help="S, or H,W (default: the kernel size, as in PyTorch).")
@click.option("--padding", default="0", show_default=True, metavar="P")
@click.option("--dilation", default="1", show_default=True, metavar="D", help="Max pooling only.")
@click.option("--ceil-mode", is_flag=True, help="Round the output size up (PyTorch's ceil_mode).")
@TABLE_OR_JSON
@refusals
def example_pool(matrix_text, op, kernel_size, stride, padding, dilation, ceil_mode, form) -> None:
    """Max or average pooling of a matrix (the notes' 6×6 example: --kernel-size 2 --stride 2)."""
    from ..teaching import example

    _show_example(example.pool(example.matrix(matrix_text), op=op, kernel_size=_axes(kernel_size), stride=_axes(stride),
                               padding=_axes(padding), dilation=_axes(dilation), ceil_mode=ceil_mode), form)


@example_group.command("conv")
@MATRIX
@click.option("--weight", "--kernel", "weight", required=True, metavar='"1 0; 0 -1"', help="The kernel, as a matrix.")
@click.option("--stride", default="1", show_default=True, metavar="S")
@click.option("--padding", default="0", show_default=True, metavar="P")
@click.option("--dilation", default="1", show_default=True, metavar="D")
@click.option("--bias", default="0", show_default=True, metavar="B", help="Added to every output.")
@TABLE_OR_JSON
@refusals
def example_conv(matrix_text, weight, stride, padding, dilation, bias, form) -> None:
    """A convolution of a matrix with one kernel (PyTorch's conv2d, one channel in and out)."""
    from ..teaching import example

    _show_example(example.conv(example.matrix(matrix_text), example.matrix(weight, "--weight"), stride=_axes(stride),
                               padding=_axes(padding), dilation=_axes(dilation), bias=_number(bias, "--bias")), form)


@example_group.command("dropout")
@MATRIX
@click.option("--p", "p", default="0.5", show_default=True, metavar="P", help="The probability to drop a value (PyTorch's p).")
@click.option("--mask", metavar='"1 0 1 0 1"', help="Which values are kept (1) and dropped (0); default: drawn with --seed.")
@click.option("--seed", type=int, default=0, show_default=True, help="The draw of the mask when none is given.")
@TABLE_OR_JSON
@refusals
def example_dropout(matrix_text, p, mask, seed, form) -> None:
    """Dropout of a vector or matrix in training, as PyTorch does it (the notes' example: --mask "1 0 1 0 1")."""
    from ..teaching import example

    given = example.matrix(mask, "--mask") if mask is not None else None
    _show_example(example.dropout(example.matrix(matrix_text), p=_number(p, "--p"), mask=given, seed=seed), form)


@main.command("solve")
@SPEC
@click.option("--for", "name", required=True, metavar="NAME", help="The unknown: a free size (H) or a [vars] name (p, k).")
@click.option("--where", "where", multiple=True, required=True, metavar="KEY=VALUE",
              help='A claim that must hold, keyed as in [expect]: pool3.output=256×6×6 (repeatable: all must hold).')
@SETS
@click.option("--range", "bound", default="0..1024", show_default=True, metavar="LOW..HIGH", help="The values searched.")
@TABLE_OR_JSON
@refusals
def solve_command(spec: str, name: str, where, sets, bound: str, form: str) -> None:
    """Every whole value of NAME for which the claims hold, as ranges; exit 1 when there is none."""
    from ..teaching.solve import solve

    low, dots, high = bound.partition("..")
    if not dots or not _digits(low.strip()) or not _digits(high.strip()):
        raise click.BadParameter(f"{bound!r} is not LOW..HIGH", param_hint="--range")
    claims = {}
    for item in where:
        key, equals, value = item.rpartition("=")  # a value has no '='; a memory key may (@B=32)
        if not equals or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--where")
        claims[key.strip()] = value.strip()
    found = solve(load(spec), name, claims, parse_sets(sets), (int(low), int(high)))
    if form == "json":
        click.echo(json.dumps(found.to_dict()))
    else:
        _console().print(found.text())
    if not found.ranges:
        sys.exit(1)



@main.command("draw")
@SPEC
@SETS
@click.option("--output", "-o", "output", required=True, metavar="FILE", help="net.svg, net.png or net.pdf.")
@click.option("--depth", type=click.IntRange(min=1), metavar="N", help="Fold the layers under each dotted name of N parts into one box.")
@FORCE
@refusals
def draw_command(spec: str, sets, output: str, depth, force: bool) -> None:
    """Draw SPEC: a box per tensor, sized by its shape, output shapes on the arrows (needs matplotlib)."""
    from ..render.draw import draw

    _may_write(Path(output), force, spec)
    click.echo(f"wrote {draw(analyze(load(spec), **parse_sets(sets)), output, depth)}", err=True)


@main.command("import")
@click.argument("target", metavar="FILE.py:NAME|module:NAME|hf:PATH")
@click.option("--input", "input_shape", metavar="SHAPE",
              help="One sample's shape, no batch axis: 3,224,224, or 3,H,W for formulas in H and W "
                   "(hf:PATH: T for token ids, or the config's image size, unless given).")
@click.option("--args", metavar="JSON", help='Arguments when NAME is a class or a function that returns a module: \'{"num_classes": 10}\' or \'[10]\'.')
@click.option("--class", "class_name", metavar="NAME", help="hf:PATH: the transformers class to build (default: the config's architectures[0]).")
@click.option("--name", "model_name", metavar="NAME", help="The model's name in the spec (default: the class name).")
@click.option("--capture", type=click.Choice(["auto", "fx", "export"]), default="auto", show_default=True,
              help="How to record the model: torch.fx, torch.export (non-strict), or torch.fx then torch.export where it fails.")
@click.option("--output", "-o", default="-", show_default=True, help="Where to write the spec ('-': standard output).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--flat", is_flag=True, help="Every layer on its own: no blocks recovered from repeated submodules.")
@refusals
def import_command(target: str, input_shape, args, class_name, model_name, capture: str, output: str, force: bool, flat: bool) -> None:
    """Write the spec of a PyTorch module, captured with torch.fx or torch.export.

    This imports FILE.py (or the module) and builds NAME: it runs that code, as any
    import does. Import only code you would run. hf:PATH builds a transformers model
    from a config.json alone (no weights, nothing downloaded). Every operation archcalc
    cannot map is listed with its source line, and nothing is written; the spec written
    is read back and analysed first (exit 2 if archcalc refuses it). Submodules that
    repeat with the same layers and wiring become blocks (checked to give the same rows
    as flat layers).
    """
    from ..backends import importer
    from ..backends.importer.hf import default_input

    module = importer.load_target(target, args, class_name)
    if input_shape is not None:
        shape = importer.parse_input(input_shape)
    else:
        shape = default_input(module)
        if shape is None:
            raise click.UsageError("Missing option '--input' (one sample's shape, e.g. 3,224,224).")
    text = importer.import_module(module, shape, model_name, blocks=not flat, capture=capture)
    _write_or_echo(text, output, force, target.rpartition(":")[0] or target)


def _write_or_echo(text: str, output: str, force: bool, source: str) -> None:
    """Text to a file (or standard output for '-'); never over `source`, an existing file only with --force."""
    if output == "-":
        click.echo(text, nl=False)
        return
    _write(Path(output), text, force, source)
    click.echo(f"wrote {visible(output)}", err=True)


def _onnx(spec: str, sets, output: str, force: bool) -> None:
    from ..backends.onnx import export

    if output == "-" or not output.endswith(".onnx"):
        raise click.BadParameter("ONNX goes to a file: -o NAME.onnx", param_hint="--output")
    exported = export(load(spec), **parse_sets(sets))
    _write(Path(output), exported.data, force, spec)
    axes = ", ".join(f"{axis}: {name}" for axis, name in exported.dynamic.items())
    click.echo(f"wrote {output} (dynamic axes {axes}; traced at {'×'.join(map(str, exported.traced))}; "
               f"checked with {exported.checked_with})", err=True)
