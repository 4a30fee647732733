"""A torch module -> a spec (`archcalc import`): capture its graph, map each operation to a layer, check the spec.

The pipeline, one module each:
    target.py          FILE.py:NAME, module:NAME or hf:PATH (hf.py: a transformers config) -> an nn.Module
    failure.py         code that cannot be imported: its first cause and what to install
    capture_fx.py      torch.fx: symbolic tracing, call_module nodes (tried first: milliseconds)
    capture_export.py  torch.export, non-strict: ATen operations under nn_module_stack (where torch.fx fails)
    mapping.py         torch modules -> layer kinds (the kinds' `torch_modules`), activations folded
    functions.py       functional calls and ATen operations -> layer kinds
    names.py           module paths -> spec names, and the [names] table for paths that are not names
    blocks.py          repeated submodules -> blocks with `repeat`
    write.py           the spec's text
    problems.py        what cannot be mapped, grouped by cause, with file:line
A spec is returned only when archcalc reads and analyses it: never one that `archcalc show` refuses.
"""

from __future__ import annotations

from ...core.errors import ArchcalcError
from . import capture_export, capture_fx
from .blocks import recover
from .capture_fx import CaptureFailed
from .mapping import Layer, fold_activations
from .names import escape, torch_path
from .problems import ImportFailed, Problem, refuse_detection
from .target import HF, load_target, parse_input
from .write import to_toml

__all__ = ["CAPTURES", "HF", "CaptureFailed", "ImportFailed", "Layer", "Problem", "import_module", "layers", "load_target",
           "parse_input", "torch_path"]

CAPTURES = ("auto", "fx", "export")


def layers(module, input_shape: list | None = None, capture: str = "auto") -> tuple[list[Layer], list[str], str]:
    """The layers of a module (execution order), the names forward returns, and the capture that gave them.

    "auto": torch.fx first; torch.export where torch.fx cannot trace the module or leaves operations
    unmapped that torch.export maps. Where both fail, the shorter list is raised (torch.fx's on a tie:
    it names the Python calls as written), torch.export's where torch.fx could not trace at all."""
    refuse_detection(module)
    if capture == "export":
        return (*capture_export.layers(module, input_shape), "torch.export")
    try:
        return (*capture_fx.layers(module, input_shape), "torch.fx")
    except (CaptureFailed, ImportFailed) as error:
        if capture == "fx":
            raise
        first = error
    try:
        return (*capture_export.layers(module, input_shape), "torch.export")
    except (CaptureFailed, ImportFailed) as error:
        if isinstance(first, CaptureFailed) or (isinstance(error, ImportFailed) and len(error.problems) < len(first.problems)):
            raise error from None
        raise first from None


def import_module(module, input_shape: list, name: str | None = None, blocks: bool = True, capture: str = "auto") -> str:
    """The spec text of a torch module, for one sample of `input_shape` (numbers, or names as symbols).

    With `blocks`, repeated submodules become blocks (blocks.py) where the spec so written
    has the very rows of the flat one (names, wiring, shapes, counts); else the layers stay flat.
    """
    name = name or type(module).__name__
    found, returned, _ = layers(module, input_shape, capture)
    folded_layers = fold_activations(found, returned)
    flat, names = escape(folded_layers)
    outputs = _outputs(found, folded_layers, flat, returned)
    text = to_toml(name, input_shape, flat, names=names, outputs=outputs)
    flat_rows = _rows(text, name)  # raises: a spec archcalc cannot read is never returned
    if not blocks:
        return text
    top, recovered = recover(flat, outputs or [flat[-1].name], {_spec(path, names): type(m).__name__ for path, m in module.named_modules()})
    if not recovered:
        return text
    folded = to_toml(name, input_shape, top, recovered, names, outputs)
    try:
        return folded if _rows(folded, name) == flat_rows else text
    except ArchcalcError:
        return text


def _outputs(found: list[Layer], folded: list[Layer], flat: list[Layer], returned: list[str]) -> list[str] | None:
    """The spec names of what forward returns, where it returns several tensors (segmentation's out and aux,
    googlenet's aux heads in training): [model] outputs. None for one (the last layer's output)."""
    if len(returned) < 2:
        return None
    kept = {layer.name for layer in folded}
    absorbed = {layer.name: found[i - 1].name for i, layer in enumerate(found) if layer.name not in kept}  # folded activations
    spec = {layer.name: escaped.name for layer, escaped in zip(folded, flat)}
    return [spec[absorbed.get(n, n)] for n in returned]


def _spec(path: str, names: dict[str, str]) -> str:
    """A torch path's spec name (the inverse of the [names] table)."""
    inverse = {torch: spec for spec, torch in names.items()}
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in inverse:
            return ".".join([inverse[prefix], *parts[k:]])
    return path


def _rows(text: str, model: str):
    """The rows of a spec text (names, kinds, wiring, shapes, counts) and its totals; ArchcalcError if archcalc refuses it."""
    from ...report import analyze
    from ...spec.read import loads

    try:
        report = analyze(loads(text))
        rows = [(r.name, r.layer.kind, r.inputs, r.input, r.output, r.weights, r.biases, r.macs,
                 getattr(r.layer, "activation", None)) for r in report.rows]
        return rows, report.totals, report.memory.to_dict()
    except ArchcalcError as error:
        raise ArchcalcError(f"{model}: archcalc cannot read the spec written from it, so none is written:\n  {error}\n"
                            "  hint: this is archcalc's bug (a mapping that writes what the spec reader refuses): please report it") from None
