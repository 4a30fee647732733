"""A spec as readable PyTorch source: an nn.Module class with `__init__` and `forward`, like the course's AlexNet.py.

Every module is the one `build` makes (each layer's `to_torch`), written back
as its constructor call, so the exported class has the same parameters, under
the same names, as `archcalc.torch.build(spec)`. Modules without state become
calls in `forward`: `torch.flatten(x, 1)`, `x.reshape(...)`, `F.relu(...)`.
archcalc's own module classes (attention, RMSNorm, LoRA...) are written into the
file above the model (backends/library.py), so the file needs torch alone.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from ..core import fmt, num
from ..core.errors import SpecError
from ..layers import ACTIVATIONS
from ..report import Report
from . import export_graph, library
from .build import Part, concrete, is_chain, modules, parts, require
from .pysource import ACTIVATION_CLASSES, RESERVED, TORCH_FUNCTIONS, aligned, class_name as usable, literal, plain, sizes, where


@dataclass
class Extras:
    """What the model's classes need besides torch.nn: archcalc's own classes and helpers (`used`), and the lines
    that end the model's __init__ (`last`: tied weights, frozen layers, bare parameters' keys)."""

    used: set = field(default_factory=set)
    last: list[str] = field(default_factory=list)

    def finish(self, report: Report, module_of) -> None:
        """The lines after the modules: `module_of(part)` is the part's module as build() makes it."""
        for part in parts(report, torch_names=False):
            target = part.row.layer.tie
            if target is not None:
                owner = next(p for p in parts(report, torch_names=False) if p.row.name == target)
                self.last.append(f"{_attribute(part.names[0])}.weight = {_attribute(owner.names[0])}.weight  # tied")
            if part.row.layer.frozen:
                self.used.add("freeze")
                self.last.append(f"freeze({_attribute(part.names[0])})  # frozen (fine-tuning)")
            if getattr(module_of(part), "bare", False):
                self.used.add("bare_keys")
        if "bare_keys" in self.used:
            self.last.append("bare_keys(self)  # bare parameters load under their paths")
        if report.names:  # the spec's names here; build() and the original model key their state_dicts by torch's
            self.used.add("torch_names")
            table = {torch: spec for spec, torch in report.names}
            self.last.append(f"torch_names(self, {table!r})  # a state_dict keyed by torch's paths loads too")

    def library(self) -> list[str]:
        """The source of the classes and helpers the model uses, under a comment saying where they come from."""
        if not self.used:
            return []
        return ["# archcalc's own modules (archcalc/backends/modules.py), as build() makes them", "", "",
                *library.source(self.used)]


def _attribute(path: str) -> str:
    return f"self.{path}" if "." not in path else f'self.get_submodule("{path}")'


def source(report: Report, class_name: str | None = None) -> str:
    """Python source for an nn.Module class rebuilding the report's network (which must be concrete)."""
    report = concrete(report)
    require()  # before the names of archcalc's own modules are read: a missing torch says how to install it
    if len(report.output_rows) > 1:
        raise SpecError("export writes a module with one output; this spec has several ([model] outputs)",
                        "build it instead (archcalc.torch.build returns them as a dict)", "outputs", where="[model]", path=report.path)
    name = _class_name(report.model) if class_name is None else usable(class_name)
    if name in library.names():
        if class_name is not None:
            raise SpecError(f"{name} is the name of a module class the exported file holds", "choose another class name",
                            where="--class-name")
        name += "Model"
    params = num.add(row.params for row in report.rows)
    origin = f" from {plain(report.path)}" if report.path else ""
    header = [
        f'"""{plain(report.model)}, exported by archcalc{origin}.',
        "",
        f"{fmt.group(params)} parameters; input B×{sizes(report.input)}, output B×{sizes(report.output)}.",
        *([f"The spec trains it in {report.dtype}: model.to(torch.{report.dtype})."] if report.dtype != "float32" else []),
        '"""',
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
        "",
    ]
    footer = [
        "",
        "",
        'if __name__ == "__main__":',
        f"    model = {name}()",
        f"    x = {_sample(report)}",
        f"    print(model(x).shape)  # torch.Size([2, {', '.join(str(d) for d in report.output)}])",
        f"    print(sum(p.numel() for p in model.parameters()))  # {params}",
        "",
    ]
    try:
        return _imports(_classes(report, name, header, footer))
    except SpecError as error:
        raise error.at(path=report.path) from None


def _classes(report: Report, name: str, header: list[str], footer: list[str]) -> str:
    """The model's source between `header` and `footer`: one class for a stack, one per block for a graph."""
    extras = Extras()
    if not is_chain(report):  # a graph: one class per block (export_graph.py)
        return export_graph.source(report, name, header, footer, extras)
    init: list[tuple[str, str]] = []
    forward: list[tuple[str, str]] = []
    built = {}
    for part in parts(report, torch_names=False):
        built[part.row.name] = _part(part, init, forward, extras.used)
    extras.finish(report, lambda part: built[part.row.name])
    lines = [
        *header,
        *extras.library(),
        f"class {name}(nn.Module):",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *aligned(init, "        "),
        *(f"        {line}" for line in extras.last),
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *aligned([("# x: " + "B×" + sizes(report.input), ""), *forward], "        "),
        "        return x",
        *footer,
    ]
    return "\n".join(lines)


def _sample(report: Report) -> str:
    """A batch of two for the __main__ part: token ids below the embedding's size, or random values."""
    shape = ", ".join(str(d) for d in report.input)
    ids = next((row.layer.token_ids for row in report.rows if row.layer.token_ids is not None), None)
    return f"torch.randn(2, {shape})" if ids is None else f"torch.randint(0, {ids}, (2, {shape}))"


def _imports(text: str) -> str:
    """Python's math imported too where archcalc's own modules use it."""
    if "math." not in text.split("\nclass ", 1)[-1]:
        return text
    return text.replace("\nimport torch\n", "\nimport math\n\nimport torch\n", 1)


def _part(part: Part, init: list, forward: list, used: set):
    """The lines of one row: its module in __init__ (if it is one) and its call in forward; returns the module."""
    row = part.row
    layer, *activation = modules(part)
    shape = f"B×{sizes(row.output)}"
    try:
        call = _call(layer, part.names[0], init, row, used)
    except SpecError as error:
        raise error.at(where=where(row)) from None
    if activation:
        call = _activation(activation[0], row.layer.activation, call)
    forward.append((f"x = {call}", shape))
    return layer


def _call(module, name: str, init: list, row, used: set) -> str:
    """How forward applies `module` to x; modules with a constructor worth keeping go to __init__."""
    nn = require().nn
    if isinstance(module, nn.Flatten):
        return f"torch.flatten(x, {module.start_dim}{'' if module.end_dim == -1 else f', {module.end_dim}'})"
    if hasattr(module, "source"):  # a module archcalc defines (permute): its call, written out
        return module.source
    if isinstance(module, nn.Unflatten) or (isinstance(module, nn.Sequential) and isinstance(module[-1], nn.Unflatten)):
        return f"x.reshape(x.size(0), {', '.join(str(d) for d in row.output)})"
    function = ACTIVATION_CLASSES.get(type(module).__name__)  # an activation layer: a function call in forward
    if function is not None:
        return _activation(module, function, "x")
    params = num.normal(row.params)
    note = f"{sizes(row.input)} → {sizes(row.output)}" + (f", {fmt.group(params)} parameters" if params else "")
    if hasattr(module, "exported"):  # a torch class archcalc adapts (LSTM: the output only): its constructor, its call
        constructor, call = module.exported
        init.append((f"self.{name} = {constructor}", note))
        return call.format(f"self.{name}")
    init.append((f"self.{name} = {library.constructor(module, used)}", note))
    return f"self.{name}(x)"


def _activation(module, function: str, inner: str) -> str:
    if function in TORCH_FUNCTIONS:
        return f"torch.{function}({inner})"
    defaults = inspect.signature(type(module).__init__).parameters
    options = "".join(f", {name}={literal(getattr(module, name))}" for name in ACTIVATIONS[function].options
                      if getattr(module, name) != defaults[name].default)  # dim=1, negative_slope=0.2, approximate="tanh"
    return f"F.{function}({inner}{options})"


def _class_name(model: str) -> str:
    """'AlexNet (symbolic)' -> 'AlexNetSymbolic'; 'LeNet-5' -> 'LeNet5'; 'none' -> 'NetNone' (never a keyword, a
    builtin or a name the source imports).

    >>> _class_name("AlexNet (symbolic)"), _class_name("none"), _class_name("nn"), _class_name("ℌ")
    ('AlexNetSymbolic', 'NetNone', 'Nn', 'Net')
    """
    words = re.findall(r"[A-Za-z0-9]+", model if isinstance(model, str) else "")
    name = "".join(w[0].upper() + w[1:] for w in words) or "Net"
    if name[0].isdigit() or name in RESERVED:
        name = "Net" + name
    return name
