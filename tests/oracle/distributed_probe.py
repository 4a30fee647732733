"""The CPU oracle for data parallelism: a training step on every rank of a gloo process group, each rank's live storages.

`run_ranks(Run(...))` spawns `world` processes (torch.multiprocessing, gloo on 127.0.0.1 at a free port), and each
rank runs the step of timeline_probe on its own copy of the model under one layout:

    none             the model as it is (one process: `world` 1)
    ddp              DistributedDataParallel (bucket_cap_mb, gradient_as_bucket_view as given)
    zero1            DistributedDataParallel, and torch's ZeroRedundancyOptimizer around the optimizer
    fsdp             FSDP2: fully_shard on each module named in `units`, in order, then on the model (torch's
                     defaults: the units reshard after forward, the root does not)
    fsdp-no-reshard  the same with reshard_after_forward=False for all

Each rank counts live storages as timeline_probe.LiveStorages does, from the model's construction on (so that what
DDP and FSDP2 hold across steps, a bucket or a sharded parameter, counts from the step's start), with two
additions: FSDP2 frees a gathered parameter by resizing its storage to 0 bytes and gathers into the same storage
again (its alloc_storage and free_storage are wrapped to tell the tracker), and a DTensor counts by its local
tensor. The collectives each rank calls are counted from the same dispatch mode (c10d's ops), by phase: the bytes
of the tensors each all-reduces, all-gathers into (the output), reduce-scatters from (the input) or broadcasts.

Two warm-up steps (DDP rebuilds its buckets at the second forward), then the measured one. Only tests import this.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import socket
import tempfile
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils._pytree import tree_flatten

from .timeline_probe import LiveStorages, causal_lm_loss

COLLECTIVES = {  # c10d's op -> the collective it is, and which argument's bytes count
    "allreduce_": ("all_reduce", 0), "allreduce_coalesced_": ("all_reduce", 0),
    "_allgather_base_": ("all_gather", 0), "allgather_into_tensor_coalesced_": ("all_gather", 0),
    "allgather_": ("all_gather", 0),
    "_reduce_scatter_base_": ("reduce_scatter", 1), "reduce_scatter_tensor_coalesced_": ("reduce_scatter", 1),
    "reduce_scatter_": ("reduce_scatter", 1),
    "broadcast_": ("broadcast", 0),
}


@dataclass(frozen=True)
class Run:
    """What every rank runs: the model (each rank gets a pickled copy, the same weights), one rank's batch, the layout,
    the optimizer (`foreach` None: torch's default, the for-loop on the CPU) and the loss (timeline_probe's names;
    "model": the model's own, `model(input_ids=x, labels=x).loss`)."""

    model: torch.nn.Module
    x: torch.Tensor
    strategy: str = "ddp"
    world: int = 2
    optimizer: str = "adam"
    foreach: bool | None = None
    loss: str = "classes"
    bucket_view: bool = False
    bucket_cap_mb: float | None = None
    units: tuple[str, ...] = ()
    log: bool = False  # each rank's allocations and frees in the measured step, for a reader
    seconds: float = 120.0  # at most, for the run on every rank (run_ranks adds up the runs')


class RankStorages(LiveStorages):
    """LiveStorages that follows resized storages and DTensors' local tensors, and counts collectives."""

    def __init__(self):
        super().__init__()
        self.communication: dict[str, dict[str, int]] = {}
        self.log: list | None = None

    def track(self, t) -> None:
        super().track(t._local_tensor if isinstance(t, torch.Tensor) and type(t).__name__ == "DTensor" else t)

    def resized(self, storage, size: int) -> None:
        """A storage resized to `size` bytes (FSDP2's alloc_storage and free_storage)."""
        key = storage._cdata
        if key not in self.live:
            self.live[key] = 0
            weakref.finalize(storage, self._free, key)
        change = size - self.live[key]
        self.live[key] = size
        self.total += change
        self._note("resize", change)

    def _note(self, what: str, size: int) -> None:
        super()._note(what, size)
        if self.phase and self.log is not None:
            self.log.append((self.phase, what, size, self.total, self.op))

    op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "c10d" and self.phase:
            self._count(func, args)
        self.op = func.__name__
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.track(t)
        return out

    def _count(self, func, args) -> None:
        name = func.__name__.split(".")[0]
        if name not in COLLECTIVES:
            return
        kind, which = COLLECTIVES[name]
        tensors = [t for t in tree_flatten(args[which])[0] if isinstance(t, torch.Tensor)]
        size = sum(t.numel() * t.element_size() for t in tensors)
        phase = self.communication.setdefault(self.phase, {})
        phase[kind] = phase.get(kind, 0) + size


@contextlib.contextmanager
def resizes_told(mode: RankStorages):
    """FSDP2's storage resizes, told to `mode`."""
    from torch.distributed.fsdp._fully_shard import _fsdp_param

    alloc, free = _fsdp_param.alloc_storage, _fsdp_param.free_storage

    def alloc_storage(tensor):
        alloc(tensor)
        mode.resized(tensor.untyped_storage(), tensor.untyped_storage().nbytes())

    def free_storage(tensor):
        free(tensor)
        mode.resized(tensor.untyped_storage(), 0)

    _fsdp_param.alloc_storage, _fsdp_param.free_storage = alloc_storage, free_storage
    try:
        yield
    finally:
        _fsdp_param.alloc_storage, _fsdp_param.free_storage = alloc, free


def _optimizer(run: Run, params):
    name = run.optimizer
    kwargs = {"lr": 1e-5, "foreach": run.foreach}
    if name == "none":
        return None
    cls = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    if name == "momentum":
        kwargs["momentum"] = 0.9
    if run.strategy == "zero1":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(params, optimizer_class=cls, **kwargs)
    return cls(params, **kwargs)


def _wrap(run: Run, model: torch.nn.Module) -> torch.nn.Module:
    if run.strategy in ("ddp", "zero1"):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, bucket_cap_mb=run.bucket_cap_mb, gradient_as_bucket_view=run.bucket_view)
    if run.strategy in ("fsdp", "fsdp-no-reshard"):
        from torch.distributed.fsdp import fully_shard

        # fsdp: torch's defaults (the units reshard after forward, the root does not); fsdp-no-reshard: none does
        reshard = {} if run.strategy == "fsdp" else {"reshard_after_forward": False}
        for name in run.units:
            fully_shard(model.get_submodule(name), **reshard)
        return fully_shard(model, **reshard)
    return model


def _criterion(run: Run, model, x):
    """The loss of the model's output, as timeline_probe.step_peaks makes it (its targets made here, under the mode)."""
    F = torch.nn.functional
    if run.loss == "model":
        return lambda m, x: m(input_ids=x, labels=x).loss
    if run.loss == "causal_lm":
        return lambda m, x: causal_lm_loss(m(x), x)
    with torch.no_grad():
        out = model(x)
    if run.loss == "mse":
        t = torch.randn_like(out)
        return lambda m, x: F.mse_loss(m(x), t)
    if run.loss == "tokens":
        t = torch.randint(0, out.shape[-1], out.shape[:-1])
        return lambda m, x: F.cross_entropy(m(x).flatten(0, -2), t.flatten())
    t = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]))
    return lambda m, x: F.cross_entropy(m(x), t)


def _rank(rank: int, payload: bytes, port: int, folder: str) -> None:
    from . import vision  # noqa: F401  (before a transformers model is unpickled: transformers imports torchvision)

    runs = pickle.loads(payload)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=runs[0].world,
                            timeout=timedelta(seconds=runs[0].seconds))
    try:
        results = [_measure(run) for run in runs]
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
        dist.barrier()  # every rank's results written before any tears its group down (see run_ranks)
    finally:
        dist.destroy_process_group()


def _measure(run: Run) -> dict:
    torch.manual_seed(0)
    mode = RankStorages()
    model = pickle.loads(pickle.dumps(run.model))  # each run its own copy (fully_shard changes the module)
    model.train()
    for t in [*model.parameters(), *model.buffers(), run.x]:
        mode.track(t)
    del t
    with resizes_told(mode), mode:
        # the targets from the bare model: a forward under no_grad would leave FSDP2's root unsharded, its unsharded
        # tensors what wrapped.parameters() then lists (the optimizer would step those, never the shards)
        criterion = _criterion(run, model, run.x)
        wrapped = _wrap(run, model)
        opt = _optimizer(run, list(wrapped.parameters()))

        def step(phases: bool):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            else:
                for p in wrapped.parameters():
                    p.grad = None
            if phases:
                mode.start("forward")
            value = criterion(wrapped, run.x)
            if phases:
                mode.start("backward")
            value.backward()
            del value
            if phases:
                mode.start("optimizer")
            if opt is not None:
                opt.step()
            mode.phase = ""

        step(False)
        step(False)
        gc.collect()
        mode.log = [] if run.log else None
        before = mode.total
        step(True)
    return {"phases": dict(mode.peaks), "before": before, "communication": mode.communication, "log": mode.log}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(*runs: Run) -> list[list[dict]]:
    """Each run's result on each rank, [run][rank], the runs one after another in the same process group (they share
    `world`): {"phases": peak per phase, "before": bytes alive at the step's start, "communication": per phase,
    bytes per collective, "log": [(phase, "+"/"-"/"resize", bytes, total, op)] with Run(log=True)}."""
    world, seconds = runs[0].world, sum(run.seconds for run in runs)
    if any(run.world != world for run in runs):
        raise ValueError("run_ranks: the runs share one process group: give them the same world")
    with tempfile.TemporaryDirectory() as folder:
        context = mp.start_processes(_rank, args=(pickle.dumps(runs), free_port(), folder), nprocs=world, join=False,
                                     start_method="spawn")
        deadline = time.monotonic() + seconds
        written = [os.path.join(folder, f"rank{rank}.json") for rank in range(world)]
        try:
            while not context.join(timeout=max(1.0, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the ranks ran past {seconds} s")
        except mp.ProcessExitedException:
            # gloo's threads now and then abort a rank's teardown (std::terminate, SIGABRT) after the barrier that
            # follows every rank's results: a measurement complete on every rank stands, a missing one fails
            if not all(os.path.exists(path) for path in written):
                raise
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        results = []
        for rank in range(world):
            with open(os.path.join(folder, f"rank{rank}.json")) as f:
                results.append(json.load(f))
    return [[results[rank][i] for rank in range(world)] for i in range(len(runs))]


__all__ = ["RankStorages", "Run", "free_port", "run_ranks"]
