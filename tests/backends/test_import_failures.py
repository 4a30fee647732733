"""import's entry points where the model's code cannot be imported: one error (exit 2) naming the first cause and
what to do, never a traceback. The failures are simulated: transformers missing, transformers or a model class whose
import breaks on torchvision's compiled ops (a torchvision wheel not built for the installed torch), a package the
user's file imports missing."""

import builtins
import json
import sys
import types

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner

from archcalc.cli.main import main
from tests.conftest import ROOT

GPT2 = str(ROOT / "tests" / "fixtures" / "hf" / "gpt2")
TORCHVISION = "operator torchvision::nms does not exist"  # what a CUDA torchvision wheel raises beside CPU torch


def run(*args: str):
    done = CliRunner().invoke(main, ["import", *args])
    assert done.exit_code == 2, (done.output, done.exception)
    assert "Traceback" not in done.output
    return done.output


def lazy_failure(name: str):
    """transformers' own way: a model class imported on first use, its module's failure behind its own error."""
    try:
        try:
            raise RuntimeError(TORCHVISION)
        except RuntimeError as error:
            raise ModuleNotFoundError(f"Could not import module {name!r}. Are this object's requirements defined "
                                      "correctly?") from error
    except ModuleNotFoundError as error:
        return error


class FakeConfig:
    """A config class as transformers' CONFIG_MAPPING gives it: from_dict, architectures, use_cache."""

    @classmethod
    def from_dict(cls, data: dict):
        found = cls()
        found.architectures, found.use_cache = data["architectures"], True
        return found


def broken_transformers() -> types.ModuleType:
    """transformers importable, its configs readable, every model class failing to import as on this machine."""
    fake = types.ModuleType("transformers")
    fake.__version__ = "5.0"
    fake.models = types.SimpleNamespace(auto=types.SimpleNamespace(configuration_auto=types.SimpleNamespace(
        CONFIG_MAPPING={"gpt2": FakeConfig})))

    def __getattr__(name):
        raise lazy_failure(name)

    fake.__getattr__ = __getattr__
    return fake


def test_hf_without_transformers_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers: ModuleNotFoundError
    output = run(f"hf:{GPT2}")
    assert "needs transformers, which is not installed" in output and "hint: pip install transformers" in output


def test_hf_where_a_model_class_cannot_import_names_torchvision_and_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", broken_transformers())
    output = run(f"hf:{GPT2}")
    assert f"GPT2LMHeadModel: transformers cannot import it: RuntimeError: {TORCHVISION}" in output
    assert "the installed torchvision was not built for torch" in output and "or uninstall torchvision" in output


def test_hf_where_transformers_itself_cannot_import(monkeypatch):
    real = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "transformers":
            raise RuntimeError(TORCHVISION)
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    output = run(f"hf:{GPT2}")
    assert f"importing transformers failed: RuntimeError: {TORCHVISION}" in output and "torchvision was not built" in output


def test_hf_where_transformers_breaks_otherwise_says_to_upgrade_it(monkeypatch):
    fake = broken_transformers()
    fake.models = None  # its config mapping cannot be reached: AttributeError
    monkeypatch.setitem(sys.modules, "transformers", fake)
    output = run(f"hf:{GPT2}")
    assert "transformers cannot load the config class of 'gpt2': AttributeError" in output
    assert "hint: pip install --upgrade transformers" in output


@pytest.mark.parametrize("source, listed, hint", [
    (f"raise RuntimeError({TORCHVISION!r})\n", f"RuntimeError: {TORCHVISION}", "the installed torchvision was not built for torch"),
    ("import archcalc_no_such_package\n", "No module named 'archcalc_no_such_package'",
     "pip install archcalc_no_such_package (archcalc_no_such_package is not installed)"),
    ("import sklearn\n", "import of sklearn halted", "pip install scikit-learn (sklearn is not installed)"),
])
def test_a_file_or_module_whose_import_fails_names_the_cause_and_what_to_install(tmp_path, monkeypatch, source, listed, hint):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # scikit-learn missing (its import name is not pip's)
    (tmp_path / "broken_model.py").write_text(source + "Net = None\n")
    output = run(f"{tmp_path / 'broken_model.py'}:Net", "--input", "3,8,8")
    assert "broken_model.py: importing it failed" in output and listed in output and f"hint: {hint}" in output
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_model", raising=False)
    output = run("broken_model:Net", "--input", "3,8,8")
    assert "broken_model: importing it failed" in output and listed in output and f"hint: {hint}" in output


def test_a_module_whose_name_imports_lazily_shows_the_first_cause(monkeypatch):
    """package.module:NAME where the package imports NAME on first use (transformers:GPT2Model, timm's lazy modules)."""
    fake = types.ModuleType("archcalc_lazy_package")

    def __getattr__(name):
        raise lazy_failure(name)

    fake.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "archcalc_lazy_package", fake)
    output = run("archcalc_lazy_package:GPT2Model", "--input", "T")
    assert f"archcalc_lazy_package: importing it failed: RuntimeError: {TORCHVISION}" in output
    assert "torchvision was not built" in output and "Could not import module" not in output


def test_building_a_model_whose_constructor_imports_what_is_missing(tmp_path):
    (tmp_path / "late.py").write_text("def Net():\n    import archcalc_no_such_package\n")
    output = run(f"{tmp_path / 'late.py'}:Net", "--input", "3,8,8")
    assert "building it failed: ModuleNotFoundError" in output and "hint: pip install archcalc_no_such_package" in output


def test_a_constructor_that_fails_otherwise_still_points_at_args(tmp_path):
    (tmp_path / "strict.py").write_text("def Net(width):\n    raise ValueError('width')\n")
    output = run(f"{tmp_path / 'strict.py'}:Net", "--input", "3,8,8", "--args", json.dumps({"width": 3}))
    assert "building it failed: ValueError: width" in output and "hint: pass its constructor arguments with --args" in output
