"""torchvision (and what imports it: timm, transformers) beside CPU torch, for the import tests.

torchvision's PyPI wheel is a CUDA build whose compiled ops do not load beside torch's CPU build; its
pure-Python models do, once its two meta-registered ops exist. Importing this module defines them
(as torch.library schemas, no kernels: no test runs them) where torchvision's library did not load.
Import it before torchvision, timm or transformers; nothing here downloads anything.
"""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers and timm: never the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _defined(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


if not _defined("nms"):
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # kept alive: the schemas live as long as it
    for _op in ("nms", "qnms"):
        if not _defined(_op):
            _LIBRARY.define(f"{_op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def torchvision():
    """torchvision, or None where it is not installed."""
    try:
        import torchvision as found
    except ImportError:
        return None
    return found
