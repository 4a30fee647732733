"""archcalc: shapes, parameters, FLOPs and memory of a neural network, from a short TOML spec.

>>> import archcalc
>>> report = archcalc.analyze(archcalc.load("specs/alexnet.toml"))
>>> report.totals["params"]
62378344
"""

from .engine import analyze
from .errors import ArchcalcError, ExprError, SpecError
from .report import Report, Row
from .spec import Spec, load, loads

__all__ = ["ArchcalcError", "ExprError", "Report", "Row", "Spec", "SpecError", "analyze", "load", "loads"]
__version__ = "0.1.0"
