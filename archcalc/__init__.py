"""archcalc: shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec.

>>> import archcalc
>>> report = archcalc.analyze(archcalc.load("specs/alexnet.toml"))
>>> report.totals["params"]
62378344
>>> archcalc.check(archcalc.load("specs/alexnet.toml"), {"params": 62378344})[0].ok
True
"""

from .core.errors import ArchcalcError, ExprError, SpecError
from .report import Report, Row, analyze
from .spec.read import Spec, load, loads

# Checking claims is imported on first use: `show` needs none of it (a fifth of `import archcalc`).
_LAZY = {"Result": "teaching.check", "Verdict": "teaching.check", "check": "teaching.check", "grade": "teaching.check",
         "Answers": "teaching.claim_keys", "load_answers": "teaching.claim_keys", "ClaimError": "teaching.claim_values"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'archcalc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "Answers", "ArchcalcError", "ClaimError", "ExprError", "Report", "Result", "Row", "Spec", "SpecError", "Verdict",
    "analyze", "check", "grade", "load", "load_answers", "loads",
]
__version__ = "0.1.0"
