"""What `archcalc import` reads: FILE.py:NAME, package.module:NAME, or hf:PATH (a transformers config), as a module.

Loading a module runs its file, as any import does: the user's own code. Nothing of the
spec archcalc writes is ever run.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

from ...core.errors import ArchcalcError, SpecError
from ..build import require
from .failure import code_failed

HF = "hf:"


def load_target(target: str, args: str | None = None, class_name: str | None = None):
    """`FILE.py:NAME` or `package.module:NAME` -> an nn.Module (a class or a function returning one is called with `args`, JSON);
    `hf:PATH` -> a transformers model built from the config at PATH (`class_name`: another class than its architectures[0])."""
    torch = require()
    if target.startswith(HF):
        from .hf import model

        if args is not None:
            raise SpecError("an hf: model is built from its config alone: --args has nothing to build", where="--args")
        return model(target[len(HF):], class_name)
    if class_name is not None:
        raise SpecError("--class names a transformers class, for hf:PATH", where="--class")
    where, _, name = target.rpartition(":")
    if not where or not name.isidentifier():
        raise SpecError(f"cannot read {target!r} as FILE.py:NAME or module:NAME", "for example models.py:AlexNet",
                        where="TARGET")
    try:
        module = _import(where)
        found = getattr(module, name)
    except ArchcalcError:
        raise
    except AttributeError:
        raise SpecError(f"{where} has no {name!r}", where="TARGET") from None
    except Exception as error:  # the user's file: whatever it raises is reported, not a traceback of ours
        raise code_failed(f"{where}: importing it failed", error) from None
    given = _arguments(args)
    if isinstance(found, type) or (callable(found) and not isinstance(found, torch.nn.Module)):  # a class or a factory
        try:
            found = found(*given[0], **given[1])
        except Exception as error:
            raise code_failed(f"{target}: building it failed", error, "pass its constructor arguments with --args") from None
    elif args is not None:
        raise SpecError(f"{name} is a module already: --args has nothing to build", where="--args")
    if not isinstance(found, torch.nn.Module):
        raise SpecError(f"{target} is a {type(found).__name__}, not a torch.nn.Module (or a class of one)", where="TARGET")
    return found


def _import(where: str):
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise SpecError("not a regular file (a folder, a pipe or a device)" if path.exists() else "no such file", path=where)
        spec = importlib.util.spec_from_file_location(f"archcalc_import_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # its own imports of files beside it
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    return importlib.import_module(where)


def _arguments(args: str | None) -> tuple[list, dict]:
    if args is None:
        return [], {}
    try:
        value = json.loads(args)
    except json.JSONDecodeError as error:
        raise SpecError(f"not JSON: {error}", 'for example --args \'{"num_classes": 10}\' or \'[10]\'', where="--args") from None
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    return [value], {}


def parse_input(text: str) -> list:
    """'3,224,224' -> [3, 224, 224]; '3,H,W' -> [3, "H", "W"] (names stay symbols)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"\d{1,9}", part) and int(part) > 0:
            out.append(int(part))
        elif re.fullmatch(r"[A-Za-z_]\w{0,31}", part):
            out.append(part)
        else:
            raise SpecError(f"cannot read {part!r} as a size", "write sizes or names: 3,224,224 or 3,H,W", where="--input")
    if not 1 <= len(out) <= 4:
        raise SpecError("one sample's shape has 1 to 4 sizes (no batch axis)", "for example 3,224,224", where="--input")
    return out
