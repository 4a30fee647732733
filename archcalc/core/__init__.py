"""The pieces every package stands on: errors, exact numbers and formulas (num, tally, printing), the
whitelist expression parser, field kinds, closed choices (dtypes, optimizers, devices), sizes in bytes (units),
formatting, autocast's op lists and the limits on untrusted text. Imports nothing else of archcalc."""
