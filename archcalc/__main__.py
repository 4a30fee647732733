"""`python -m archcalc ...` is `archcalc ...`."""

from .cli.main import run

run()
