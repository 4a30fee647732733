"""pytest runs the docstring examples of archcalc/ as tests (`--doctest-modules`, pyproject.toml).

They read specs/ by relative path, so they run from the repository root; those of archcalc/torch.py
need PyTorch and are not collected where it is missing (importing that module raises then).
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

collect_ignore = [] if importlib.util.find_spec("torch") else ["archcalc/torch.py", "tests/torch_probe.py"]


@pytest.fixture(autouse=True)
def _doctests_at_the_root(request, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)
