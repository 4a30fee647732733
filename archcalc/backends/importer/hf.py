"""Hugging Face transformers models from a config alone (`archcalc import hf:PATH`): no weights, no network.

PATH is a `config.json` or a folder holding one. The class is the config's `architectures[0]`, or
the one `--class` names; it must be a model class of the `transformers` package itself (a config's
`auto_map` would run code from elsewhere: never). The model is built on torch's meta device, so a
7-billion-parameter config costs no memory, and nothing is read but the config: HF_HUB_OFFLINE is
set before transformers is imported, so nothing is downloaded either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...core import untrusted
from ...core.errors import ArchcalcError, SpecError
from ..build import require
from .failure import code_failed

CONFIG = "config.json"
REINSTALL = "pip install --upgrade transformers (a version that supports the installed torch)"


def config_path(path: str) -> Path:
    found = Path(path)
    if found.is_dir():
        found = found / CONFIG
    if not found.is_file():
        why = "not a regular file (a pipe or a device)" if found.exists() else f"no {CONFIG} there" if Path(path).is_dir() else "no such file"
        raise SpecError(why, "hf:PATH takes a transformers config.json, or the folder that holds one", path=path)
    return found


def transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: never the network
    try:
        import transformers as found
    except ImportError as error:
        if error.name == "transformers":
            raise ArchcalcError("hf:PATH needs transformers, which is not installed\n  hint: pip install transformers") from None
        raise code_failed("hf:PATH: importing transformers failed", error, REINSTALL) from None
    except Exception as error:  # a transformers that does not import beside this torch
        raise code_failed("hf:PATH: importing transformers failed", error, REINSTALL) from None
    return found


def config(path: str):
    """The transformers config of a config.json (its model_type picks the class)."""
    file = config_path(path)
    try:
        data = json.loads(untrusted.read_text(file, "a transformers config", SpecError))
    except json.JSONDecodeError as error:
        raise SpecError(f"not JSON: {error}", path=str(file)) from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise SpecError("no model_type: not a transformers config", "a model's config.json names its model_type", path=str(file))
    hf = transformers()
    try:
        classes = hf.models.auto.configuration_auto.CONFIG_MAPPING
        known = data["model_type"] in classes
        kind = classes[data["model_type"]] if known else None
    except Exception as error:  # its lazy modules import on first use
        raise code_failed(f"hf:PATH: transformers cannot load the config class of {data['model_type']!r}", error, REINSTALL) from None
    if kind is None:
        raise SpecError(f"model_type {data['model_type']!r} is not one transformers {hf.__version__} knows", path=str(file))
    try:
        found = kind.from_dict(data)
    except Exception as error:  # transformers' own validation
        raise SpecError(f"transformers cannot read it: {type(error).__name__}: {error}", path=str(file)) from None
    found.use_cache = False  # no key/value cache: the forward of training
    return found


def model(path: str, class_name: str | None = None):
    """The model of a config, on the meta device (its parameters have shapes and no memory)."""
    torch = require()
    hf = transformers()
    found = config(path)
    names = found.architectures if isinstance(found.architectures, (list, tuple)) else []
    name = class_name or (names[0] if names else None)
    if name is not None and not isinstance(name, str):
        raise SpecError(f"architectures[0] is {name!r}, not a class name", "say which class with --class", path=str(config_path(path)))
    if name is None:
        raise SpecError("the config names no architectures: say which class with --class",
                        "for example --class GPT2LMHeadModel", path=str(config_path(path)))
    try:
        cls = getattr(hf, name, None) if name.isidentifier() else None
    except Exception as error:  # transformers imports a model's module on first use: what that module imports may fail
        raise code_failed(f"{name}: transformers cannot import it", error, REINSTALL) from None
    if not (isinstance(cls, type) and issubclass(cls, hf.PreTrainedModel)):
        raise SpecError(f"{name!r} is not a model class of transformers {hf.__version__}", where="--class" if class_name else None,
                        path=None if class_name else str(config_path(path)))
    try:
        with torch.device("meta"):
            return cls(found)
    except Exception as error:
        raise code_failed(f"{name}: building it from {config_path(path)} failed", error) from None


def default_input(module) -> list | None:
    """One sample's shape for a transformers model: ["T"] token ids, or [C, H, W] pixels at the config's size."""
    config = getattr(module, "config", None)
    name = getattr(module, "main_input_name", None)
    if config is None or name is None:
        return None
    if name == "input_ids":
        return ["T"]
    if name == "pixel_values":
        size = getattr(config, "image_size", None)
        size = size if isinstance(size, (list, tuple)) else [size, size]
        return [getattr(config, "num_channels", 3), *size]
    return None
