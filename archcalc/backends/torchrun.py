"""`archcalc bench SPEC --nproc N --strategy S`: the training step on N processes under torchrun, each rank's peak
beside archcalc's prediction for that rank.

`launch` starts `python -m torch.distributed.run --standalone --nproc-per-node N -m archcalc.backends.torchrun JOB`
and waits for it; every rank (`main`, this module run by torchrun) reads the process group from the environment
torchrun sets (archcalc/backends/distributed.py's `init`: gloo on the CPU, NCCL on CUDA), builds the spec's network,
lays it out and times `steps` training steps after `warmup`, then writes what it saw to a file of its own:

    ddp              DistributedDataParallel (torch's defaults: 25 MiB buckets, no bucket views)
    zero1            DistributedDataParallel, and ZeroRedundancyOptimizer around the optimizer
    fsdp             FSDP2: fully_shard on each use of the spec's blocks (GPT-2's h.0, h.1, ...), then the model
    fsdp-no-reshard  the same, reshard_after_forward=False
    tp               Megatron's plan (distributed.tensor_parallel) in groups of `tp` ranks; the groups' gradients
                     all-reduced after backward (and averaged)

The batch is each rank's (a tensor-parallel group shares one); each data-parallel group draws its own samples. A
peak is measured where torch counts one (CUDA: max_memory_allocated over the timed steps); on the CPU only the
prediction is shown. Samples per second: the batch times the data-parallel groups, over the slowest rank's time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import num
from ..core.errors import ArchcalcError
from ..memory import timeline
from ..report import Report, analyze
from ..spec.read import load
from .bench import _loss, _optimizer
from .build import dtype_of, network, parts, require, sample, version


@dataclass(frozen=True)
class Job:
    """What every rank runs: the spec and its values, the layout, the step and how many to time."""

    spec: str
    values: dict
    strategy: str
    tp: int | None = None
    batch: int = 8  # each rank's (each tensor-parallel group's)
    optimizer: str = "adam"
    dtype: str | None = None
    device: str = "cpu"
    steps: int = 5
    warmup: int = 2

    def report(self, gpus: int) -> Report:
        """The spec analysed for this job over `gpus` ranks."""
        options = {"batch": self.batch, "optimizer": self.optimizer, "device": "cuda" if self.device.startswith("cuda") else "cpu"}
        options |= {"dtype": self.dtype} if self.dtype else {}
        return analyze(load(self.spec), gpus=gpus, strategy=self.strategy, tp=self.tp, **options, **self.values)


@dataclass(frozen=True)
class Rank:
    """What one rank saw: its timed steps' seconds and its measured peak (None on the CPU)."""

    rank: int
    seconds: float
    measured: int | None
    device: str


@dataclass(frozen=True)
class Result:
    """Every rank's, in rank order, with the prediction for each."""

    model: str
    job: Job
    layout: dict  # memory.parallel's echo of the layout
    ranks: tuple[Rank, ...]
    predicted: tuple[int | None, ...]  # archcalc's peak for each rank
    torch: str

    @property
    def seconds(self) -> float:
        """The slowest rank's time for the timed steps."""
        return max(r.seconds for r in self.ranks)

    @property
    def samples_per_s(self) -> float:
        return self.job.batch * self.layout["dp"] * self.job.steps / self.seconds

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.ranks[0].device, "torch": self.torch, "parallel": self.layout,
                "batch_per_gpu": self.job.batch, "steps": self.job.steps, "warmup": self.job.warmup,
                "optimizer": self.job.optimizer, "ms_per_step": 1000 * self.seconds / self.job.steps,
                "samples_per_s": self.samples_per_s,
                "ranks": [{"rank": r.rank, "ms_per_step": 1000 * r.seconds / self.job.steps, "measured_peak_bytes": r.measured,
                           "predicted_peak_bytes": p} for r, p in zip(self.ranks, self.predicted)]}


def launch(job: Job, nproc: int, timeout: float | None = None) -> Result:
    """`job` on `nproc` ranks under torchrun (see the module); raises ArchcalcError if a rank fails."""
    report = job.report(nproc)
    expected = predicted(report, nproc)  # a layout the network cannot take is refused here, before torchrun starts
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "archcalc.backends.torchrun", json.dumps(dataclasses.asdict(job)), out]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ArchcalcError(f"torchrun did not finish within {timeout:g} s") from None
        if done.returncode != 0:
            errors = sorted(Path(out).glob("error.*"))
            cause = errors[0].read_text() if errors else "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
            raise ArchcalcError(f"torchrun exited with status {done.returncode}: {cause[:2000]}")
        ranks = tuple(Rank(**json.loads(Path(out, f"{rank}.json").read_text())) for rank in range(nproc))
    return Result(report.model, job, report.parallel.to_dict(), ranks, expected, version())


def predicted(report: Report, nproc: int) -> tuple[int | None, ...]:
    """archcalc's training peak of each rank at the report's batch (the ranks that hold the same, the same)."""
    batch = report.batch
    steps = timeline.simulate(report, batch)
    each = getattr(steps, "ranks", ()) or (steps,)
    layout = report.parallel
    values = [each[(rank // layout.tp) % len(each)].peak(batch) for rank in range(nproc)]
    return tuple(int(v) if num.is_concrete(v) else None for v in values)


# A rank's side (run by torchrun) -------------------------------------------------------------------------------

def laid_out(report: Report, model, device):
    """The model under the report's layout, its optimizer, and what runs after backward (tp's data-parallel groups)."""
    torch = require()
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    layout, kind = report.parallel, str(report.parallel.strategy)
    if kind == "tp":
        return _tensor_parallel(report, model, device)
    if kind in ("ddp", "zero1"):
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if kind == "ddp":
            return model, _optimizer(torch, report.optimizer, model.parameters()), None
        probe = _optimizer(torch, report.optimizer, [torch.nn.Parameter(torch.zeros(1))])
        if probe is None:
            return model, None, None
        return model, ZeroRedundancyOptimizer(model.parameters(), optimizer_class=type(probe), **probe.defaults), None
    from torch.distributed.fsdp import fully_shard

    for modules in _units(report, model):
        fully_shard(modules, reshard_after_forward=layout.reshard_after_forward)
    fully_shard(model)
    return model, _optimizer(torch, report.optimizer, model.parameters()), None


def _units(report: Report, model) -> list[list]:
    """FSDP2's units as module groups: the modules a unit's rows run (the built network calls a row's own modules,
    never a block's container, so a container's hooks would not fire: fully_shard takes the group instead)."""
    from ..memory.timeline.ranks import plan_of

    made = parts(report)
    groups = []
    for unit in plan_of(report).units:
        if unit.root or not unit.params:
            continue
        names = [n for part in made[unit.first:unit.stop] for n in part.names]
        groups.append([model.get_submodule(n) for n in names if any(True for _ in model.get_submodule(n).parameters())])
    return groups


def _tensor_parallel(report: Report, model, device):
    torch = require()
    from torch.distributed.device_mesh import init_device_mesh

    from .distributed import plan_of, tensor_parallel

    layout = report.parallel
    mesh = init_device_mesh(device.type, (layout.dp, layout.tp), mesh_dim_names=("dp", "tp"))
    tensor_parallel(model, mesh["tp"], plan_of(report, model, layout.tp))
    reduce = None
    if layout.dp > 1:
        group = mesh["dp"].get_group()

        def reduce():
            for p in model.parameters():
                if p.grad is not None:
                    local = p.grad.to_local()
                    torch.distributed.all_reduce(local, group=group)
                    local.div_(layout.dp)

    return model, _optimizer(torch, report.optimizer, model.parameters()), reduce


def run_rank(job: Job) -> Rank:
    """This rank's part of `job`: the process group from torchrun's environment, the step laid out and timed."""
    from .distributed import environment, init

    torch = require()
    env = environment()
    device = init("cuda" if job.device.startswith("cuda") else "cpu")
    report = job.report(env["world_size"])
    torch.manual_seed(0)
    model = network(report).to(device=device, dtype=dtype_of(report.dtype))
    model, optimizer, reduce = laid_out(report, model, device)
    torch.manual_seed(1 + env["rank"] // report.parallel.tp)  # each data-parallel group its own samples
    x = sample(report, job.batch, dtype_of(report.dtype), device=device)
    loss_fn, target = _loss(report, job.batch, device, x.dtype)
    target = x if target is None else target

    def step() -> None:
        if optimizer:
            optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        if reduce:
            reduce()
        if optimizer:
            optimizer.step()

    return _timed(torch, step, job, env["rank"], device)


def _timed(torch, step, job: Job, rank: int, device) -> Rank:
    cuda = device.type == "cuda"
    for _ in range(job.warmup):
        step()
    torch.distributed.barrier()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(job.steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    measured = torch.cuda.max_memory_allocated(device) if cuda else None
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({threads} thread{'s' if threads > 1 else ''})"
    return Rank(rank, seconds, measured, name)


def main(argv: list[str]) -> None:
    """torchrun's entry: JOB (JSON) and the folder each rank writes its result to."""
    torch = require()
    job, out = Job(**json.loads(argv[0])), Path(argv[1])
    try:
        rank = run_rank(job)
    except Exception as error:  # said by launch, the first rank's: torchrun's own report names no cause
        Path(out, f"error.{os.environ.get('RANK', '0')}").write_text(f"{type(error).__name__}: {error}".strip())
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    (out / f"{rank.rank}.json").write_text(json.dumps(dataclasses.asdict(rank)))


if __name__ == "__main__":
    main(sys.argv[1:])
