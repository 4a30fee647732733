"""archcalc: shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec.

>>> import archcalc
>>> report = archcalc.analyze(archcalc.load("specs/alexnet.toml"))
>>> report.totals["params"]
62378344
"""

from .check import Result, Verdict, check, grade
from .claim_keys import Answers, load_answers
from .claim_values import ClaimError
from .engine import analyze
from .errors import ArchcalcError, ExprError, SpecError
from .report import Report, Row
from .spec import Spec, load, loads

__all__ = [
    "Answers", "ArchcalcError", "ClaimError", "ExprError", "Report", "Result", "Row", "Spec", "SpecError", "Verdict",
    "analyze", "check", "grade", "load", "load_answers", "loads",
]
__version__ = "0.1.0"
