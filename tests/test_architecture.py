"""The package's one dependency rule (docs/architecture.md), read from the imports themselves.

Every `import` and `from ... import` counts, at the top of a module or inside a function, under
`if TYPE_CHECKING` or not: a package imports only from the packages to its left in

    core ← layers ← spec ← analysis ← memory ← report ← { teaching ← render | backends } ← cli

and only backends import torch. No two modules import each other, directly or around a loop. And no function is
longer than a reader can hold (STYLE.md, principle 11): a longer one is a class waiting to be written.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "archcalc"
PIPELINE = ("core", "layers", "spec", "analysis", "memory", "report")
BELOW = {name: set(PIPELINE[:i]) for i, name in enumerate(PIPELINE)}
BELOW["teaching"] = set(PIPELINE)
BELOW["render"] = set(PIPELINE) | {"teaching"}
BELOW["backends"] = set(PIPELINE)
TOP = {"cli", "torch", "__init__", "__main__"}  # the command line and the public entry points: anything below them


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The archcalc modules (and 'torch') a file imports anywhere in it, as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            named = {f"{target}.{alias.name}" for alias in node.names}
            found |= named & modules or {target}  # `from . import num` imports a module, not its package's names
    return {m for m in found if m in modules and m != name} | {"torch" for m in found if m.split(".")[0] == "torch"}


def place(module: str) -> str:
    """The top package of an archcalc module: 'memory' for archcalc.memory.timeline, '__init__' for archcalc."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_known_package():
    assert {place(m) for m in GRAPH} <= set(BELOW) | TOP


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if place(m) not in TOP))
def test_a_package_imports_only_from_its_left(module):
    mine = place(module)
    wrong = sorted(m for m in GRAPH[module] - {"torch"} if place(m) != mine and place(m) not in BELOW[mine])
    assert not wrong, f"{module} ({mine}) may import from {sorted(BELOW[mine]) or 'nothing'} only, not {wrong}"


def test_only_backends_import_torch():
    assert sorted(m for m, deps in GRAPH.items() if "torch" in deps and place(m) not in ("backends", "torch")) == []


def test_no_module_imports_itself_around_a_loop():
    """Tarjan's strongly connected components over the module graph: each must be one module."""
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v] - {"torch"}:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert loops == []


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
WALKTHROUGH = """[model]
input = [16, 5, 5]
[[layers]]
type = "conv"
out_channels = 16
kernel_size = 3
padding = 1
activation = "relu"
[[layers]]
type = "pixel_shuffle"
upscale_factor = 2
[[layers]]
type = "conv"
out_channels = 3
kernel_size = 3
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
out_features = 3
"""


@pytest.fixture
def walkthrough_kind():
    """docs/architecture.md's "Adding a layer kind" block, run as written (it registers pixel_shuffle), then removed."""
    from archcalc.layers.base import LAYERS, unregister

    [block] = [part.split("```", 1)[0] for part in ARCHITECTURE.read_text(encoding="utf-8").split("```python by-test\n")[1:]]
    namespace: dict = {}
    exec(compile(block, str(ARCHITECTURE), "exec"), namespace)  # the project's own docs, not spec text
    kind = LAYERS["pixel_shuffle"]
    yield kind
    unregister(kind)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_walkthroughs_kind_is_exact_against_torch(walkthrough_kind, optimizer):
    torch = pytest.importorskip("torch")
    import archcalc
    from tests.memory.test_timeline_oracle import phases
    from tests.oracle.timeline_probe import step_peaks
    from tests.oracle.torch_probe import saved_bytes

    report = archcalc.analyze(archcalc.loads(WALKTHROUGH), batch=2, optimizer=optimizer)
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2), nn.Conv2d(4, 3, 3), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 3))
    x = torch.randn(2, 16, 5, 5)
    assert [row.output for row in report.rows][1] == tuple(model[:3](x).shape[1:])
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.memory.to_dict()["saved_for_backward_bytes"] == saved_bytes(model, x)
    assert phases(report, 2) == step_peaks(model, x, optimizer)


LONGEST = 80  # lines of a function, its signature, docstring and decorators included (end_lineno - lineno + 1)
# Known exceptions, "path:Qualified.name", to be split and then removed from here (none now).
TOO_LONG: set[str] = set()


def functions(path: Path):
    """(qualified name, lines) of every function and method in a file, nested ones included."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), "")


def test_no_function_is_longer_than_a_reader_can_hold():
    found = {f"{path.relative_to(PACKAGE).as_posix()}:{name}": lines
             for path in sorted(PACKAGE.rglob("*.py")) for name, lines in functions(path)}
    long = {where: lines for where, lines in found.items() if lines > LONGEST and where not in TOO_LONG}
    assert not long, f"functions over {LONGEST} lines: split them (a class with a method per step): {long}"
