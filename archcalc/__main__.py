"""`python -m archcalc ...` is `archcalc ...`."""

from .cli import main

main()
