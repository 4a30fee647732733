"""import: a torch module traced into a spec, equal in every number; what cannot be mapped is listed, never counted as 0."""

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends import importer  # noqa: E402
from archcalc.backends.export import source  # noqa: E402
from archcalc.cli import main  # noqa: E402

from .conftest import ROOT, SPECS  # noqa: E402

MODULES = ROOT / "tests" / "modules"
COURSE_ALEXNET = f"{MODULES / 'course_alexnet.py'}:AlexNet"


def numbers(report) -> dict:
    """Everything a report says about the network, its name and given values aside."""
    data = report.to_dict()
    return {key: data[key] for key in ("input", "output", "layers", "totals", "by_type", "memory")}


def imported(target: str, shape: list, **values):
    text = importer.import_module(importer.load_target(target), shape)
    return archcalc.analyze(archcalc.loads(text), **values), text


def test_the_notes_alexnet_class_is_specs_alexnet_in_every_number():
    report, text = imported(COURSE_ALEXNET, [3, 224, 224])
    assert numbers(report) == numbers(archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")))
    assert 'name = "fc3"' in text and "activation" not in text.split('name = "fc3"')[1]


def test_symbolic_input_gives_formulas_in_h_and_w():
    report, _ = imported(COURSE_ALEXNET, [3, "H", "W"])
    assert str(report.rows[0].output[1]) == "floor(H/4 - 7/4) + 1"
    assert report.totals["params"] != 62378344  # fc1's weights depend on H and W
    assert numbers(archcalc.analyze(report_spec := archcalc.loads(importer.import_module(
        importer.load_target(COURSE_ALEXNET), [3, "H", "W"])), H=224, W=224)) == numbers(
        archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")))
    assert report_spec.input[1].names == {"H"}


@pytest.mark.parametrize("name", ["lenet5.toml", "alexnet.toml", "mlp_quiz_biases.toml"])
def test_export_then_import_gives_the_same_numbers(name, tmp_path):
    report = archcalc.analyze(archcalc.load(SPECS / name))
    path = tmp_path / "net.py"
    path.write_text(source(report, "Net"))
    again, _ = imported(f"{path}:Net", list(report.input))
    assert numbers(again) == numbers(report)


class Unmappable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.odd = torch.nn.PixelShuffle(2)

    def forward(self, x):
        x = self.conv(x)
        x = torch.sort(x, dim=1).values
        x = self.odd(x * 2)
        return x


def test_every_unmapped_operation_is_listed_with_its_line():
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(Unmappable(), [3, 32, 32])
    text = str(error.value)
    assert len(error.value.problems) == 4, text  # sort, its .values, x * 2, PixelShuffle
    assert "sort()" in text and "odd: PixelShuffle has no archcalc layer kind" in text
    assert "mul with a constant" in text
    assert "test_torch_import.py:" in text  # the source line of each


def test_cli_writes_the_spec_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "alexnet.toml"
    runner = CliRunner()
    done = runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert archcalc.analyze(archcalc.load(out)).totals["params"] == 62378344
    again = runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(main, ["import", COURSE_ALEXNET, "--input", "3,224,224", "-o", str(out), "--force"]).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["nowhere.py:Net", "--input", "3,8,8"], "no such file"),
    ([COURSE_ALEXNET.replace(":AlexNet", ":Nope"), "--input", "3,8,8"], "has no 'Nope'"),
    ([COURSE_ALEXNET, "--input", "3,x y,8"], "cannot read 'x y' as a size"),
    ([COURSE_ALEXNET, "--input", "3,224,224", "--args", "{bad"], "not JSON"),
    ([COURSE_ALEXNET, "--input", "3,224,224", "--args", '{"width": 3}'], "building it failed"),
    (["Net", "--input", "3,8,8"], "FILE.py:NAME"),
])
def test_bad_targets_exit_2_with_one_message(args, message):
    done = CliRunner().invoke(main, ["import", *args])
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output
