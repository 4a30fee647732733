"""What the whole suite shares: the docstring examples of archcalc/, the `torch` marker, hypothesis's profiles.

pytest runs the docstring examples of archcalc/ as tests (`--doctest-modules`, pyproject.toml). They read specs/
by relative path, so they run from the repository root. A module that imports an optional dependency at its top
(torch, onnx: archcalc/backends/modules.py, archcalc/torch.py; the torch helpers in tests/oracle/) cannot even be
imported where that dependency is missing: it is not collected there.

Every test that needs torch, by what its module or its own body imports, read from the source, is marked `torch`
(`pytest -m "not torch"`); where torch is missing it is skipped, whether or not it asks with importorskip.

Hypothesis draws fresh cases on every run of a developer's `pytest`; with CI set (CI=true, as CI runs .ci/run), the
"ci" profile derandomizes: each test draws the same cases every run, from its own source, and keeps no database. The
price: CI explores nothing new from one run to the next (a test's cases change only when its source does), so what
random drawing finds, it finds in developers' runs; CI's verdict on a commit no longer depends on luck.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent

# torch's CPU ops on the tests' tiny tensors: one thread does each in microseconds, where a pool of threads on a
# busy machine (CI, or engineers sharing two cores) waits for its turn. Read by torch when it starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _CI else "default"))


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name.split(".")[0]) is None
    except ValueError:  # sys.modules[name] is None: blocked, as if not installed
        return True


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
    if path.suffix == ".py" and not path.name.startswith("test_") and path.name != "conftest.py" and (
        ROOT / "archcalc" in path.parents or ROOT / "tests" in path.parents
    ):
        return True if needs_what_is_missing(path.read_text(encoding="utf-8")) else None
    return None


@pytest.fixture(autouse=True)
def _doctests_at_the_root(request, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)


# --- the torch marker: which modules and tests need torch, from their imports ---------------------------------


def _file(module: str) -> Path | None:
    """The file of one of this repository's modules (archcalc.x.y, tests.x.y), or None for any other."""
    if module.split(".")[0] not in ("archcalc", "tests"):
        return None
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(nodes, module: str) -> list[str]:
    """The modules that these statements import (each package on the way too), relative imports resolved from `module`."""
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = module.split(".")[: len(module.split(".")) - node.level] if node.level else []
            base = ".".join([*package, *(node.module.split(".") if node.module else [])])
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return [".".join(name.split(".")[: i + 1]) for name in names for i in range(name.count(".") + 1)]


def _asks_for_torch(node) -> bool:
    """importorskip("torch") (pytest.importorskip or bare), or archcalc's require()."""
    if not isinstance(node, ast.Call):
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if name == "require" and not node.args:
        return True
    return name == "importorskip" and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "torch"


def _statements_need_torch(nodes, module: str) -> bool:
    """Whether these statements (and those inside them) import torch or one of our modules that does, or ask for it."""
    inner = [n for node in nodes for n in ast.walk(node)]
    if any(_asks_for_torch(n) for n in inner):
        return True
    imports = [n for n in inner if isinstance(n, ast.Import | ast.ImportFrom)]
    return any(name == "torch" or _module_needs_torch(name) for name in _imported(imports, module))


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run on import: all but the bodies of functions and classes."""
    return [node for node in tree.body if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]


_VISITING: set[str] = set()


@functools.cache
def _module_needs_torch(module: str) -> bool:
    """Whether importing one of this repository's modules imports torch, directly or through another of them."""
    path = _file(module)
    if path is None or module in _VISITING:  # not ours, or a cycle of imports, worked out where it started
        return False
    _VISITING.add(module)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # a relative import counts its dots from the module's package: the package itself for an __init__.py
        return _statements_need_torch(_top_level(tree), f"{module}.__init__" if path.name == "__init__.py" else module)
    finally:
        _VISITING.discard(module)


def _module_name(path: Path) -> str:
    return ".".join(path.resolve().relative_to(ROOT).with_suffix("").parts)


@functools.cache
def _function_needs_torch(function) -> bool:
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return False
    return _statements_need_torch(ast.parse(source).body, function.__module__ or "")


def needs_torch(item) -> bool:
    """Whether a collected test needs torch: its module imports it (or calls importorskip("torch")), or its body does."""
    path = Path(str(item.path)).resolve()
    if ROOT not in path.parents:
        return False
    if _module_needs_torch(_module_name(path)):
        return True
    function = getattr(item, "function", None)
    return function is not None and _function_needs_torch(function)


def pytest_collection_modifyitems(config, items):
    missing = _missing("torch")
    for item in items:
        block = getattr(getattr(item, "example", None), "parsed", None)
        if block is not None and hasattr(block, "needs"):  # an example of the docs: it says what it needs
            _mark_example(item, block)
        elif needs_torch(item):
            item.add_marker(pytest.mark.torch)
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"needs torch, which is not installed ({INSTALL_TORCH})"))


# --- the examples of the README and docs/: every command shown is run and its output compared -------------------

INSTALL_TORCH = "pip install torch"
DOCUMENTS = [ROOT / "README.md", ROOT / "docs"]


def pytest_collect_file(file_path, parent):
    """README.md and docs/*.md: their examples, by Sybil and tests/docs/runner.py (which says how a block is run)."""
    path = Path(file_path)
    if path.suffix == ".md" and (path == DOCUMENTS[0] or path.parent == DOCUMENTS[1]):
        return _docs_collector()(path, parent)
    return None


@functools.cache
def _docs_collector():
    from sybil import Sybil

    from tests.docs import runner

    return Sybil(parsers=[runner.Parser()], path=str(ROOT), patterns=["*.md"], setup=runner.setup,
                 teardown=runner.teardown).pytest()


def _mark_example(item, block) -> None:
    if "slow" in block.options or "torch" in block.needs:  # torch's own import: seconds a command
        item.add_marker(pytest.mark.slow)
    if "torch" in block.needs:
        item.add_marker(pytest.mark.torch)
    if block.missing:
        item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(block.missing)}, which is not installed"))


def pytest_sessionfinish(session, exitstatus):
    """ARCHCALC_UPDATE_DOCS=1: the examples' new outputs written into their documents."""
    if os.environ.get("ARCHCALC_UPDATE_DOCS") == "1":
        from tests.docs import runner

        for path in runner.apply_edits():
            print(f"\nwrote the new outputs into {Path(path).relative_to(ROOT)}: read the diff")
