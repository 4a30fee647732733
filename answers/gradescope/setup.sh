#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image.
set -eu
apt-get install -y python3 python3-pip > /dev/null
pip3 install archcalc
