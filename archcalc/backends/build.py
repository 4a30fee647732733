"""The PyTorch backend: build the spec's network as a torch module. The one place torch is imported.

torch is imported on first use (`require`), never when archcalc is: `import archcalc`
and every command without torch keep working where torch is not installed.

A straight stack (each layer reads the one before, plain names) builds as an
`nn.Sequential` whose children carry the spec's layer names. Any other spec (a
graph: `from`, blocks, dotted names) builds as a `Graph` (backends/modules.py):
each layer's module sits at its dotted path (`layer1.0.conv1`, inside plain
`nn.Module` containers `layer1` and `layer1.0`), so the state_dict keys are the
spec's names, and its forward runs the rows in execution order. Merge layers
(add, mul, concat) are modules without state: they add no state_dict key.

A layer's `activation` field becomes one more module beside it, named
`<layer>_<function>` (`conv1_relu`, `layer1.0.add_relu`). A name that another
module already has, or that `nn.Module` uses itself (`train`, `forward`...),
gets underscores appended until it is free (`train_`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..analysis.engine import BATCH
from ..core import fmt, num
from ..core.errors import ArchcalcError, SpecError
from ..layers.base import torch_activation
from ..report import Report, Row, analyze
from ..spec.read import INPUT, Spec, load

INSTALL = "pip install torch (from archcalc's checkout: pip install '.[torch]')"


def require():
    """The torch module, or an ArchcalcError that says how to install it."""
    try:
        import torch
    except ImportError:
        raise ArchcalcError(f"this needs PyTorch, which is not installed\n  hint: {INSTALL}") from None
    return torch


@dataclass(frozen=True)
class Part:
    """The modules that one row of the report becomes: the layer, then its activation if it has one."""

    row: Row
    names: tuple[str, ...]  # their paths in the built module


def build(spec: Spec | Report | str | Path, **values):
    """The spec's network as a torch module whose parameters carry the spec's layer names.

    An nn.Sequential for a straight stack, else a Graph. Its parameters have the
    spec's dtype. `values` name the sizes the spec leaves open.
    """
    report = concrete(spec, **values)
    fits(report, "build", batch=None, device="cpu")
    module = network(report)
    dtype = dtype_of(report.dtype)
    if dtype is require().float32:
        return module
    module = module.to(dtype)
    for name, child in module.named_modules():  # peft's autocast_adapter_dtype: float32 adapters beside a 16-bit base
        if isinstance(child, require().nn.ModuleDict) and name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"):
            child.float()
    return module


def concrete(spec: Spec | Report | str | Path, **values) -> Report:
    """The report of a spec with every size known, or a SpecError that names the unknown ones."""
    if isinstance(spec, Report):
        if values:
            raise TypeError("values go with a spec, not with a report (analyze already bound them)")
        report = spec
    else:
        report = analyze(load(spec) if isinstance(spec, (str, Path)) else spec, **values)
    free = free_names(report)
    if free:
        listed = ", ".join(free)
        sets = " ".join(f"--set {name}=..." for name in free)
        raise SpecError(
            f"torch needs numbers, but {'these sizes are' if len(free) > 1 else 'this size is'} still unknown: {listed}",
            f"give {'them' if len(free) > 1 else 'it'} values: {sets} (or {', '.join(f'{n}=...' for n in free)} in Python)",
            path=report.path,
        )
    return report


def free_names(report: Report) -> list[str]:
    """The names a report's shapes, counts or layer fields still depend on, the batch size aside."""
    found: set[str] = set()

    def collect(value) -> None:
        if isinstance(value, tuple):
            for item in value:
                collect(item)
        elif not isinstance(value, (str, bool, type(None))):
            found.update(num.free_names(value))

    for row in report.rows:
        collect((row.input, row.output, row.weights, row.biases, row.macs))
        collect(tuple(getattr(row.layer, f.name) for f in dataclasses.fields(row.layer) if f.name != "name"))
    return sorted(found - {BATCH})


def is_chain(report: Report) -> bool:
    """Whether every layer reads the one before it (the first, the input), no name is dotted and one output is returned."""
    if report.output_rows != (report.rows[-1],):
        return False
    previous = INPUT
    for row in report.rows:
        if row.inputs != (previous,) or "." in row.name:
            return False
        previous = row.name
    return True


def parts(report: Report, torch_names: bool = True) -> list[Part]:
    """Each row with the paths of its modules, as `network` and `export` place them: torch's paths by the spec's
    [names] table (`torch_names`; export writes Python attributes, so it keeps the spec's names)."""
    reserved = set(dir(require().nn.Module))
    table = dict(report.names) if torch_names else {}
    taken = {torch_path(row.name, table) for row in report.rows}
    out = []
    for row in report.rows:
        *parents, leaf = torch_path(row.name, table).split(".")
        parents = [_segment(p, reserved) for p in parents]
        prefix = "".join(p + "." for p in parents)
        if leaf in reserved:
            while leaf in reserved or prefix + leaf in taken:
                leaf += "_"
            taken.add(prefix + leaf)
        name = prefix + leaf
        names = [name]
        if row.layer.activation:
            names.append(_free(f"{name}_{row.layer.activation}", taken))
        out.append(Part(row, tuple(names)))
    return out


def torch_path(name: str, names: dict[str, str]) -> str:
    """A spec name as torch's module path, by a [names] table (its longest prefix there)."""
    if not names:
        return name
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in names:
            return ".".join([names[prefix], *parts[k:]])
    return name


def container(path: str) -> str:
    """Where a block use's modules sit: its path, with the segments nn.Module uses itself renamed as `parts` does."""
    reserved = set(dir(require().nn.Module))
    return ".".join(_segment(segment, reserved) for segment in path.split("."))


def _segment(name: str, reserved: set[str]) -> str:
    """A container's name: one that nn.Module uses itself gets underscores, the same everywhere."""
    while name in reserved:
        name += "_"
    return name


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def modules(part: Part) -> list:
    """The torch modules of one row: the layer's (fine-tuned: backends/lora.py), then its activation's."""
    require()
    from .lora import frozen
    from .modules import NN as nn

    out = [frozen(part.row.layer.to_torch(part.row.input, nn), part.row.layer)]
    if part.row.layer.activation:
        out.append(torch_activation(part.row.layer.activation, nn))
    return out


def network(report: Report):
    """The module of a concrete report (float32, on torch's current default device): see the module's docstring."""
    nn = require().nn
    if is_chain(report):
        module = nn.Sequential()
        for part in parts(report):
            for name, child in zip(part.names, modules(part)):
                module.add_module(name, child)
        return tie(module, report)
    from ..analysis.checkpoint import regions
    from .modules import Graph, Step

    all_parts = parts(report)
    slots = {INPUT: 0} | {part.row.name: i for i, part in enumerate(all_parts, start=1)}
    last = {0: 0}  # slot -> the last step that reads it (the output: never freed)
    for i, part in enumerate(all_parts, start=1):
        for name in part.row.inputs:
            last[slots[name]] = i
    several = tuple((row.name, slots[row.name]) for row in report.output_rows) if len(report.output_rows) > 1 else ()
    result = slots[report.output_rows[0].name]  # one output, wherever it lies (the rows after it run, unused)
    for slot in (*(slot for _, slot in several), result):  # the model's outputs: never freed
        last[slot] = len(all_parts) + 1
    steps = []
    for i, part in enumerate(all_parts, start=1):
        reads = tuple(slots[name] for name in part.row.inputs)
        free = tuple(sorted({s for s in (*reads, i) if last.get(s, i) == i}))
        steps.append(Step(part.names, reads, free))
    module = Graph(tuple(steps), tuple(_region(r.first + 1, r.stop + 1, steps, last) for r in regions(report)), several, result)
    for part in all_parts:
        for name, child in zip(part.names, modules(part)):
            _place(module, name, child)
    return tie(module, report)


def _region(start: int, stop: int, steps, last: dict[int, int]):
    """A checkpointed region over steps [start, stop): the slots it reads from before it, those read after it."""
    from .modules import Region

    inputs = tuple(sorted({i for step in steps[start - 1:stop - 1] for i in step.inputs if i < start}))
    outputs = tuple(i for i in range(start, stop) if last.get(i, i) >= stop)
    return Region(start, stop, inputs, outputs, tuple(i for i in inputs if last.get(i, i) < stop))


def available_bytes(device: str = "cpu") -> int | None:
    """Memory free for tensors: on a CUDA device what the driver reports free, else the machine's available RAM."""
    if device.startswith("cuda"):
        return require().cuda.mem_get_info(require().device(device))[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits(report: Report, what: str, *, batch: int | None, device: str = "cpu", factor: int = 1) -> None:
    """Refuse, before torch allocates anything, what would need more memory than `device` has free.

    The need is the report's own figure: the parameters for a build, `factor` training steps at `batch` otherwise.
    """
    memory = report.memory if batch is None else dataclasses.replace(report, batch=batch).memory
    need = memory.value("params_bytes") if batch is None else factor * memory.value("training_bytes")
    free = available_bytes(device)
    if free is not None and num.is_concrete(need) and need > free:
        raise ArchcalcError(
            f"{what} would need about {fmt.size_bytes(need)} ({fmt.group(need)} bytes) on {device}, "
            f"and {fmt.size_bytes(free)} are free: refused before allocating anything\n"
            "  hint: a smaller --batch, or smaller sizes (--set NAME=VALUE)"
        )


def _place(root, path: str, child) -> None:
    """Register `child` at a dotted path, making plain nn.Module containers on the way."""
    nn = require().nn
    *parents, leaf = path.split(".")
    node = root
    for i, name in enumerate(parents):
        inner = node._modules.get(name)
        if inner is None:
            inner = nn.Module()
            node.add_module(name, inner)
        elif type(inner) is not nn.Module:
            raise SpecError(f"{'.'.join(parents[:i + 1])!r} is a layer, so {path!r} cannot be a layer inside it",
                            "give the layers names that are not paths below another layer's")
        node = inner
    if leaf in node._modules:
        raise SpecError(f"{path!r} holds other layers, so it cannot be a layer itself",
                        "give the layers names that are not paths below another layer's")
    node.add_module(leaf, child)


def tie(module, report: Report):
    """Share the weights the spec ties: a tied layer's `weight` is the very Parameter of the layer it names; and
    load a bare parameter's key (`layer_scale`, no `.weight`: modules.bare_keys)."""
    from .modules import bare_keys

    for part in parts(report):
        target = part.row.layer.tie
        if target is not None:
            module.get_submodule(part.names[0]).weight = module.get_submodule(_child(report, target)).weight
    return bare_keys(module)


def _child(report: Report, name: str) -> str:
    return next(part.names[0] for part in parts(report) if part.row.name == name)


def sample(report: Report, batch: int, dtype, device=None, random: bool = True):
    """A batch for the network: token ids below the embedding's num_embeddings, or values of `dtype`."""
    torch = require()
    shape = (batch, *map(int, report.input))
    ids = next((row.layer.token_ids for row in report.rows if row.layer.token_ids is not None), None)
    if ids is not None:
        return torch.randint(0, int(ids), shape, device=device) if random else torch.zeros(shape, dtype=torch.long, device=device)
    return torch.randn(shape, device=device, dtype=dtype) if random else torch.zeros(shape, device=device, dtype=dtype)


def dtype_of(dtype: str):
    """'bfloat16' -> torch.bfloat16."""
    return getattr(require(), str(dtype))


def version() -> str:
    return require().__version__.split("+")[0]
