"""Graphs against torch: drawn DAGs (skips, add, mul, concat, adaptive pooling, repeated blocks with `when`).

Hypothesis draws a graph once and writes it twice: as a spec (with a block declared once and
used with `repeat`), and as a torch runner built here, op by op, without archcalc's `to_torch`.
Every row's output shape, and the totals of parameters, FLOPs, training FLOPs (FlopCounterMode)
and bytes kept for backward (saved_tensors_hooks) must agree.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)

import archcalc  # noqa: E402
from archcalc.core import num  # noqa: E402
from tests.oracle.torch_nets import toml_value  # noqa: E402
from tests.oracle.torch_probe import ACTIVATIONS, flops, saved_bytes  # noqa: E402

MERGES = ("add", "mul", "concat")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

BLOCK = """
[blocks.res]
[[blocks.res.layers]]
name = "conv"
type = "conv"
out_channels = "c"
kernel_size = "k"
padding = "k // 2"
bias = false
[[blocks.res.layers]]
name = "bn"
type = "batchnorm"
activation = "relu"
[[blocks.res.layers]]
name = "se.pool"
type = "adaptive_pool"
output_size = 1
when = "se"
[[blocks.res.layers]]
name = "se.fc"
type = "conv"
out_channels = "c"
kernel_size = 1
activation = "sigmoid"
when = "se"
[[blocks.res.layers]]
name = "se.mul"
type = "mul"
from = ["bn", "se.fc"]
when = "se"
[[blocks.res.layers]]
name = "add"
type = "add"
from = ["se.mul", "input"]
"""


class Graph(nn.Module):
    """The drawn graph as torch ops in execution order, each reading tensors by name."""

    def __init__(self, shape):
        super().__init__()
        self.input = list(shape)
        self.shapes = {"input": tuple(shape)}  # one sample's shape of every tensor, by full name
        self.ops: list[tuple[str, object, tuple[str, ...]]] = []
        self.held = nn.ModuleDict()  # the modules with parameters, registered so torch sees them
        self.tables: list[dict] = []
        self.last = "input"
        self.uses_block = False

    def op(self, name: str, fn, inputs: tuple[str, ...]) -> tuple:
        if isinstance(fn, nn.Module):
            self.held[name.replace(".", "_")] = fn
        with torch.no_grad():
            out = fn(*(torch.zeros(2, *self.shapes[i]) for i in inputs))
        self.shapes[name] = tuple(out.shape[1:])
        self.ops.append((name, fn, inputs))
        self.last = name
        return self.shapes[name]

    def forward(self, x):
        tensors = {"input": x}
        for name, fn, inputs in self.ops:
            tensors[name] = fn(*(tensors[i] for i in inputs))
        return tensors[self.last]

    def spec(self) -> str:
        lines = ["[model]", f"input = {toml_value(self.input)}"]
        if self.uses_block:
            lines.append(BLOCK)
        for table in self.tables:
            lines += ["[[layers]]", *(f"{key} = {toml_value(value)}" for key, value in table.items())]
        return "\n".join(lines) + "\n"


def _activated(module, activation):
    return module if activation is None else nn.Sequential(module, ACTIVATIONS[activation]())


def _merged(fn, activation):
    return fn if activation is None else (lambda *xs: ACTIVATIONS[activation]()(fn(*xs)))


def _use(draw, g: Graph, name: str, source: str) -> bool:
    c = g.shapes[source][0]
    repeat = draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    se = draw(st.sampled_from(["0", "1", "index % 2 == 0", "index == 0"]))
    x = source
    for index in range(repeat):
        prefix = f"{name}.{index}" if repeat > 1 or index else name
        prefix = f"{name}.{index}"
        g.op(f"{prefix}.conv", nn.Conv2d(c, c, k, padding=k // 2, bias=False), (x,))
        g.op(f"{prefix}.bn", nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()), (f"{prefix}.conv",))
        main = f"{prefix}.bn"
        if eval(se, {"index": index}):  # the test's own reading of its own four conditions
            g.op(f"{prefix}.se.pool", nn.AdaptiveAvgPool2d(1), (main,))
            g.op(f"{prefix}.se.fc", nn.Sequential(nn.Conv2d(c, c, 1), nn.Sigmoid()), (f"{prefix}.se.pool",))
            g.op(f"{prefix}.se.mul", torch.mul, (main, f"{prefix}.se.fc"))
            main = f"{prefix}.se.mul"
        g.op(f"{prefix}.add", torch.add, (main, x))
        x = f"{prefix}.add"
    g.uses_block = True
    g.tables.append(dict(name=name, type="block", block="res", repeat=repeat, c=c, k=k, se=se,
                         **({} if source == _previous(g, name) else {"from": source})))
    return True


def _previous(g: Graph, name: str) -> str:
    """The tensor a top-level layer reads by default: the output of the one before."""
    return g.default


@st.composite
def graphs(draw):
    g = Graph((draw(st.integers(1, 4)), draw(st.integers(4, 9)), draw(st.integers(4, 9))))
    g.default = "input"
    for number in range(draw(st.integers(1, 7))):
        name = f"n{number}"
        tensors = list(g.shapes)
        spatial = [t for t in tensors if len(g.shapes[t]) == 3]
        source = g.default if draw(st.booleans()) else draw(st.sampled_from(spatial))
        shape = g.shapes[source]
        kind = draw(st.sampled_from(["conv", "conv", "batchnorm", "pool", "adaptive_pool", "activation",
                                     "add", "mul", "concat", "concat", "block", "block"]))
        table: dict = dict(name=name, type=kind)
        activation = draw(st.none() | st.sampled_from(["relu", "sigmoid", "gelu"]))
        try:
            if kind == "conv":
                out, k, s = draw(st.integers(1, 4)), draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 1, 2]))
                table |= dict(out_channels=out, kernel_size=k, stride=s, padding=k // 2)
                g.op(name, _activated(nn.Conv2d(shape[0], out, k, s, k // 2), activation), (source,))
            elif kind == "batchnorm":
                if math.prod(shape[1:]) == 1:  # batchnorm needs more than one value per channel in training
                    continue
                g.op(name, _activated(nn.BatchNorm2d(shape[0]), activation), (source,))
            elif kind == "pool":
                op = draw(st.sampled_from(["max", "avg"]))
                table |= dict(op=op, kernel_size=2)
                activation = None
                g.op(name, (nn.MaxPool2d if op == "max" else nn.AvgPool2d)(2), (source,))
            elif kind == "adaptive_pool":
                op, size = draw(st.sampled_from(["max", "avg"])), draw(st.sampled_from([1, 1, 2, 3, [1, 2]]))
                table |= dict(op=op, output_size=size)
                activation = None
                pool = nn.AdaptiveMaxPool2d if op == "max" else nn.AdaptiveAvgPool2d
                g.op(name, pool(tuple(size) if isinstance(size, list) else size), (source,))
            elif kind == "activation":
                function = activation or "relu"
                table["function"] = function
                activation = None
                g.op(name, ACTIVATIONS[function](), (source,))
            elif kind in ("add", "mul"):
                # a partner of the same shape, or [C, 1, 1] beside [C, H, W] (squeeze-and-excitation gating)
                partners = [t for t in spatial if g.shapes[t][0] == shape[0]
                            and (g.shapes[t] == shape or g.shapes[t][1:] == (1, 1) or shape[1:] == (1, 1))]
                other = draw(st.sampled_from(partners))
                sources = [source, other] if draw(st.booleans()) else [other, source]
                source = None
                table["from"] = sources
                g.op(name, _merged(torch.add if kind == "add" else torch.mul, activation), tuple(sources))
            elif kind == "concat":
                partners = [t for t in spatial if g.shapes[t][1:] == shape[1:]]
                others = draw(st.lists(st.sampled_from(partners), min_size=1, max_size=2))
                sources = [source, *others]
                source = None
                table["from"] = sources
                activation = None
                g.op(name, lambda *xs: torch.cat(xs, 1), tuple(sources))
            else:
                if shape[0] > 4 or math.prod(shape) > 400 or math.prod(shape[1:]) == 1:
                    continue
                _use(draw, g, name, source)
                g.default = g.last
                continue
        except RuntimeError:  # torch refuses (a kernel larger than the input): draw another layer
            g.ops = [op for op in g.ops if op[0] != name]
            continue
        if source is not None and source != g.default:
            table["from"] = source
        if activation and kind in ("conv", "batchnorm", "add", "mul"):
            table["activation"] = activation
        g.tables.append(table)
        g.default = name
    if not g.ops:
        g.op("n_last", nn.Identity(), ("input",))  # never reached: an empty graph is redrawn below
    return g


def predicted(report) -> dict:
    b = report.batch
    return {"flops": report.totals["flops"] * b, "training_flops": report.totals["training_flops"] * b,
            "saved": report.memory.saved.at(b), "params": report.totals["params"]}


def measured(g: Graph, batch: int, dtype) -> dict:
    g = g.to(dtype)
    x = torch.zeros(batch, *g.input, dtype=dtype)
    trains = g(x).requires_grad  # a graph with no parameters has no backward pass
    forward = flops(g, x)
    return {"flops": forward, "training_flops": flops(g, x, backward=True) if trains else forward, "saved": saved_bytes(g, x),
            "params": sum(p.numel() for p in g.parameters())}


@settings(max_examples=60, **SETTINGS)
@given(g=graphs(), batch=st.integers(1, 3), dtype=st.sampled_from(["float32", "float64"]))
def test_drawn_graphs_match_torch(g, batch, dtype):
    if g.ops[0][0] == "n_last":
        return
    report = archcalc.analyze(archcalc.loads(g.spec()), batch=batch, dtype=dtype)
    assert [(row.name, row.inputs, row.output) for row in report.rows] == [
        (name, inputs, g.shapes[name]) for name, _, inputs in g.ops], g.spec()
    assert predicted(report) == measured(g, batch, getattr(torch, dtype)), g.spec()


def _conv(c_in, c_out=2):
    return nn.Conv2d(c_in, c_out, 1)


# Each rule pinned on its own (drawn graphs may meet it rarely): (ops as (table, torch op, inputs), input shape)
PINNED = {
    "global average pooling keeps nothing": [
        (dict(name="a", type="conv", out_channels=2, kernel_size=1), _conv(3), ("input",)),
        (dict(name="p", type="adaptive_pool", output_size=1), nn.AdaptiveAvgPool2d(1), ("a",))],
    "average pooling to 2×2 keeps its input": [
        (dict(name="a", type="conv", out_channels=2, kernel_size=1), _conv(3), ("input",)),
        (dict(name="p", type="adaptive_pool", output_size=2), nn.AdaptiveAvgPool2d(2), ("a",))],
    "adaptive max pooling keeps its input and indices": [
        (dict(name="a", type="conv", out_channels=2, kernel_size=1), _conv(3), ("input",)),
        (dict(name="p", type="adaptive_pool", op="max", output_size=[1, 3]), nn.AdaptiveMaxPool2d((1, 3)), ("a",))],
    "mul keeps both factors when both require grad": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="b", type="conv", out_channels=3, kernel_size=1, **{"from": "input"}), _conv(3, 3), ("input",)),
        (dict(name="m", type="mul", **{"from": ["a", "b"]}), torch.mul, ("a", "b"))],
    "mul keeps only the factor whose partner requires grad": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="m", type="mul", **{"from": ["a", "input"]}), torch.mul, ("a", "input"))],
    "mul broadcasts a gate [C, 1, 1]": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="g", type="adaptive_pool", output_size=1), nn.AdaptiveAvgPool2d(1), ("a",)),
        (dict(name="m", type="mul", **{"from": ["g", "a"]}), torch.mul, ("g", "a"))],
    "add and concat keep nothing": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="s", type="add", **{"from": ["a", "input"]}), torch.add, ("a", "input")),
        (dict(name="c", type="concat", **{"from": ["s", "a", "input"]}), lambda *xs: torch.cat(xs, 1), ("s", "a", "input"))],
    "a branch that does not feed the output has no backward pass": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="dead", type="conv", out_channels=2, kernel_size=1), _conv(3), ("a",)),
        (dict(name="c", type="conv", out_channels=2, kernel_size=1, **{"from": "a"}), _conv(3), ("a",))],
    "a tensor read by two layers is kept once": [
        (dict(name="a", type="conv", out_channels=3, kernel_size=1), _conv(3, 3), ("input",)),
        (dict(name="b", type="conv", out_channels=2, kernel_size=1), _conv(3), ("a",)),
        (dict(name="c", type="conv", out_channels=2, kernel_size=1, **{"from": "a"}), _conv(3), ("a",)),
        (dict(name="s", type="add", activation="relu", **{"from": ["b", "c"]}),
         lambda x, y: torch.relu(x + y), ("b", "c"))],
}


@pytest.mark.parametrize("case", PINNED, ids=list(PINNED))
def test_pinned_graph_rules(case):
    g = Graph((3, 5, 4))
    for table, fn, inputs in PINNED[case]:
        g.op(table["name"], fn, inputs)
        g.tables.append(table)
    report = archcalc.analyze(archcalc.loads(g.spec()), batch=2)
    assert [row.output for row in report.rows] == [g.shapes[name] for name, _, _ in g.ops]
    assert predicted(report) == measured(g, 2, torch.float32)


@settings(max_examples=30, **SETTINGS)
@given(g=graphs())
def test_drawn_graphs_in_symbolic_sizes_substitute_to_the_concrete_ones(g):
    """Shapes as formulas on graphs: where archcalc can prove the merged shapes equal in H and W, every
    formula, substituted, gives torch's size (where it cannot, the refusal names both shapes)."""
    if g.ops[0][0] == "n_last":
        return
    c, h, w = g.input
    text = g.spec().replace(f"input = {toml_value(g.input)}", f'input = [{c}, "H", "W"]', 1)
    try:
        symbolic = archcalc.analyze(archcalc.loads(text))
    except archcalc.SpecError as error:
        assert "cannot be proved equal" in error.problem or "cannot be proved equal" in (error.hint or ""), error
        return
    values = {"H": h, "W": w}
    assert [tuple(num.subs(d, values) for d in row.output) for row in symbolic.rows] == [
        g.shapes[name] for name, _, _ in g.ops]
    assert num.subs(symbolic.totals["flops"], values) == archcalc.analyze(archcalc.loads(g.spec())).totals["flops"]


@st.composite
def merges(draw):
    """Two or three one-sample shapes of one rank (the batch axis leads, so ranks must agree) and a merge."""
    rank = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(MERGES))
    count = 2 if kind == "mul" else draw(st.integers(2, 3))
    shapes = [tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))) for _ in range(count)]
    dim = draw(st.integers(0, rank - 1))
    return kind, shapes, dim


@settings(max_examples=200, **SETTINGS)
@given(case=merges())
def test_merges_refuse_exactly_what_torch_refuses(case):
    kind, shapes, dim = case
    xs = [torch.zeros(5, *shape) for shape in shapes]  # a batch of 5, larger than any size: no accidental match
    try:
        out = {"add": lambda: xs[0] + xs[1] + (xs[2] if len(xs) > 2 else 0), "mul": lambda: xs[0] * xs[1],
               "concat": lambda: torch.cat(xs, dim + 1)}[kind]()
        expected = tuple(out.shape[1:])
    except RuntimeError:
        expected = None
    names = [f"x{i}" for i in range(len(shapes))]
    # each input: a dense layer from the model's input, reshaped to the drawn shape
    text = "[model]\ninput = [1]\n" + "".join(
        f'[[layers]]\nname = "d{i}"\ntype = "dense"\nout_features = {math.prod(shape)}\nfrom = "input"\n'
        f'[[layers]]\nname = "{name}"\ntype = "reshape"\nshape = {list(shape)}\n' for i, (name, shape) in enumerate(zip(names, shapes)))
    text += f'[[layers]]\nname = "m"\ntype = "{kind}"\nfrom = {toml_value(names)}\n' + (f"dim = {dim}\n" if kind == "concat" else "")
    try:
        got = archcalc.analyze(archcalc.loads(text)).rows[-1].output
    except archcalc.SpecError as error:
        assert expected is None, f"archcalc refuses what torch accepts: {error}"
        return
    assert got == expected, text
