"""The code passes the linter configured in pyproject.toml ([tool.ruff]); CI runs this with the test extra.
And the docstring examples (conftest.py) leave out only the modules that cannot be imported here."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def ruff() -> list[str]:
    try:
        import ruff as _  # noqa: F401  (installed as a package: run its own binary)
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed (pip install -e '.[test]')")
        return ["ruff"]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_finds_nothing():
    done = subprocess.run([*ruff(), "check", "--no-cache", "archcalc", "tests", "conftest.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_doctests_skip_a_module_whose_top_imports_what_is_missing():
    from conftest import needs_what_is_missing

    assert needs_what_is_missing("import no_such_package_here\n")
    assert needs_what_is_missing("from no_such_package_here.sub import x\n")
    assert not needs_what_is_missing("def f():\n    import no_such_package_here\n")  # imported lazily: collected
    assert not needs_what_is_missing("import json\nfrom . import num\n")
