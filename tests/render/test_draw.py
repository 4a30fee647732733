"""`archcalc draw`: the boxes it draws, the picture's geometry read from its layout (every line an edge of the
graph, each edge one line, no line through a box, a label or along another line, labels apart, the output
shown, a bounded width), the files it writes, and its message without matplotlib."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import archcalc
from archcalc import ArchcalcError
from archcalc.cli.main import main
from archcalc.core import fmt
from archcalc.render.draw import CLEAR, MAX_WIDTH, OUTPUT, Measure, draw, edges, layout, nodes

SPECS = sorted(p.stem for p in Path("specs").glob("*.toml"))
VALUES = {"gpt2": {"T": 1024}, "lstm_lm": {"T": 35}, "alexnet_symbolic": {"H": 227, "W": 227, "classes": 1000},
          "resnet18_symbolic": {"H": 224, "W": 224}}  # the free sizes' values; the rest have none
EPS = 1e-6
MEASURE = Measure() if importlib.util.find_spec("matplotlib") else None  # its widths are cached


@functools.cache
def report(name: str, symbolic: bool = False):
    return archcalc.analyze(archcalc.load(f"specs/{name}.toml"), **({} if symbolic else VALUES.get(name, {})))


@functools.cache
def picture(name: str, depth: int | None, symbolic: bool = False):
    pytest.importorskip("matplotlib")
    return layout(report(name, symbolic), depth)


def segments(arrow):
    return list(zip(arrow.points, arrow.points[1:]))


def overlap(a0, a1, b0, b1) -> float:
    return min(max(a0, a1), max(b0, b1)) - max(min(a0, a1), min(b0, b1))


def crosses(segment, bounds) -> bool:
    """Whether an axis-parallel segment passes through the open rectangle `bounds`."""
    (x0, y0), (x1, y1) = segment
    bx0, by0, bx1, by1 = bounds
    return overlap(x0, x1, bx0, bx1) > EPS and overlap(y0, y1, by0, by1) > EPS if x0 != x1 and y0 != y1 else (
        (bx0 + EPS < x0 < bx1 - EPS and overlap(y0, y1, by0, by1) > EPS) if x0 == x1 else
        (by0 + EPS < y0 < by1 - EPS and overlap(x0, x1, bx0, bx1) > EPS))


def honest(drawing, report) -> None:
    """Every check of the picture's geometry (the issue's): see each assertion."""
    owner = {"input": 0, OUTPUT: len(drawing.boxes) - 1}
    for i, box in enumerate(drawing.boxes):
        owner.update((row.name, i) for row in box.node.rows)
    rows = report.rows
    graph = [(source, row.name) for row in rows if row.layer.draws_input for source in row.inputs] + [(rows[-1].name, OUTPUT)]
    # every arrow is an edge of the graph, and every edge between two boxes is one arrow
    assert Counter(arrow.edge for arrow in drawing.arrows) == Counter((s, t) for s, t in graph if owner[s] != owner[t])
    for arrow in drawing.arrows:
        source, target = drawing.boxes[arrow.source], drawing.boxes[arrow.target]
        assert (owner[arrow.edge[0]], owner[arrow.edge[1]]) == (arrow.source, arrow.target)
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in segments(arrow)), arrow  # horizontal or vertical
        (x0, y0), (x1, y1) = arrow.points[-2:]
        assert y0 == y1 and x0 < x1 == pytest.approx(target.x0 - CLEAR), arrow  # the head points at the reader's left face
        assert target.y0 - EPS <= y1 <= target.y0 + target.h + EPS
        x, y = arrow.points[0]  # and the line leaves the right of the box it comes from
        assert x == pytest.approx(source.bounds[2] + CLEAR) and source.y0 - EPS <= y <= source.y0 + source.h + EPS
    # no line runs along another (two lines share no stretch) or through a box or a label
    lines = [(n, s) for n, arrow in enumerate(drawing.arrows) for s in segments(arrow)]
    by_y, by_x = {}, {}
    for n, ((x0, y0), (x1, y1)) in lines:
        (by_y.setdefault(round(y0, 9), []) if y0 == y1 else by_x.setdefault(round(x0, 9), [])).append(
            (n, (x0, x1) if y0 == y1 else (y0, y1)))
    for same in [*by_y.values(), *by_x.values()]:
        for i, (n, a) in enumerate(same):
            for m, b in same[i + 1:]:
                assert n == m or overlap(*a, *b) < EPS, (drawing.arrows[n], drawing.arrows[m])
    for n, segment in lines:
        for box in drawing.boxes:
            assert not crosses(segment, box.bounds), (drawing.arrows[n], box.node.name)
        for label in drawing.labels:
            assert not crosses(segment, label.bounds), (drawing.arrows[n], label.text)
    # each skip or branch on a track of its own: no two arrows' horizontal runs between gaps at one height
    tracks = [round(b[1], 9) for arrow in drawing.arrows if not arrow.straight for a, b in segments(arrow)[1:-1] if a[1] == b[1]]
    assert len(tracks) == len(set(tracks))
    # labels apart, inside the picture
    labels = drawing.labels
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert overlap(a.bounds[0], a.bounds[2], b.bounds[0], b.bounds[2]) < EPS or \
                overlap(a.bounds[1], a.bounds[3], b.bounds[1], b.bounds[3]) < EPS, (a.text, b.text)
        assert a.bounds[0] >= 0 and a.bounds[2] <= drawing.width and -drawing.height <= a.bounds[1] and a.bounds[3] <= 0
    for box in drawing.boxes:
        assert box.bounds[0] >= 0 and box.bounds[2] <= drawing.width and -drawing.height <= box.bounds[1] and box.bounds[3] <= 0
    # the output's shape shown at the last arrow's head; the width bounded
    texts = [label.text for label in labels]
    output = texts.index("output")
    assert texts[output + 1] == fmt.shape(rows[-1].output) or not all(isinstance(d, int) for d in rows[-1].output)
    assert drawing.boxes[-1].node.kind == OUTPUT and any(a.target == len(drawing.boxes) - 1 for a in drawing.arrows)
    assert drawing.inches[0] <= MAX_WIDTH


CASES = [(name, depth, False) for name in SPECS for depth in (None, 1)] + [
    ("alexnet_symbolic", None, True), ("resnet18_symbolic", None, True), ("gpt2", None, True)]


@pytest.mark.parametrize("name, depth, symbolic", CASES)
def test_every_shipped_picture_is_honest(name, depth, symbolic):
    honest(picture(name, depth, symbolic), report(name, symbolic))


@st.composite
def networks(draw):
    """A random graph of dense layers of one width: adds reading far back (skips across rows), relus and dropouts
    (joining boxes), learned tensors (sources), names with dots (blocks at a depth)."""
    text, names = "[model]\ninput = [6]\n", []
    for n in range(draw(st.integers(1, 70))):
        name = f"b{n // 5}.l{n % 5}" if draw(st.booleans()) else f"x{n}"
        kind = draw(st.sampled_from(["dense", "dense", "add", "add", "relu", "dropout", "parameter"])) if names else "dense"
        reads = f'from = "{draw(st.sampled_from(names[-8:]))}"\n' if names and draw(st.booleans()) else ""
        if kind == "dense":
            text += f'[[layers]]\nname = "{name}"\ntype = "dense"\nout_features = 6\n{reads}'
        elif kind == "add":
            count = draw(st.integers(2, 3))
            sources = draw(st.lists(st.sampled_from(names), min_size=count, max_size=count))
            text += f'[[layers]]\nname = "{name}"\ntype = "add"\nfrom = {sources!r}\n'.replace("'", '"')
        elif kind == "relu":
            text += f'[[layers]]\nname = "{name}"\ntype = "activation"\nfunction = "relu"\n{reads}'
        elif kind == "dropout":
            text += f'[[layers]]\nname = "{name}"\ntype = "dropout"\np = 0.5\n{reads}'
        else:
            text += f'[[layers]]\nname = "{name}"\ntype = "parameter"\nshape = [6]\n'
        names.append(name)
    return text, draw(st.sampled_from([None, 1, 2]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=networks())
def test_every_random_picture_is_honest(case):
    pytest.importorskip("matplotlib")
    text, depth = case
    analysed = archcalc.analyze(archcalc.loads(text))
    honest(layout(analysed, depth, MEASURE), analysed)


def test_measured_labels_hold_the_text_matplotlib_draws():
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = picture("alexnet_symbolic", None, True)
    fig = Figure(figsize=drawing.inches, dpi=160)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, drawing.width)
    ax.set_ylim(-drawing.height, 0)
    texts = [ax.text(lb.x, lb.y, lb.text, ha=lb.ha, va="top", fontsize=lb.size, weight=lb.weight, parse_math=False)
             for lb in drawing.labels]
    renderer = canvas.get_renderer()
    for label, text in zip(drawing.labels, texts):
        (x0, y0), (x1, y1) = ax.transData.inverted().transform(text.get_window_extent(renderer))
        bx0, by0, bx1, by1 = label.bounds
        assert bx0 - 0.02 <= x0 and x1 <= bx1 + 0.02 and by0 - 0.02 <= y0 and y1 <= by1 + 0.02, label.text


def test_the_issues_pictures():
    pytest.importorskip("matplotlib")
    gpt2 = picture("gpt2", None)
    drawn = {arrow.edge for arrow in gpt2.arrows}
    assert ("wte", "wpe") not in drawn and ("wpe", "embed") in drawn  # wpe reads wte for T only
    resnet = picture("resnet18", None)
    at = {box.node.name: box for box in resnet.boxes}
    branch, main = at["layer2.0.downsample.0"], at["layer2.0.conv1"]
    assert branch.column == main.column and branch.lane < main.lane == 0  # parallel, below the main line
    assert {("layer1.1.add", "layer2.0.downsample.0"), ("layer2.0.downsample.1", "layer2.0.add")} <= {a.edge for a in resnet.arrows}
    symbolic = picture("alexnet_symbolic", None, True)
    title = [label for label in symbolic.labels if label.weight == "bold" and label.size > 10]
    assert title and all(len(label.text) < 100 for label in title) and "floor" not in " ".join(t.text for t in title)
    shapes = [label.text for label in symbolic.labels if label.colour == "#1f4e79"]
    assert "256×H₄×W₄" in shapes and "floor" not in " ".join(shapes)
    assert any(label.text == "H₄ = floor(H/32 - 63/32) + 1" for label in symbolic.labels)


def test_pass_through_layers_join_the_box_before_them():
    boxes = nodes(archcalc.analyze(archcalc.load("specs/alexnet.toml")))
    assert [b.name for b in boxes] == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool3", "flatten",
                                       "fc1", "fc2", "fc3"]
    assert boxes[8].label == "dropout p=0.5" and boxes[-1].shape == (1000,)


def test_a_layer_joins_only_the_tensor_no_one_else_reads():
    spec = archcalc.loads('[model]\ninput = [4]\n[[layers]]\nname = "a"\ntype = "dense"\nout_features = 4\n'
                          '[[layers]]\nname = "r"\ntype = "activation"\nfunction = "relu"\n'
                          '[[layers]]\nname = "s"\ntype = "add"\nfrom = ["a", "r"]\n')
    boxes = nodes(archcalc.analyze(spec))
    assert [b.name for b in boxes] == ["a", "r", "s"]  # s reads a itself: r cannot hide it
    assert Counter(edges(archcalc.analyze(spec))) == Counter([("input", "a"), ("a", "r"), ("a", "s"), ("r", "s"), ("s", OUTPUT)])


def test_blocks_fold_at_a_depth():
    spec = archcalc.loads('[model]\ninput = [3, 8, 8]\n[[layers]]\ntype = "conv"\nout_channels = 4\n'
                          'kernel_size = 3\n[[layers]]\ntype = "pool"\nkernel_size = 2\n[[layers]]\ntype = "flatten"\n')
    report_ = archcalc.analyze(spec)
    named = [replace(row, layer=replace(row.layer, name=name), inputs=inputs)
             for row, name, inputs in zip(report_.rows, ("stem.conv", "stem.pool", "head"), (("input",), ("stem.conv",), ("stem.pool",)))]
    boxes = nodes(replace(report_, rows=tuple(named)), depth=1)
    assert [(b.name, b.kind, b.shape) for b in boxes] == [("stem", "block", (4, 3, 3)), ("head", "flatten", (36,))]


def test_a_folded_block_shows_each_edge_into_it():
    drawing = picture("resnet18", 2)
    into = [a.edge for a in drawing.arrows if drawing.boxes[a.target].node.name == "layer1.0"]
    assert sorted(into) == [("maxpool", "layer1.0.add"), ("maxpool", "layer1.0.conv1")]  # the residual, and the main path
    assert nodes(report("resnet18"), depth=2)[2].label == "basic block, 5 layers"


def test_a_from_that_jumps_ahead_is_an_arrow_of_its_own():
    boxes = {b.name: b for b in nodes(archcalc.analyze(archcalc.load("specs/resnet18.toml")))}
    assert set(boxes["layer1.0.add"].inputs) == {"layer1.0.conv2", "maxpool"}  # bn2 joined conv2's box


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
        assert "conv1" in text and "16×5×5" in text and "output" in text  # names and shapes are text in the SVG


def test_the_same_spec_gives_the_same_svg(tmp_path):
    pytest.importorskip("matplotlib")
    spec = archcalc.analyze(archcalc.load("specs/lenet5.toml"))
    first, second = draw(spec, str(tmp_path / "a.svg")), draw(spec, str(tmp_path / "b.svg"))
    assert Path(first).read_bytes() == Path(second).read_bytes()  # no date, no random ids: docs/ diffs stay honest


def test_unknown_format_exits_2():
    result = CliRunner().invoke(main, ["draw", "specs/lenet5.toml", "-o", "net.gif"])
    assert result.exit_code == 2 and "end it with .svg, .png, .pdf" in result.output


def test_without_matplotlib_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(ArchcalcError, match=r"pip install matplotlib \(from archcalc's checkout: pip install '\.\[draw\]'\)"):
        draw(archcalc.analyze(archcalc.load("specs/lenet5.toml")), str(tmp_path / "net.svg"))


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
