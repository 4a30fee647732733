"""pytest runs the docstring examples of archcalc/ as tests (`--doctest-modules`, pyproject.toml).

They read specs/ by relative path, so they run from the repository root. A module that imports an
optional dependency at its top (torch, onnx: archcalc/backends/modules.py, archcalc/torch.py) cannot
even be imported where that dependency is missing: it is not collected there.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def _missing(name: str) -> bool:
    return importlib.util.find_spec(name.split(".")[0]) is None


def needs_what_is_missing(source: str) -> bool:
    """Whether a module's top level imports a package that is not installed (or calls require(), archcalc.torch)."""
    for node in ast.parse(source).body:  # the top level only: an import inside a function waits for its call
        if isinstance(node, ast.Import) and any(_missing(alias.name) for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _missing(node.module):
            return True
        if isinstance(node, ast.Expr) and ast.unparse(node) == "require()" and _missing("torch"):
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path)
    if path.suffix == ".py" and not path.name.startswith("test_") and (ROOT / "archcalc" in path.parents or path.name == "torch_probe.py"):
        return True if needs_what_is_missing(path.read_text(encoding="utf-8")) else None
    return None


@pytest.fixture(autouse=True)
def _doctests_at_the_root(request, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)
