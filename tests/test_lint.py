"""The code passes the linter configured in pyproject.toml ([tool.ruff]); CI runs this with the test extra."""

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


def ruff() -> list[str]:
    try:
        import ruff as _  # noqa: F401  (installed as a package: run its own binary)
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed (pip install -e '.[test]')")
        return ["ruff"]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_finds_nothing():
    done = subprocess.run([*ruff(), "check", "--no-cache", "archcalc", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
