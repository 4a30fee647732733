"""Adding a layer kind is adding one class: nothing outside archcalc/layers/ tests a layer's kind, and a new
class with only its formulas works in every command (show, --explain, JSON, quiz, check, export)."""

import ast
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

import archcalc
from archcalc.core.num import Shape
from archcalc.layers import LAYERS, Layer
from archcalc.layers.base import register, unregister
from archcalc.render import report as render
from archcalc.teaching import mistakes, quiz

PACKAGE = Path(archcalc.__file__).parent
# backends/importer/ writes spec text from a torch graph: it names the kinds (and folds an `activation`
# layer into the field of the layer before) the way spec.py reads them, as a translator must
WRITERS = set((PACKAGE / "backends" / "importer").rglob("*.py"))
OUTSIDE_LAYERS = sorted(p for p in PACKAGE.rglob("*.py") if PACKAGE / "layers" not in p.parents and p not in WRITERS)


def _subclasses(cls: type) -> set[type]:
    return {cls} | {c for sub in cls.__subclasses__() for c in _subclasses(sub)}


LAYER_CLASSES = {cls.__name__ for cls in _subclasses(Layer)}  # the kinds and their bases (ElementWise, Convolution...)


def kind_tests(tree: ast.AST) -> list[str]:
    """Comparisons with a kind's name, isinstance with a layer class, getattr of a layer's field by its name, and
    tables of kinds (a dict keyed by kind names, a set of them: what a kind knows of itself is its class's)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Dict, ast.Set)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            if any(isinstance(i, ast.Constant) and isinstance(i.value, str) and i.value in LAYERS for i in items):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Compare):
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
    code = ('if row.kind in ("conv", "pool"): pass\nif layer.kind == "dense": pass\nisinstance(row.layer, Conv)\n'
            'getattr(row.layer, "groups", 1)\nCOLOURS = {"conv": "#f4c27a", "block": "#f9d9a8"}\nPASSING = {"activation", "dropout"}')
    assert len(kind_tests(ast.parse(code))) == 6


def _methods(cls: ast.ClassDef) -> list[str]:
    return [node.name for node in cls.body if isinstance(node, ast.FunctionDef)]


LAYER_SOURCE = ast.parse((PACKAGE / "layers" / "base.py").read_text(encoding="utf-8"))
INTERFACE = _methods(next(n for n in LAYER_SOURCE.body if isinstance(n, ast.ClassDef) and n.name == "Layer"))
FORMULAS = INTERFACE[INTERFACE.index("output"):INTERFACE.index("keeps") + 1]


@pytest.mark.parametrize("path", sorted((PACKAGE / "layers").glob("*.py")), ids=lambda p: p.name)
def test_every_kind_lists_its_methods_in_layers_order(path):
    """A reader finds a formula in the same place in every kind: Layer's methods in Layer's order, the four formulas
    (output, weights and biases, MACs, kept tensors) before anything of the kind's own."""
    for cls in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in LAYER_CLASSES or cls.name == "Layer":
            continue
        names = _methods(cls)
        hooks = [n for n in names if n in INTERFACE]
        assert hooks == sorted(hooks, key=INTERFACE.index), f"{cls.name}: {hooks}"
        last_formula = max((i for i, n in enumerate(names) if n in FORMULAS), default=-1)
        own = [n for n in names[:last_formula] if n not in INTERFACE and not hasattr(Layer, n)]
        assert not own, f"{cls.name}: {own} come before its formulas"


_MEMORY_START = next(i for i, line in enumerate((PACKAGE / "layers" / "base.py").read_text(encoding="utf-8").splitlines(), 1)
                     if line.startswith("    # 7. The memory timeline's hooks"))
_LAYER = next(n for n in LAYER_SOURCE.body if isinstance(n, ast.ClassDef) and n.name == "Layer")
# Layer's last group, the memory timeline's
MEMORY_HOOKS = [n.name for n in _LAYER.body if isinstance(n, ast.FunctionDef) and n.lineno > _MEMORY_START]


def _yes_no(method: ast.FunctionDef) -> bool:
    """Whether a method only returns True, False or None (its docstring aside)."""
    body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return (len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Constant)
            and body[0].value.value in (True, False, None))


def _constant(method: ast.FunctionDef) -> bool:
    """Whether a method only returns a literal (a number, a string, a tuple of them), its arguments unused."""
    body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return False
    try:
        ast.literal_eval(body[0].value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("path", sorted((PACKAGE / "layers").glob("*.py")), ids=lambda p: p.name)
def test_a_kinds_yes_no_facts_are_class_attributes(path):
    """A constant fact of a kind (asks_shape, joins_box_before, contiguous_input...) is a class attribute, not a method
    that returns it (STYLE.md principle 9); among the memory timeline's hooks, any constant (autocast's op names)."""
    for cls in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(cls, ast.ClassDef) and cls.name in LAYER_CLASSES and cls.name != "Layer":
            methods = [f for f in cls.body if isinstance(f, ast.FunctionDef)]
            constant = [f.name for f in methods if _yes_no(f) or (f.name in MEMORY_HOOKS and _constant(f))]
            assert not constant, f"{cls.name}: {constant}"


MEMORY_SECTION = "    # Memory (archcalc/memory/timeline/): its facts and hooks"
# Layer's memory facts: its class attributes declared in that last group
MEMORY_FACTS = {n.target.id for n in next(n for n in LAYER_SOURCE.body if isinstance(n, ast.ClassDef) and n.name == "Layer").body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.lineno > _MEMORY_START}


@pytest.mark.parametrize("path", sorted((PACKAGE / "layers").glob("*.py")), ids=lambda p: p.name)
def test_a_kinds_memory_hooks_are_one_marked_section_after_the_rest(path):
    """What only archcalc/memory/ reads of a kind (its memory facts and hooks) is found in one place: the kind's last
    section, under its marker line, after its formulas and everything else."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for cls in ast.parse(text).body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in LAYER_CLASSES or cls.name == "Layer":
            continue
        body = lines[cls.lineno - 1:cls.end_lineno]
        marks = [i for i, line in enumerate(body) if line.startswith(MEMORY_SECTION)]
        hooks = [n.lineno - cls.lineno for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in MEMORY_HOOKS]
        hooks += [n.lineno - cls.lineno for n in cls.body if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id in MEMORY_FACTS for t in n.targets)]
        if not hooks:
            assert not marks, cls.name
            continue
        assert len(marks) == 1, f"{cls.name}: {len(marks)} memory markers"
        others = [n.lineno - cls.lineno for n in cls.body if isinstance(n, ast.FunctionDef) and n.name not in MEMORY_HOOKS
                  and not n.name.startswith("_")]
        assert min(hooks) > marks[0] and all(o < marks[0] for o in others), cls.name


def test_the_memory_facts_are_read_from_layer():  # the test above can fail
    assert {"contiguous_input", "passes_gradient", "autocast_op_names"} <= MEMORY_FACTS and "merges" not in MEMORY_FACTS


def test_the_kind_specific_mistakes_a_layer_names_exist():
    recognisers = {r.__name__ for r in mistakes.MISTAKES}
    named = {name for cls in LAYERS.values() for name in cls.mistakes}
    assert named and named <= recognisers


def test_register_refuses_a_kind_taken(scale_kind):
    @dataclass(frozen=True, kw_only=True)
    class Other(Layer):
        kind = "scale_for_test"

    with pytest.raises(ValueError, match=r"'scale_for_test' is already registered by .*Scale: cannot register .*Other"):
        register(Other)
    assert LAYERS["scale_for_test"] is scale_kind
    with pytest.raises(ValueError, match="not the registered class"):
        unregister(Other)


def test_no_two_classes_share_a_kind():  # and every kind is registered under its own name
    assert all(kind == cls.kind for kind, cls in LAYERS.items())
    assert len(set(LAYERS.values())) == len(LAYERS)


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
    unregister(Scale)


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
    assert (row.layer.asks_shape, row.input) == (None, row.output)  # it keeps the shape: no shape question
    assert "scale_for_test1.output" not in {key for key, _ in quiz.candidates(random.Random(0), report)["shape"]}
    keys = [q.key for q in quiz.draw(report, 8, seed=0).questions]
    assert keys
    verdicts = archcalc.check(spec, {"scale_for_test1.params": 5, "scale_for_test.params": 4, "scale_for_test1.output": [4, 6, 6]})
    assert [v.ok for v in verdicts] == [False, True, True]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_new_kind_exports(scale_kind):
    from archcalc.backends.export import source

    assert "nn.Identity()" in source(archcalc.analyze(archcalc.loads(SPEC)))
