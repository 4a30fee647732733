"""The CPU oracle for many processes: each rank's live storages through a real training step with torch.distributed.

Processes are spawned (torch.multiprocessing, gloo on localhost at a free port), each one rank; `run` joins them
within a deadline and kills what is left. In each rank LiveStorages (timeline_probe.py) tracks the storages of every
op, with two additions for DTensor: a DTensor op is handed back to DTensor (NotImplemented), so that the mode sees
the local ops DTensor runs (its redistributions included), and a wrapper tensor (a DTensor, a functional
collective's AsyncCollectiveTensor) is counted by the storages it wraps, never by its own. Collectives are counted
by their payload: the bytes of the tensors handed to each. Only tests import this module.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import is_traceable_wrapper_subclass
from torch.utils._pytree import tree_flatten

from tests.oracle.timeline_probe import LiveStorages, causal_lm_loss

COLLECTIVES = {"_c10d_functional.all_reduce.default": "all_reduce", "c10d.allreduce_.default": "all_reduce",
               "_c10d_functional.all_gather_into_tensor.default": "all_gather",
               "_c10d_functional.reduce_scatter_tensor.default": "reduce_scatter"}


class RankStorages(LiveStorages):
    """LiveStorages seen from one rank, under DTensor (see the module), and the bytes of each collective."""

    def __init__(self):
        super().__init__()
        self.sent: dict[str, int] = {}

    def track(self, t) -> None:
        if isinstance(t, torch.Tensor) and is_traceable_wrapper_subclass(t):
            for attr in t.__tensor_flatten__()[0]:
                self.track(getattr(t, attr))
            return
        super().track(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor

        if any(isinstance(a, DTensor) for a in tree_flatten((args, kwargs or {}))[0]):
            return NotImplemented  # DTensor runs it, its local ops through this mode again
        name = COLLECTIVES.get(str(func))
        if name is not None and self.phase:
            tensors = [a for a in tree_flatten(args[0])[0] if isinstance(a, torch.Tensor)]
            self.sent[name] = self.sent.get(name, 0) + sum(t.untyped_storage().nbytes() for t in tensors)
        return super().__torch_dispatch__(func, types, args, kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, out: str, job, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = job(rank, world, *args)
    except BaseException:
        result = RuntimeError(f"rank {rank}:\n{traceback.format_exc()}")
    try:  # written before the teardown, which gloo's threads now and then abort (std::terminate) once all is done
        Path(out, f"{rank}.pickle").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def run(world: int, job, *args, timeout: float = 240) -> list:
    """`job(rank, world, *args)` in `world` spawned processes (gloo), each result returned in rank order."""
    context = torch.multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as out:
        port = free_port()
        procs = [context.Process(target=_rank, args=(rank, world, port, out, job, args), daemon=True)
                 for rank in range(world)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        try:
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        results = []
        for rank in range(world):
            path = Path(out, f"{rank}.pickle")
            if not path.exists():
                raise TimeoutError(f"rank {rank} of {world} gave no result within {timeout} s")
            results.append(pickle.loads(path.read_bytes()))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def step_peaks(model, x, optimizer: str, reduce_gradients=None, steps: int = 2) -> list[tuple[dict, dict]]:
    """Each phase's peak of this rank's live storages in training steps 3, 4... (`steps` of them; a language model's, on
    its own ids: Hugging Face's causal LM loss), and the bytes it sent by collective in each. Two steps first: the
    first makes the optimizer's state, the second runs each op on it once (DTensor's first call of an op with new
    placements takes a slow path that allocates: SGD's momentum update allocated a copy of every buffer).
    `reduce_gradients()`: run after backward (a data-parallel group's all-reduce of the gradients, in place)."""
    from tests.oracle.timeline_probe import OPTIMIZERS

    torch.manual_seed(0)
    model.train()
    opt = OPTIMIZERS[optimizer](list(model.parameters()))

    def step(mode):
        opt.zero_grad(set_to_none=True)
        mode.start("forward")
        value = causal_lm_loss(model(x), x)
        mode.start("backward")
        value.backward()
        del value
        if reduce_gradients is not None:
            reduce_gradients()
        mode.start("optimizer")
        opt.step()
        mode.phase = ""

    step(RankStorages())
    step(RankStorages())
    out = []
    for _ in range(steps):
        mode = RankStorages()
        with mode:
            before = [*model.parameters(), *model.buffers(), x] + [p.grad for p in model.parameters() if p.grad is not None]
            before += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
            for t in before:
                mode.track(t)
            del before, t
            step(mode)
        out.append((dict(mode.peaks), dict(mode.sent)))
    return out


def gpt2_step(rank: int, world: int, tp: int, sizes: dict, optimizer: str, batch: int, t: int, steps: int = 2):
    """One rank of GPT-2 (tests/oracle/gpt2_linear.py) split over a (dp, tp) mesh: Megatron's plan with
    archcalc.backends.distributed.tensor_parallel within each tp group, the dp groups replicated (their gradients
    all-reduced in place after backward); step_peaks' result."""
    from torch.distributed.device_mesh import init_device_mesh

    from archcalc.backends.distributed import tensor_parallel
    from tests.oracle.gpt2_linear import GPT2, plan

    torch.manual_seed(0)
    model = GPT2(**sizes)
    mesh = init_device_mesh("cpu", (world // tp, tp), mesh_dim_names=("dp", "tp"))
    tensor_parallel(model, mesh["tp"], plan(sizes["layers"]))
    torch.manual_seed(1 + mesh.get_coordinate()[0])  # each data-parallel group its own samples
    x = torch.randint(0, sizes["vocab"], (batch, t))
    reduce = None
    if world > tp:
        group = mesh["dp"].get_group()

        def reduce():
            for p in model.parameters():
                dist.all_reduce(p.grad.to_local(), group=group)

    return step_peaks(model, x, optimizer, reduce, steps)
