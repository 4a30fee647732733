"""Adding a layer kind is adding one class: nothing outside archcalc/layers/ tests a layer's kind, and a new
class with only its formulas works in every command (show, --explain, JSON, quiz, check, export)."""

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

import archcalc
from archcalc.core.num import Shape
from archcalc.layers import LAYERS, Layer
from archcalc.layers.base import register
from archcalc.render import report as render
from archcalc.teaching import mistakes, quiz

PACKAGE = Path(archcalc.__file__).parent
# backends/importer/ writes spec text from a torch graph: it names the kinds (and folds an `activation`
# layer into the field of the layer before) the way spec.py reads them, as a translator must
WRITERS = set((PACKAGE / "backends" / "importer").rglob("*.py"))
OUTSIDE_LAYERS = sorted(p for p in PACKAGE.rglob("*.py") if PACKAGE / "layers" not in p.parents and p not in WRITERS)
LAYER_CLASSES = {cls.__name__ for cls in LAYERS.values()} | {"Layer"}


def kind_tests(tree: ast.AST) -> list[str]:
    """Comparisons with a kind's name, isinstance with a layer class, getattr of a layer's field by its name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            constants = [c.value for side in sides for c in ast.walk(side) if isinstance(c, ast.Constant)]
            if any(value in LAYERS for value in constants if isinstance(value, str)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = node.args
            layer_class = len(args) == 2 and {n.id for n in ast.walk(args[1]) if isinstance(n, ast.Name)} & LAYER_CLASSES
            if node.func.id == "isinstance" and layer_class and "layer" in ast.unparse(args[0]):  # not a torch module's class
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            named = len(args) >= 2 and isinstance(args[1], ast.Constant)
            if node.func.id in ("getattr", "hasattr") and named and "layer" in ast.unparse(args[0]):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", OUTSIDE_LAYERS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_the_layers_tests_a_kind(path):
    assert kind_tests(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_check_finds_a_kind_test():  # the test above can fail
    code = 'if row.kind in ("conv", "pool"): pass\nif layer.kind == "dense": pass\nisinstance(row.layer, Conv)\ngetattr(row.layer, "groups", 1)'
    assert len(kind_tests(ast.parse(code))) == 4


def test_the_kind_specific_mistakes_a_layer_names_exist():
    recognisers = {r.__name__ for r in mistakes.MISTAKES}
    named = {name for cls in LAYERS.values() for name in cls.mistakes}
    assert named and named <= recognisers


@pytest.fixture
def scale_kind():
    """A new kind, declared the way the kinds of archcalc/layers/ are, with only its formulas."""

    @dataclass(frozen=True, kw_only=True)
    class Scale(Layer):
        kind = "scale_for_test"

        def output(self, x: Shape) -> Shape:
            return x

        def weights(self, x: Shape):
            return x[0]

        def to_torch(self, x: Shape, nn):
            return nn.Identity()

    register(Scale)
    yield Scale
    del LAYERS[Scale.kind]


SPEC = """
[model]
name = "scaled"
input = [3, 8, 8]

[[layers]]
type = "conv"
out_channels = 4
kernel_size = 3

[[layers]]
type = "scale_for_test"

[[layers]]
type = "flatten"
"""


def test_a_new_kind_is_one_class(scale_kind):
    spec = archcalc.loads(SPEC)
    report = archcalc.analyze(spec)
    row = report.rows[1]
    assert (row.kind, row.output, row.params, row.macs) == ("scale_for_test", (4, 6, 6), 4, 0)
    assert "scale_for_test" in render.markdown(report, explained=True)
    assert "scale_for_test" in render.json(report, explained=True)
    assert not row.layer.asks_shape(row.input, row.output)  # it keeps the shape: no shape question
    keys = [q.key for q in quiz.draw(report, 8, seed=0).questions]
    assert keys
    verdicts = archcalc.check(spec, {"scale_for_test1.params": 5, "scale_for_test.params": 4, "scale_for_test1.output": [4, 6, 6]})
    assert [v.ok for v in verdicts] == [False, True, True]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_new_kind_exports(scale_kind):
    from archcalc.backends.export import source

    assert "nn.Identity()" in source(archcalc.analyze(archcalc.loads(SPEC)))
