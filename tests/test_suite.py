"""The suite runs anywhere: without torch the README's `pytest` collects cleanly and skips what needs it; what needs
torch is marked `torch` (conftest.py reads the imports); what is slow is marked `slow` (tests/conftest.py)."""

import subprocess
import sys

import pytest

from conftest import _function_needs_torch, _module_needs_torch
from tests.conftest import ROOT, SLOW

BLOCKED = "import sys; sys.modules['torch'] = None  # as if it were not installed\n"


def test_the_whole_suite_collects_without_torch():
    """A helper that imports torch at its top (tests/oracle/, a module's docstring examples) is not even imported."""
    code = BLOCKED + "import pytest; sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider']))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ERROR" not in done.stdout and " error" not in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize("module", ["archcalc.torch", "archcalc.backends.modules", "tests.oracle.timeline_probe",
                                    "tests.oracle.modules.gpt_block", "tests.memory.test_timeline_oracle",
                                    "tests.memory.test_memory_oracle"])
def test_a_module_that_imports_torch_is_known_to(module):
    assert _module_needs_torch(module)


@pytest.mark.parametrize("module", ["archcalc", "archcalc.cli.main", "archcalc.backends.build", "tests.conftest",
                                    "tests.core.test_expr", "tests.backends.test_torch_optional", "tests.render.test_speed"])
def test_a_module_that_imports_torch_only_when_asked_is_not(module):
    assert not _module_needs_torch(module)


def _asks():
    pytest.importorskip("torch")


def _imports():
    import archcalc.torch  # noqa: F401


def _imports_lazily():
    from archcalc.backends import build  # noqa: F401  (imports torch only when it builds)


def test_a_test_whose_body_needs_torch_is_known_to():
    assert _function_needs_torch(_asks) and _function_needs_torch(_imports)
    assert not _function_needs_torch(_imports_lazily)


def test_a_test_that_asks_for_torch_is_marked(request):
    pytest.importorskip("torch")
    assert request.node.get_closest_marker("torch")


def test_a_test_that_does_not_is_not(request):
    assert request.node.get_closest_marker("torch") is None


def test_the_slow_list_names_files_that_exist():
    for entry in SLOW:
        assert (ROOT / entry.split("::")[0]).is_file(), entry


def _wrong():
    raise AssertionError("wrong")


def test_a_crash_in_a_forked_test_fails_that_test_only():
    """tests/conftest.py's CRASHED: a test whose process dies (SIGTERM here: a SIGSEGV would make faulthandler print
    a traceback of this passing test) fails, and the run goes on."""
    import os
    import signal

    from tests.conftest import _in_a_child

    _in_a_child(lambda: None)
    with pytest.raises(pytest.fail.Exception, match="died of SIGTERM"):
        _in_a_child(lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(pytest.fail.Exception, match="AssertionError: wrong"):
        _in_a_child(_wrong)
    with pytest.raises(pytest.skip.Exception, match="no kernel"):
        _in_a_child(lambda: pytest.skip("no kernel"))
