"""torch is optional: archcalc imports and runs without it, and says how to install it when a command needs it.

These tests do not need torch; they run in fresh interpreters so that nothing imported here leaks in.
"""

import subprocess
import sys

from tests.conftest import ROOT, SPECS


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_import_archcalc_does_not_import_torch():
    done = run(
        "import sys, archcalc, archcalc.cli.main, archcalc.backends.build, archcalc.backends.verify, "
        "archcalc.backends.export, archcalc.backends.bench, archcalc.backends.tables\n"
        f"archcalc.analyze(archcalc.load({str(SPECS / 'alexnet.toml')!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_show_works_without_torch():
    done = run(
        "import sys; sys.modules['torch'] = None  # as if it were not installed\n"
        "from archcalc.cli.main import main\n"
        f"main(['show', {str(SPECS / 'lenet5.toml')!r}])"
    )
    assert done.returncode == 0, done.stderr
    assert "61,706" in done.stdout


def test_a_missing_torch_says_how_to_install_it():
    for command in ("verify", "export", "bench"):
        done = run(
            "import sys; sys.modules['torch'] = None\n"
            "from archcalc.cli.main import main\n"
            f"main([{command!r}, {str(SPECS / 'lenet5.toml')!r}])"
        )
        assert done.returncode == 2, (command, done.stderr)
        assert "pip install torch" in done.stderr, command
        assert "Traceback" not in done.stderr, command


def test_the_library_raises_an_archcalc_error_without_torch():
    done = run(
        "import sys; sys.modules['torch'] = None\n"
        "import archcalc\n"
        "from archcalc.backends.build import build\n"
        "try:\n"
        f"    build({str(SPECS / 'lenet5.toml')!r})\n"
        "except archcalc.ArchcalcError as error:\n"
        "    print(error)\n"
    )
    assert "PyTorch" in done.stdout and "pip install torch" in done.stdout, done.stderr
