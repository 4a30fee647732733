"""`python -m archcalc ...` is `archcalc ...`."""

from .cli import run

run()
