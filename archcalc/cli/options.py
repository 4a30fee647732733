"""The flags several commands share, declared once here and read once into one frozen `Options`.

A command lists the flags it takes; `shared` adds them to it and hands its body one `Options`:

    @click.command()
    @shared(*ANALYSIS, BATCH, TABLE_OR_JSON, *TRAINING)
    @click.option("--explain", is_flag=True)     # a flag of this command alone stays a parameter of its own
    def show(options: Options, explain: bool) -> None:
        report = options.report()

Adding a shared flag (say `--gpus N` for show and memory) touches this module only:
  1. a field on `Options` named as click names the flag, its default what the library assumes without it:
     `gpus: int | None = keyword()` where analyze() takes it as a keyword (Options.step passes it on),
     a plain default where it is for the command itself (as `form`);
  2. its `Flag` below, and the flag in the tuple of the commands that take it: `TRAINING` for show and
     memory (`ANALYSIS` for every command that analyses a training step).
A command without the flag keeps the field's default, so what it asks of the library is unchanged; a
flag read from others (as --precision into dtype and autocast) is read in `Options.read`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import click

from ..core.dtypes import PRECISIONS, Device, DType, Optimizer, precision_autocast, precision_dtype
from ..core.errors import SpecError
from ..core.parallel import Strategy
from ..report import Report, analyze
from ..spec.read import Spec, load
from .output import Files


class Flag:
    """One command-line parameter, declared once; each command it decorates gets a click parameter of its own.

    `name` is the keyword click passes it as; `but(...)` is the same flag with another help, type or default."""

    def __init__(self, *decls: str, argument: bool = False, **attrs):
        self.decls, self.argument, self.attrs = decls, argument, attrs
        self.name = (click.Argument if argument else click.Option)(list(decls), **attrs).name

    def __call__(self, command: Callable) -> Callable:
        return (click.argument if self.argument else click.option)(*self.decls, **self.attrs)(command)

    def but(self, **attrs) -> Flag:
        return Flag(*self.decls, argument=self.argument, **self.attrs | attrs)


def bundle(keyword: str, build: Callable, *flags: Flag) -> Callable:
    """A decorator: add `flags` to a command, and hand its body `build(**their values)` as the argument `keyword`
    (its other parameters are passed on as they are)."""

    def decorate(body: Callable) -> Callable:
        names = [flag.name for flag in flags]

        @functools.wraps(body)
        def command(**given):
            own = {name: given.pop(name) for name in names}
            return body(**given, **{keyword: build(**own)})

        for flag in reversed(flags):
            command = flag(command)
        return command

    return decorate


def shared(*flags: Flag) -> Callable:
    """A decorator: add the shared `flags` to a command and hand its body the `Options` read from them, as `options`."""
    return bundle("options", Options.read, *flags)


def keyword(default=None):
    """An Options field that analyze() takes as a keyword of the same name (Options.step)."""
    return dataclasses.field(default=default, metadata={"analyze": True})


@dataclass(frozen=True)
class Options:
    """What the shared flags ask for, read once: the spec and its values, the training step, the output."""

    spec: str = ""
    sets: tuple[str, ...] = ()  # --set NAME=VALUE, as given (read into `values` on first use, after the spec)
    batch: str | int | None = keyword()
    dtype: str | None = keyword()  # the parameters' dtype: --dtype, or the one --precision stands for
    autocast: str | None = keyword()  # what the step computes in under --precision X-mixed
    optimizer: str = keyword(Optimizer.sgd.value)
    device: str = keyword(Device.cpu.value)
    gpus: int | None = keyword()  # over many GPUs (archcalc/core/parallel.py's Layout): the world size
    strategy: str | None = keyword()
    tp: int | None = keyword()
    prompt: int | None = keyword()  # generation with a KV cache (archcalc/spec/generate.py), over the spec's [generate]
    new_tokens: int | None = keyword()
    cache: str | None = keyword()
    logits: str | None = keyword()
    # fine-tuning (over the spec's [finetune]; archcalc/spec/finetune.py)
    freeze: tuple[str, ...] | None = keyword()
    lora_rank: int | None = keyword()
    lora_alpha: float | None = keyword()
    lora_dropout: float | None = keyword()
    lora_targets: tuple[str, ...] | None = keyword()
    base_dtype: str | None = keyword()
    course: bool = False
    form: str = "table"  # --format
    output: str | None = None
    force: bool = False

    @classmethod
    def read(cls, precision: str | None = None, dtype: str | None = None, **flags) -> Options:
        """The options of one command line. Lightning's --precision names stand for a dtype and an autocast;
        one with a --dtype is refused here, before any spec is read."""
        for name in ("freeze", "lora_targets"):  # a repeatable flag not given: the spec's (None), not an empty list
            if name in flags:
                flags[name] = tuple(part for item in flags[name] for part in item.split(",") if part) or None
        return cls(dtype=precision_dtype(precision, dtype), autocast=precision_autocast(precision), **flags)

    def step(self) -> dict:
        """analyze()'s keywords for the training step these options describe."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("analyze")}

    @cached_property
    def values(self) -> dict[str, str]:
        """The spec's names given on the command line: --set NAME=VALUE."""
        values = {}
        for item in self.sets:
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
            values[name.strip()] = value.strip()
        taken = sorted(set(values) & ({"spec"} | set(self.step())))
        if taken:
            raise click.BadParameter(f"{taken[0]!r} is an option, not a name of the spec: give it with its own flag",
                                     param_hint="--set")
        return values

    def load(self) -> Spec:
        """The spec, read."""
        return load(self.spec)

    def report(self, spec: Spec | None = None) -> Report:
        """The one library call most commands make: the spec (read here unless given) analysed for this step."""
        if self.gpus is not None and self.strategy is None and self.tp is None:
            raise SpecError(f"--gpus {self.gpus} needs a layout: --strategy (and --tp)",
                            "memory --budget SIZE --gpus N lists the layouts that fit", where="--gpus")
        report = analyze(self.load() if spec is None else spec, **self.step(), **self.values)
        return dataclasses.replace(report, course=True) if self.course else report

    def files(self) -> Files:
        """Where the command may write: never over the spec, an existing file only with --force."""
        return Files(self.spec, self.force)


def digits(text: str) -> bool:
    """A whole number int() reads: ASCII digits only ('²' is a digit to str.isdigit), at most 18 of them."""
    return text.isascii() and text.isdigit() and len(text) <= 18


# The flags; click makes a new parameter at each use, so one declaration serves every command.
SPEC = Flag("spec", argument=True, metavar="SPEC")
SETS = Flag("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Give a value to a name of the spec (repeatable).")
DTYPE = Flag("--dtype", type=click.Choice([d.value for d in DType]),
             help="Parameters and compute in this dtype, the spec's overridden (--precision D-true; autocast: X-mixed).")
OPTIMIZER = Flag("--optimizer", type=click.Choice([o.value for o in Optimizer]), default="sgd", show_default=True,
                 help="Optimizer state to count: sgd none, momentum 1, adam 2 copies of the parameters.")
DEVICE = Flag("--device", type=click.Choice([d.value for d in Device]), default="cpu", show_default=True,
              help="Where the step runs (dropout masks: the dtype's size on cpu, 1 byte on cuda).")
PRECISION = Flag("--precision", type=click.Choice(list(PRECISIONS)),
                 help="Lightning's names: 32-true (default), 64-true, bf16-true, 16-true; bf16-mixed, 16-mixed (autocast).")
COURSE = Flag("--course", is_flag=True, help="Also the course's memory formula M + B·m·L (always on the course's own specs).")
BATCH = Flag("--batch", "-b", metavar="B", help="Batch size (default: the symbol B).")
TABLE_OR_JSON = Flag("--format", "-f", "form", type=click.Choice(["table", "json"]), default="table", show_default=True)
OUTPUT = Flag("--output", "-o", "output", default="-", show_default=True, metavar="FILE",
              help="The file to write; - for standard output.")
FORCE = Flag("--force", is_flag=True, help="Write over files that already exist.")

GPUS = Flag("--gpus", type=click.IntRange(min=1), metavar="N",
            help="The step over N GPUs (with --strategy): its memory is one GPU's; memory --budget lists the layouts that fit.")
STRATEGY = Flag("--strategy", type=click.Choice([s.value for s in Strategy]),
                help="How the GPUs share the step: ddp, zero1 (optimizer state sharded), fsdp (FSDP2, everything "
                     "sharded), fsdp-no-reshard, tp (tensor parallel in groups of --tp K, the groups data parallel).")
TP = Flag("--tp", type=click.IntRange(min=1), metavar="K",
          help="Tensor parallel within groups of K GPUs (attention heads and MLP columns split); the rest data parallel.")
PARALLEL = (GPUS, STRATEGY, TP)  # the layout over many GPUs (show, memory)

PROMPT = Flag("--prompt", type=click.IntRange(min=1), metavar="N",
              help="Generation with a KV cache: a prompt of N tokens (sets the sequence length), then --new-tokens.")
NEW_TOKENS = Flag("--new-tokens", type=click.IntRange(min=1), metavar="M", help="Generation: M tokens, one decode step each.")
CACHE = Flag("--cache", type=click.Choice(["dynamic", "static"]),
             help="Generation: transformers' DynamicCache (grown by cat; the default) or StaticCache (preallocated).")
LOGITS = Flag("--logits", type=click.Choice(["last", "all"]),
              help="Generation: the last position's logits (as generate computes them; the default) or every position's.")

FREEZE = Flag("--freeze", multiple=True, metavar="PATTERN",
               help="Freeze the layers whose path matches (a glob; '*' all; repeatable or comma-separated).")
LORA_RANK = Flag("--lora-rank", type=click.IntRange(1), metavar="R", help="LoRA adapters of this rank (peft's r).")
LORA_ALPHA = Flag("--lora-alpha", type=float, metavar="A", help="LoRA's alpha (scaling alpha/rank; default 8).")
LORA_DROPOUT = Flag("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), metavar="P", help="LoRA's dropout.")
LORA_TARGETS = Flag("--lora-targets", multiple=True, metavar="NAMES",
                    help="The layers LoRA adapts, as peft's target_modules (c_attn,c_proj; repeatable).")
BASE_DTYPE = Flag("--base-dtype", type=click.Choice(["float32", "bfloat16", "float16", "int8", "nf4", "fp4"]),
                  help="The frozen base's storage: a 16-bit dtype, or bitsandbytes' int8, nf4, fp4.")

ANALYSIS = (SPEC, SETS, DTYPE, OPTIMIZER, DEVICE)  # every command that analyses a spec's training step
FINETUNE = (FREEZE, LORA_RANK, LORA_ALPHA, LORA_DROPOUT, LORA_TARGETS, BASE_DTYPE)  # over the spec's [finetune]
GENERATION = (PROMPT, NEW_TOKENS, CACHE, LOGITS)  # generation with a KV cache: show and memory
TRAINING = (COURSE, PRECISION, *FINETUNE)  # the training step's flags that show and memory take (and check, quiz do not)
