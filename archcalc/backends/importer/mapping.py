"""Torch modules and functions as layer kinds: the table both captures (torch.fx, torch.export) map through.

A torch module is the layer kind whose class lists that torch class in `torch_modules`, its fields
read from the module's attributes of the same names (PyTorch's names are the spec's). A subclass of
such a torch.nn class (torchvision's Conv3DSimple, timm's BatchNormAct2d) is that kind too: its own
options are read as its base class's. What maps to nothing raises Unmapped: never a silent 0.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

from ...layers import LAYERS
from ...layers.base import Inexpressible
from ..build import require
from ..pysource import EXPLICIT
from .problems import Unmapped


@dataclass(frozen=True)
class Layer:
    """One layer of the spec being written: its name, kind, fields and the names it reads."""

    name: str
    kind: str
    fields: dict
    inputs: tuple[str, ...]


# Modules whose call is their input itself: removed during import (no layer, no number changes).
PASSTHROUGH = ("Identity",)


def torch_base(module) -> type | None:
    """The class that makes a module a layer kind: its own (matched by name, as today: NewGELUActivation),
    or the nearest torch.nn class it derives from that a kind lists; None when it is no layer kind."""
    listed = {name for cls in LAYERS.values() for name in cls.torch_modules}
    own = type(module)
    if own.__name__ in listed:
        return own
    for cls in own.__mro__[1:]:
        if cls.__module__.startswith("torch.nn.") and cls.__name__ in listed:
            return cls
    return None


def whole(module) -> bool:
    """Whether a module's call is one layer with everything under it (a torch.nn class itself, or a class
    listed by name), rather than its own operations only, its children apart (a subclass of one: timm's
    BatchNormAct2d is a batchnorm, and its `act` child a layer of its own)."""
    return torch_base(module) is type(module)


def from_module(module, path: str) -> tuple[str, dict]:
    """The layer kind and spec fields of a torch module, by the classes' `torch_modules`."""
    base = torch_base(module)
    if base is None:
        raise Unmapped(f"{type(module).__name__} has no archcalc layer kind", path)
    torch_name = base.__name__
    for kind, cls in LAYERS.items():
        if torch_name not in cls.torch_modules:
            continue
        try:
            fields = cls.torch_fields(torch_name) | cls.torch_read(module)
        except Inexpressible as error:
            raise Unmapped(f"{torch_name} {error}", path) from None
        for attribute, name in cls.torch_attributes:  # torch's names for the spec's fields (dotted: config.num_attention_heads)
            value = _attribute(module, attribute)
            if name not in fields and value is not None:
                value = cls.torch_value(name, plain(value, name))
                default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
                if value != plain(default, name):
                    fields[name] = value
        for field in dataclasses.fields(cls):
            if field.name in cls.spec_fields() and field.name not in fields and hasattr(module, field.name):
                value = cls.torch_value(field.name, plain(getattr(module, field.name), field.name))
                if field.default is None and value == _torch_default(base, field.name):
                    continue  # None in the spec is torch's default (nn.GELU's approximate="none")
                if value is not None and (field.name in EXPLICIT or value != plain(field.default, field.name)):
                    fields[field.name] = value
        _unexpressed(module, base, cls, path)
        return kind, fields
    raise Unmapped(f"{torch_name} has no archcalc layer kind", path)  # pragma: no cover (torch_base found it)


def _attribute(module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


# Constructor options no number of archcalc's depends on: placement, in-place, the normalisations'
# eps and momentum (build uses torch's defaults for them). Any other option set away from its
# default, and not a field of the layer kind, is listed: the spec would be another network.
NUMBERLESS = {"device", "dtype", "inplace", "eps", "momentum"}


def _unexpressed(module, base: type, cls, path: str) -> None:
    torch = require()
    fields = cls.spec_fields()
    for name, parameter in inspect.signature(base.__init__).parameters.items():
        if name in fields or name in NUMBERLESS or parameter.default is parameter.empty or not hasattr(module, name):
            continue
        value = getattr(module, name)
        if value is None or isinstance(value, torch.Tensor):
            continue  # a parameter (bias), not an option
        if plain(value, name) != plain(parameter.default, name):
            raise Unmapped(f"{base.__name__}({name}={value!r}): archcalc's {cls.kind} has no {name}", path)


def _torch_default(base: type, name: str):
    parameter = inspect.signature(base.__init__).parameters.get(name)
    return None if parameter is None or parameter.default is parameter.empty else plain(parameter.default, name)


def plain(value, field: str):
    """A module attribute as a spec value: tuples of equal sizes as one int, tensors as present, floats exact."""
    torch = require()
    if value is dataclasses.MISSING:
        return None
    if field == "bias" and (value is None or isinstance(value, torch.Tensor)):
        return value is not None
    if isinstance(value, (tuple, list)):
        items = [plain(v, field) for v in value]
        return items[0] if len(set(map(repr, items))) == 1 else items
    if isinstance(value, float) and value.is_integer() and field != "p":
        return int(value)
    return value


def takes_activation(kind: str) -> bool:
    return "activation" in LAYERS[kind].spec_fields()


def fold_activations(layers: list[Layer], returned: list[str] = ()) -> list[Layer]:
    """An activation right after a layer that takes an `activation` field, and read by nothing else, joins it."""
    readers: dict[str, int] = dict.fromkeys(returned, 1)
    for layer in layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    out: list[Layer] = []
    renamed: dict[str, str] = {}
    for layer in layers:
        layer = dataclasses.replace(layer, inputs=tuple(renamed.get(n, n) for n in layer.inputs))
        before = out[-1] if out else None
        if (layer.kind == "activation" and before is not None and layer.inputs == (before.name,)
                and readers.get(before.name) == 1 and takes_activation(before.kind)
                and "activation" not in before.fields and set(layer.fields) == {"function"}):
            out[-1] = dataclasses.replace(before, fields=before.fields | {"activation": layer.fields["function"]})
            renamed[layer.name] = before.name
            continue
        out.append(layer)
    return out
