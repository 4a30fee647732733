"""Time a training step and an inference step of a spec's network on a device, against its analytic FLOPs.

What one step is, written the way a training script writes it:
  train      optimizer.zero_grad(); loss = loss_fn(model(x), target); loss.backward(); optimizer.step()
  inference  model(x) in eval mode, under torch.inference_mode()
The loss is the one archcalc's memory timeline simulates (archcalc.timeline.loss_of): cross-entropy
against random int64 classes where the output can be class scores (per pixel for [C, H, W], per token
for [T, V]); a language model (token ids in, [T, V] out) on its own ids, shifted, as Hugging Face's
causal LM loss; else the mean squared error against a random target of the output's shape (a
generator's image, a network ending in an element-wise function or in one value).

`dtype` D means D-true, as on `show` and `memory`: the parameters and the input
are cast to it ("pure" precision). Mixed precision is asked for by name
(--precision bf16-mixed, 16-mixed) or with `amp`: parameters and optimizer state
stay float32 and the step runs under torch.autocast in the float16 or bfloat16
dtype (float16 with a GradScaler), as one trains in practice.

Warm-up steps (which also compile, with `compile`) are not timed. The timed steps
run back to back, bracketed by one pair of CUDA events on a GPU (by perf_counter
on the CPU, where every op has finished when it returns): ms per step is the
whole loop's time over its steps, so anything the harness did between steps
would show (benchmarks/bench_harness.py compares it with a hand-written loop).

Achieved TFLOP/s use the analytic FLOPs of archcalc's report, per step: the
forward for inference, `training_flops` for training (forward and backward as
FlopCounterMode counts them: the backward twice the forward, except that the
first layer computes no gradient for the input; for a grouped convolution it
counts the weight gradient `groups` times, an overstatement of the real work).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..core import num
from ..core.dtypes import Device, DType, Optimizer, precision_autocast, precision_dtype
from ..core.errors import ArchcalcError
from ..memory.timeline import loss_of
from ..report import Report
from .build import concrete, dtype_of, fits, network, require, sample, version
from .peaks import peak

MIXED = (DType.float16, DType.bfloat16)


class Mode(StrEnum):
    """The two steps bench times."""

    train = "train"
    inference = "inference"


@dataclass(frozen=True)
class Options:
    device: str | None = None  # None: cuda if there is one, else cpu
    batch: int = 32
    dtype: DType = DType.float32
    amp: bool = False  # float16/bfloat16: autocast with float32 parameters (X-mixed); False: cast the parameters (X-true)
    compile: bool = False
    channels_last: bool = False
    tf32: bool = False  # float32 matmuls on tensor cores too (cuDNN convolutions use them by default)
    optimizer: Optimizer = Optimizer.sgd  # none, sgd, momentum (0.9), adam
    steps: int = 50
    warmup: int | None = None  # None: min(5, steps)
    peak_tflops: float | None = None  # overrides the table of peaks

    def __post_init__(self):  # names given as strings are read into their enums (and refused if unknown)
        object.__setattr__(self, "dtype", DType(self.dtype))
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        for name, low in (("batch", 1), ("steps", 1), ("warmup", 0)):
            value = getattr(self, name)
            if not (value is None and name == "warmup") and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"Options({name}={value!r}): {name} must be a whole number >= {low}")
        peak = self.peak_tflops
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak < float("inf")):
            raise ValueError(f"Options(peak_tflops={peak!r}): peak_tflops must be a finite number of TFLOP/s above 0, or None")
        if self.device is not None and not isinstance(self.device, str):
            raise TypeError(f"Options(device=...): device must be a str (cpu, cuda, cuda:1) or None, got {type(self.device).__name__}")

    @property
    def autocast(self) -> bool:
        """Mixed precision: a float16 or bfloat16 step under torch.autocast, the parameters in float32."""
        return self.dtype in MIXED and self.amp

    @classmethod
    def of(cls, report: Report, *, precision: str | None = None, dtype: str | None = None, **fields) -> Options:
        """The options `bench` is asked for: `precision` in Lightning's names (X-mixed: autocast in X, float32
        parameters; X-true: everything in X) stands for `dtype` and `amp`; `dtype` D alone is D-true, as on show
        and memory; the dtype is the spec's unless given."""
        if precision is not None:
            autocast = precision_autocast(precision)
            dtype, fields = autocast or precision_dtype(precision, dtype), fields | {"amp": autocast is not None}
        return cls(dtype=dtype or str(report.dtype), **fields)


@dataclass(frozen=True)
class Timing:
    mode: Mode
    steps: int
    seconds: float  # the timed loop, all steps
    batch: int
    flops: int  # analytic FLOPs of one step (the whole batch)

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.seconds / self.steps

    @property
    def images_per_s(self) -> float:
        return self.batch * self.steps / self.seconds

    @property
    def tflops(self) -> float:
        return self.flops * self.steps / self.seconds / 1e12


@dataclass(frozen=True)
class Result:
    model: str
    device: str  # its name: "NVIDIA H200", "CPU (2 threads)"
    torch: str
    options: Options
    precision: str  # what the peak is taken for: float32, tf32, bfloat16...
    train: Timing
    inference: Timing
    peak_tflops: float | None
    peak_source: str | None  # the datasheet's name, "--peak-tflops", or None
    memory_measured: int | None  # torch.cuda.max_memory_allocated over the timed training steps
    memory_predicted: int | None  # archcalc's training_bytes, where its model applies (not under autocast)

    def share(self, timing: Timing) -> float | None:
        """Achieved over peak, in percent."""
        return 100 * timing.tflops / self.peak_tflops if self.peak_tflops else None

    def to_dict(self) -> dict:
        def timing(t: Timing) -> dict:
            return {
                "ms_per_step": t.ms_per_step, "images_per_s": t.images_per_s, "flops_per_step": t.flops,
                "tflops": t.tflops, "share_of_peak": self.share(t), "steps": t.steps, "seconds": t.seconds,
            }

        return {
            "model": self.model, "device": self.device, "torch": self.torch, "options": dataclasses.asdict(self.options),
            "precision": self.precision, "peak_tflops": self.peak_tflops, "peak_source": self.peak_source,
            "train": timing(self.train), "inference": timing(self.inference),
            "memory": {"measured_bytes": self.memory_measured, "predicted_bytes": self.memory_predicted},
        }


Progress = Callable[[str, int, int], None]  # (phase, steps done, steps in all)


def bench(report: Report, options: Options, progress: Progress | None = None) -> Result:
    """Warm up, then time `options.steps` training steps and as many inference steps."""
    if not isinstance(options, Options):
        raise TypeError(f"bench(report, options): options must be an archcalc.torch.Options, got {type(options).__name__}")
    torch = require()
    report = concrete(report)
    progress = progress or (lambda phase, done, total: None)
    device = _device(options.device)
    warmup = min(5, options.steps) if options.warmup is None else options.warmup
    options = dataclasses.replace(options, device=device.type, warmup=warmup)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = tf32 or options.tf32
        precision = _precision(options, device)
        fits(report, "bench", batch=options.batch, device=str(device))
        run = Run.prepare(report, options, device)
        train = run.time(Mode.train, num.normal(report.totals["training_flops"] * options.batch), progress)
        inference = run.time(Mode.inference, num.normal(report.totals["flops"] * options.batch), progress)
    except (RuntimeError, ValueError) as error:  # torch's own refusals: out of memory, batchnorm on one sample...
        raise ArchcalcError(f"torch stopped the benchmark: {str(error).splitlines()[0]}") from None
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({threads} thread{'s' if threads > 1 else ''})"
    figure = (options.peak_tflops, "--peak-tflops") if options.peak_tflops else peak(name, precision)
    return Result(
        model=report.model, device=name, torch=version(), options=options, precision=precision,
        train=train, inference=inference,
        peak_tflops=figure[0] if figure else None, peak_source=figure[1] if figure else None,
        memory_measured=run.peak_memory, memory_predicted=_predicted(report, options),
    )


@dataclass
class Run:
    """The model, its optimizer, one batch and the two steps, ready to time."""

    torch: object
    device: object
    model: object
    train_step: Callable[[], None]
    inference_step: Callable[[], None]
    options: Options
    peak_memory: int | None = None

    @classmethod
    def prepare(cls, report: Report, options: Options, device) -> Run:
        torch = require()
        dtype = dtype_of(options.dtype)
        mixed = options.autocast
        torch.manual_seed(0)
        model = network(report).to(device=device, dtype=torch.float32 if mixed else dtype)
        x = sample(report, options.batch, torch.float32 if mixed else dtype, device=device)
        if options.channels_last:
            formats = {4: torch.channels_last, 5: torch.channels_last_3d}
            if x.dim() not in formats:
                raise ArchcalcError(f"--channels-last needs an image input [C, H, W] or a volume [C, D, H, W]; this one is {list(report.input)}")
            model = model.to(memory_format=formats[x.dim()])
            x = x.contiguous(memory_format=formats[x.dim()])
        loss_fn, target = _loss(report, options.batch, device, x.dtype)
        target = x if target is None else target
        optimizer = _optimizer(torch, options.optimizer, model.parameters())
        compiled = torch.compile(model) if options.compile else model
        autocast = torch.autocast(device.type, dtype=dtype) if mixed else contextlib.nullcontext()
        # a GradScaler only where it does something (float16 autocast): a float32 step is exactly the usual one
        scaler = torch.amp.GradScaler(device.type) if mixed and options.dtype == DType.float16 else None

        def train_step() -> None:
            if optimizer:
                optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(compiled(x), target)
            if scaler:
                scaler.scale(loss).backward()
                if optimizer:
                    scaler.step(optimizer)
                    scaler.update()
                return
            loss.backward()
            if optimizer:
                optimizer.step()

        def inference_step() -> None:
            with torch.inference_mode(), autocast:
                compiled(x)

        return cls(torch, device, model, train_step, inference_step, options)

    def time(self, mode: Mode, flops: int, progress: Progress) -> Timing:
        torch, options = self.torch, self.options
        step = self.train_step if mode == Mode.train else self.inference_step
        self.model.train(mode == Mode.train)
        cuda = self.device.type == "cuda"
        for i in range(options.warmup):
            step()
            progress(f"{mode}: warm-up", i + 1, options.warmup)
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            started = time.perf_counter()
        for i in range(options.steps):
            step()
            progress(mode, i + 1, options.steps)
        if cuda:
            end.record()
            torch.cuda.synchronize(self.device)
            seconds = start.elapsed_time(end) / 1000
            if mode == Mode.train:
                self.peak_memory = torch.cuda.max_memory_allocated(self.device)
        else:
            seconds = time.perf_counter() - started
        return Timing(mode, options.steps, seconds, options.batch, flops)


def _device(name: str | None):
    torch = require()
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ArchcalcError(f"no CUDA device here (torch {torch.__version__})\n  hint: use --device cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ArchcalcError(f"unknown device {name!r}: {str(error).splitlines()[0]}") from None
    if device.type not in ("cpu", "cuda"):
        raise ArchcalcError(f"bench runs on cpu or cuda, not {device.type!r}"
                            + ("\n  hint: the meta device computes nothing, so there is nothing to time" if device.type == "meta" else ""))
    return device


def _precision(options: Options, device) -> str:
    """The peak to compare with: the compute dtype, float32 on tensor cores (tf32) where torch allows it."""
    torch = require()
    if options.dtype != DType.float32 or device.type != "cuda":
        return options.dtype
    return "tf32" if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32 else "float32"


def summed_losses(losses: dict):
    """The loss of a model with several outputs ([model] outputs, a dict): each output's own (`losses`: name ->
    (loss function, target)), added up (the timeline's memory/timeline/loss.py Losses)."""
    def summed(ys, targets):
        parts = [losses[name][0](y, losses[name][1]) for name, y in ys.items()]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total
    return summed


def _loss(report: Report, batch: int, device, dtype, row=None):
    """The loss function and its random target (archcalc.timeline.loss_of says which); with several outputs, the sum
    of each one's (summed_losses), its target None."""
    torch = require()
    functional = torch.nn.functional
    if row is None and len(report.output_rows) > 1:
        return summed_losses({r.name: _loss(report, batch, device, dtype, r) for r in report.output_rows}), None
    row = report.output_rows[0] if row is None else row
    out = tuple(map(int, row.output))
    loss = loss_of(report, row)
    if loss.kind == "mse":
        return functional.mse_loss, torch.randn(batch, *out, device=device, dtype=dtype)
    if loss.kind == "causal_lm":  # labels = the input ids (None: bench passes the batch), as Hugging Face's loss
        def causal_lm(logits, ids):  # transformers' ForCausalLMLoss, its padded labels held until it returns
            logits = logits.float()  # first, as transformers does: 16-bit logits are gone once copied
            labels = functional.pad(ids, (0, 1), value=-100)
            shifted = labels[..., 1:].contiguous()
            return functional.cross_entropy(logits.view(-1, logits.size(-1)), shifted.view(-1), ignore_index=-100)
        return causal_lm, None
    if loss.axis == 0:  # classes on the channels: per sample, or per pixel of [C, H, W]
        return functional.cross_entropy, torch.randint(out[0], (batch, *out[1:]), device=device)
    # per token: [B, T, V] scores seen as [B·T, V], as language models compute their loss
    return (lambda y, target: functional.cross_entropy(y.flatten(0, -2), target.flatten())), \
        torch.randint(out[-1], (batch, *out[:-1]), device=device)


def _optimizer(torch, kind: Optimizer, parameters):
    if kind == Optimizer.none:
        return None
    if kind == Optimizer.adam:
        return torch.optim.Adam(parameters, lr=1e-4)
    if kind == Optimizer.adamw:
        return torch.optim.AdamW(parameters, lr=1e-4)
    return torch.optim.SGD(parameters, lr=0.01, momentum=0.9 if kind == Optimizer.momentum else 0)


def _predicted(report: Report, options: Options) -> int | None:
    """archcalc's training bytes for this batch, dtype, optimizer and device (under autocast: float32 parameters)."""
    device = Device.cuda if options.device == "cuda" else Device.cpu
    dtype, autocast = (DType.float32, options.dtype) if options.autocast else (options.dtype, None)
    at = dataclasses.replace(report, batch=options.batch, dtype=dtype, optimizer=options.optimizer, device=device,
                             autocast=autocast)
    value = at.memory.training.at(options.batch)
    return int(value) if num.is_concrete(value) else None
