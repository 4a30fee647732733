"""archcalc: shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec.

>>> import archcalc
>>> report = archcalc.analyze(archcalc.load("specs/alexnet.toml"))
>>> report.totals["params"]
62378344
>>> archcalc.check(archcalc.load("specs/alexnet.toml"), {"params": 62378344})[0].ok
True
"""

import sys
import types

from .engine import analyze
from .errors import ArchcalcError, ExprError, SpecError
from .report import Report, Row
from .spec import Spec, load, loads

# Checking claims is imported on first use: `show` needs none of it (a fifth of `import archcalc`).
_LAZY = {"Result": "check", "Verdict": "check", "check": "check", "grade": "check",
         "Answers": "claim_keys", "load_answers": "claim_keys", "ClaimError": "claim_values"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'archcalc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # Importing the submodule archcalc.check sets the package's `check` to it: the name stays the function.
        if name == "check" and isinstance(value, types.ModuleType):
            value = value.check
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Answers", "ArchcalcError", "ClaimError", "ExprError", "Report", "Result", "Row", "Spec", "SpecError", "Verdict",
    "analyze", "check", "grade", "load", "load_answers", "loads",
]
__version__ = "0.1.0"
