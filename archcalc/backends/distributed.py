"""Many processes with torch.distributed: the process group torchrun sets up, and tensor parallelism in Megatron's
style with torch's own APIs (torch.distributed.tensor.parallel).

`tensor_parallel(model, mesh, plan)` applies a plan ({module path: "colwise" | "rowwise"}) with parallelize_module
(ColwiseParallel, RowwiseParallel: each rank its shard of the weight, a DTensor), and makes every other parameter a
replicated DTensor (the embeddings, the norms, a tied output layer: each rank holds it whole), so that the
optimizer's foreach kernels, which refuse a list mixing DTensors and tensors, see DTensors only; weights the model
shares (GPT-2's tied lm_head) stay one parameter. `plan_of(report, model, tp)` is archcalc's plan for a built spec
(archcalc/memory/timeline/tensor.py's Plan: heads, then dense pairs), its attention modules told their local heads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..core.errors import ArchcalcError
from .build import parts, require


def environment() -> dict[str, int]:
    """The rank, local rank and world size torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE)."""
    try:
        return {name.lower(): int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    except (KeyError, ValueError):
        raise ArchcalcError("not started by torchrun: RANK, LOCAL_RANK and WORLD_SIZE are not set\n"
                            "  hint: archcalc bench SPEC --nproc N starts torchrun itself") from None


def init(device: str = "cpu"):
    """The default process group from torchrun's environment: NCCL on CUDA, gloo on the CPU; returns the device."""
    torch = require()
    env = environment()
    if device == "cuda":
        torch.cuda.set_device(env["local_rank"])
        device = f"cuda:{env['local_rank']}"
    torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return torch.device(device)


def replicate(mesh):
    """A parallel style: the module's parameters replicated DTensors, its tensor inputs made replicated DTensors (no
    copy) and its output handed back as a plain tensor, so that the module computes as it would alone."""
    torch = require()
    from torch.distributed.tensor import DTensor, Replicate, distribute_module

    def inputs(module, args, mesh):
        return tuple(DTensor.from_local(a, mesh, [Replicate()], run_check=False)
                     if isinstance(a, torch.Tensor) and not isinstance(a, DTensor) else a for a in args)

    def output(module, out, mesh):
        return out.to_local() if isinstance(out, DTensor) else out

    def apply(module):
        return distribute_module(module, mesh, input_fn=inputs, output_fn=output)

    return apply


def tensor_parallel(model, mesh, plan: Mapping[str, str]):
    """`model` split over `mesh` by `plan` ({module path: "colwise" | "rowwise"}), the rest replicated (see the module)."""
    require()
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    shared: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        shared.setdefault(id(p), []).append(name)
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    parallelize_module(model, mesh, {path: styles[style]() for path, style in plan.items()})
    whole = replicate(mesh)
    for module in list(model.modules()):
        own = [p for _, p in module.named_parameters(recurse=False)]
        if own and not all(isinstance(p, DTensor) for p in own):
            whole(module)
    for names in shared.values():  # distribute_module made each module's parameters anew: tie them again
        first = model.get_parameter(names[0])
        for name in names[1:]:
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, leaf, first)
    return model


def plan_of(report, model, tp: int) -> dict[str, str]:
    """archcalc's tensor-parallel plan for `model` built from `report` (archcalc.torch.build): module paths to styles;
    each attention module's in_proj column-parallel, out_proj row-parallel, and its heads set to this rank's."""
    from ..memory.timeline.tensor import Plan

    styles = Plan.of(report).paths()
    out = {}
    for part in parts(report):
        style = styles.get(part.row.name)
        if style is None:
            continue
        path = part.names[0]
        if style == "heads":
            attention = model.get_submodule(path)
            attention.heads //= tp
            attention.kv_heads //= tp
            out |= {f"{path}.in_proj": "colwise", f"{path}.out_proj": "rowwise"}
        else:
            out[path] = style
    return out
