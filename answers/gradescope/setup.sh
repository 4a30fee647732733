#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image. archcalc is not on PyPI yet: the zip carries
# its wheel, built from the checkout with `pip wheel --no-deps -w autograder .` (docs/grading.md, "The autograder").
set -eu
apt-get install -y python3 python3-pip > /dev/null
pip3 install /autograder/source/archcalc-*.whl
