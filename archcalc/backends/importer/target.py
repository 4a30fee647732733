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
from ...core.untrusted import one_line
from ..build import require

HF = "hf:"
PIP_NAMES = {"sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python", "yaml": "pyyaml"}  # import name -> pip's


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


def code_failed(what: str, error: BaseException, hint: str | None = None) -> ArchcalcError:
    """The model's code (or a package it imports) raised `error`: one error naming its first cause and what to do.
    A lazy import hides the cause behind its own error (transformers' "Could not import module 'GPT2Model'"):
    the chain is followed to where it began, and that is shown."""
    cause = error
    for _ in range(32):  # a chain, not a cycle
        if (cause.__cause__ or cause.__context__) is None:
            break
        cause = cause.__cause__ or cause.__context__
    hint = _install_hint(cause) or hint
    return ArchcalcError(f"{what}: {one_line(f'{type(cause).__name__}: {cause}')}" + (f"\n  hint: {hint}" if hint else ""))


def _install_hint(cause: BaseException) -> str | None:
    """What to install where a package is missing, or where torchvision's compiled ops did not load beside this torch
    (a torchvision wheel built for another torch, or for CUDA beside a CPU torch: `operator torchvision::nms does not
    exist`), which breaks every import of torchvision, and so of timm's and transformers' vision models."""
    if "torchvision::" in str(cause) or (isinstance(cause, ImportError) and "torchvision" in str(cause) and "_C" in str(cause)):
        torch = sys.modules.get("torch")
        version = f"torch {torch.__version__}" if torch is not None else "the installed torch"
        return (f"the installed torchvision was not built for {version}: install the torchvision built for it, from the "
                "index torch came from (for a +cpu torch, pip install torchvision --index-url "
                "https://download.pytorch.org/whl/cpu), or uninstall torchvision")
    if isinstance(cause, ImportError) and not isinstance(cause.name, str):
        return None
    if isinstance(cause, ImportError):
        top = cause.name.partition(".")[0]
        return f"pip install {PIP_NAMES.get(top, top)} ({top} is not installed)"
    return None


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
