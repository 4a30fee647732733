"""A spec as readable PyTorch source: an nn.Module class with `__init__` and `forward`, like the course's AlexNet.py.

Every module is the one `build` makes (each layer's `to_torch`), written back
as its constructor call, so the exported class has the same parameters, under
the same names, as `archcalc.torch.build(spec)`. Modules without state become
calls in `forward`: `torch.flatten(x, 1)`, `x.reshape(...)`, `F.relu(...)`.
"""

from __future__ import annotations

import inspect
import re

from ..core import fmt, num
from ..layers import ACTIVATIONS
from ..report import Report
from . import export_graph
from .build import Part, concrete, is_chain, modules, parts, require
from .pysource import ACTIVATION_CLASSES, EXPLICIT, RESERVED, SKIPPED, TORCH_FUNCTIONS, aligned, class_name as usable, literal, plain, short, sizes


def source(report: Report, class_name: str | None = None) -> str:
    """Python source for an nn.Module class rebuilding the report's network (which must be concrete)."""
    report = concrete(report)
    name = _class_name(report.model) if class_name is None else usable(class_name)
    params = num.add(row.params for row in report.rows)
    where = f" from {plain(report.path)}" if report.path else ""
    header = [
        f'"""{plain(report.model)}, exported by archcalc{where}.',
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
        f"    x = torch.randn(2, {', '.join(str(d) for d in report.input)})",
        f"    print(model(x).shape)  # torch.Size([2, {', '.join(str(d) for d in report.output)}])",
        f"    print(sum(p.numel() for p in model.parameters()))  # {params}",
        "",
    ]
    if not is_chain(report):  # a graph: one class per block (export_graph.py)
        return export_graph.source(report, name, header, footer)
    init: list[tuple[str, str]] = []
    forward: list[tuple[str, str]] = []
    for part in parts(report):
        _part(part, init, forward)
    lines = [
        *header,
        f"class {name}(nn.Module):",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *aligned(init, "        "),
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *aligned([("# x: " + "B×" + sizes(report.input), ""), *forward], "        "),
        "        return x",
        *footer,
    ]
    return "\n".join(lines)


def _part(part: Part, init: list, forward: list) -> None:
    """The lines of one row: its module in __init__ (if it is one) and its call in forward."""
    row = part.row
    layer, *activation = modules(part)
    shape = f"B×{sizes(row.output)}"
    call = _call(layer, part.names[0], init, row)
    if activation:
        call = _activation(activation[0], row.layer.activation, call)
    forward.append((f"x = {call}", shape))


def _call(module, name: str, init: list, row) -> str:
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
    init.append((f"self.{name} = nn.{type(module).__name__}({_arguments(module)})", note))
    return f"self.{name}(x)"


def _activation(module, function: str, inner: str) -> str:
    if function in TORCH_FUNCTIONS:
        return f"torch.{function}({inner})"
    defaults = inspect.signature(type(module).__init__).parameters
    options = "".join(f", {name}={literal(getattr(module, name))}" for name in ACTIVATIONS[function].options
                      if getattr(module, name) != defaults[name].default)  # dim=1, negative_slope=0.2, approximate="tanh"
    return f"F.{function}({inner}{options})"


def _arguments(module) -> str:
    """The constructor arguments that rebuild `module`: required ones by position, others when not the default."""
    out = []
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name == "self" or name in SKIPPED or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = getattr(module, name)  # every nn layer keeps its arguments under their names
        if name == "bias" and not isinstance(value, bool):
            if getattr(module, "affine", True) is False:
                continue  # batchnorm without affine has no bias to turn off
            value = value is not None
        value = short(value)
        if parameter.default is parameter.empty:
            out.append(literal(value))
        elif name in EXPLICIT or value != short(parameter.default):
            out.append(f"{name}={literal(value)}")
    return ", ".join(out)












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
