"""Code that cannot be imported (`archcalc import`'s model, or a package it imports): one error that names the first
cause and what to do, never a traceback."""

from __future__ import annotations

import sys

from ...core.errors import ArchcalcError
from ...core.untrusted import one_line

PIP_NAMES = {"sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python", "yaml": "pyyaml"}  # import name -> pip's


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
