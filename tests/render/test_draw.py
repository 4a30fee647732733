"""`archcalc draw`: the boxes it draws, the files it writes, and its message without matplotlib."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import ArchcalcError
from archcalc.cli.main import main
from archcalc.render.draw import draw, nodes


def test_pass_through_layers_join_the_box_before_them():
    boxes = nodes(archcalc.analyze(archcalc.load("specs/alexnet.toml")))
    assert [b.name for b in boxes] == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool3", "flatten",
                                       "fc1", "fc2", "fc3"]
    assert boxes[8].label == "dropout p=0.5" and boxes[-1].shape == (1000,)


def test_blocks_fold_at_a_depth():
    spec = archcalc.loads('[model]\ninput = [3, 8, 8]\n[[layers]]\ntype = "conv"\nout_channels = 4\n'
                          'kernel_size = 3\n[[layers]]\ntype = "pool"\nkernel_size = 2\n[[layers]]\ntype = "flatten"\n')
    report = archcalc.analyze(spec)
    named = [replace(row, layer=replace(row.layer, name=name)) for row, name in zip(report.rows, ("stem.conv", "stem.pool", "head"))]
    boxes = nodes(replace(report, rows=tuple(named)), depth=1)
    assert [(b.name, b.kind, b.shape) for b in boxes] == [("stem", "block", (4, 3, 3)), ("head", "flatten", (36,))]


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<svg"), (".png", b"\x89PNG")])
def test_writes_svg_and_png(tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"net{suffix}"
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", str(path)])
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert magic in data[:200]
    if suffix == ".svg":
        text = data.decode()
        assert "conv1" in text and "16×5×5" in text  # names and shapes are text in the SVG


def test_unknown_format_exits_2():
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", "net.gif"])
    assert result.exit_code == 2 and "end it with .svg, .png, .pdf" in result.output


def test_without_matplotlib_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(ArchcalcError, match=r"pip install 'archcalc\[draw\]'"):
        draw(archcalc.analyze(archcalc.load("specs/lenet5.toml")), str(tmp_path / "net.svg"))


def test_residuals_inside_folded_blocks_are_skips():
    boxes = {b.name: b for b in nodes(archcalc.analyze(archcalc.load("specs/resnet18.toml")), depth=2)}
    assert boxes["layer1.0"].kind == "block" and boxes["layer1.0"].skips == {"maxpool"}
    assert boxes["layer2.0"].skips == {"layer1.1"} and boxes["layer2.0"].label == "basic block, 7 layers"
    assert "bn1" not in boxes and "batchnorm relu" in boxes["conv1"].label


def test_a_from_that_jumps_ahead_is_a_skip_when_unfolded():
    boxes = {b.name: b for b in nodes(archcalc.analyze(archcalc.load("specs/resnet18.toml")))}
    assert set(boxes["layer1.0.add"].inputs) == {"layer1.0.conv2", "maxpool"}  # bn2 joined conv2's box


def test_an_existing_file_is_kept_without_force(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "net.svg"
    path.write_text("mine")
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", str(path)])
    assert result.exit_code == 2 and "already exists" in result.output and path.read_text() == "mine"
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", "specs/lenet5.toml", "--force"])
    assert result.exit_code == 2 and "the spec itself" in result.output
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", str(path), "--force"])
    assert result.exit_code == 0 and b"<svg" in path.read_bytes()[:200]
