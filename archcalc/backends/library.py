"""What an exported file holds besides torch: each module's constructor call, and the source of archcalc's own module
classes (modules.py, lora.py) with the helpers they call, written into the file so that it needs torch alone.

Every module keeps its constructor's arguments under their names (torch.nn's do, and archcalc's own), so its call is
read back from the module: required arguments by position, the others where they differ from the default.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect

from ..core.errors import SpecError
from .build import require
from .pysource import EXPLICIT, SKIPPED, Code, literal, short

FILES = ("archcalc.backends.modules", "archcalc.backends.lora")  # where archcalc's own module classes live


def own(module) -> bool:
    """Whether `module` is one of archcalc's own classes, whose source the exported file must hold."""
    return type(module).__module__ in FILES


def head(module) -> str:
    """The name the exported file calls to make `module`: `nn.Conv2d`, or archcalc's own `SelfAttention`."""
    return type(module).__name__ if own(module) else f"nn.{type(module).__name__}"


def arguments(module, used: set) -> list[tuple[str, bool, object, object]]:
    """(argument, required, default, value) for each constructor argument; a module argument (LoRA's base layer) as
    its Code. `used` collects the own classes the calls need."""
    if own(module):
        used.add(type(module).__name__)
    out = []
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name == "self" or name in SKIPPED or name.startswith("_") or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue  # Embedding's _weight and _freeze: a tensor to start from, not architecture
        if not hasattr(module, name):  # every module keeps its arguments under their names; one that does not is refused
            raise SpecError(f"export cannot write its module {type(module).__name__}: it keeps no {name!r} (an argument of "
                            "its constructor)", "build it instead: archcalc.torch.build(spec) makes it")
        value = getattr(module, name)
        if name == "bias" and not isinstance(value, bool):
            if getattr(module, "affine", True) is False:
                continue  # batchnorm without affine has no bias to turn off
            value = value is not None
        if isinstance(value, require().nn.Module):
            value = Code(constructor(value, used))
        required = parameter.default is parameter.empty
        out.append((name, required, None if required else parameter.default, short(value)))
    return out


def constructor(module, used: set) -> str:
    """The call that makes `module` (`nn.Conv2d(3, 96, 11, stride=4)`), its adapted children (peft's LoRA layers in
    place of an attention's projections) put in by `adapted`."""
    rendered = []
    for name, required, default, value in arguments(module, used):
        if required:
            rendered.append(literal(value))
        elif name in EXPLICIT or value != short(default):
            rendered.append(f"{name}={literal(value)}")
    call = f"{head(module)}({', '.join(rendered)})"
    replaced = {name: child for name, child in module.named_children() if own(child) and not own_child(module, name)}
    if replaced:
        used.add("adapted")
        call = f"adapted({call}, {', '.join(f'{name}={constructor(child, used)}' for name, child in replaced.items())})"
    return call


def own_child(module, name: str) -> bool:
    """Whether the child `name` is one its module's constructor makes (not one put in after it: a LoRA layer)."""
    from .lora import LoraLinear

    return not isinstance(getattr(module, name), LoraLinear) or isinstance(module, LoraLinear)


def adapted(module, **children):
    """The module with some of its children replaced (peft's LoRA layers in place of its projections)."""
    for name, child in children.items():
        setattr(module, name, child)
    return module


def freeze(module):
    """A frozen layer: its own parameters without gradients; peft's adapters inside it still train."""
    for name, parameter in module.named_parameters():
        if ".lora_A." not in f".{name}" and ".lora_B." not in f".{name}":
            parameter.requires_grad_(False)
    return module


def torch_names(root, names: dict):
    """Let `root` load a state_dict keyed by torch's module paths (`0.weight`, the [names] table's values) into its
    modules under the spec's names (`layer0.weight`): build()'s state_dict, or the original model's."""
    def load(module, state_dict, prefix, *_):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            path = key[len(prefix):]
            torch_path = next((t for t in sorted(names, key=len, reverse=True) if path.startswith(t + ".")), None)
            if torch_path is not None:
                state_dict[prefix + names[torch_path] + path[len(torch_path):]] = state_dict.pop(key)
    root.register_load_state_dict_pre_hook(load)
    return root


def names() -> set[str]:
    """The names the exported file may define (archcalc's module classes, their helpers, `math`)."""
    return {*_definitions(), "math"}


def source(used: set) -> list[str]:
    """The source of the own classes and functions named in `used` and of the helpers they call, in their files' order."""
    needed = set()
    pending = list(used)
    definitions = _definitions()
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending += [n.id for n in ast.walk(ast.parse(definitions[name])) if isinstance(n, ast.Name) and n.id in definitions]
    lines = []
    for name, text in definitions.items():
        if name in needed:
            lines += [*text.splitlines(), "", ""]
    return lines


@functools.cache
def _definitions() -> dict[str, str]:
    """Name -> source of every top-level class and function of archcalc's module files (and `adapted`)."""
    out = {}
    for file in FILES:
        module = importlib.import_module(file)
        for name, value in vars(module).items():
            if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == file:
                out[name] = inspect.getsource(value)
    out |= {f.__name__: inspect.getsource(f) for f in (adapted, freeze, torch_names)}
    return out
