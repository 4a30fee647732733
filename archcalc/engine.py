"""Spec -> Report: bind the values, then walk the layers, each one's output the next one's input."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from . import expr, fmt, graph, num
from .dtypes import DType
from .errors import SpecError
from .fields import Size, bind_number
from .layers import LAYERS, Layer
from .memory import Device, Optimizer
from .num import Shape, Value
from .report import Report, Row
from .spec import BATCH, INPUT, LayerSpec, Spec


def analyze(
    spec: Spec,
    *,
    batch: int | str | None = None,
    dtype: str | None = None,
    optimizer: str = "sgd",
    device: str = "cpu",
    **values,
) -> Report:
    """Shapes, parameters and MACs of every layer; `values` name sizes the spec leaves open.

    >>> from archcalc import loads
    >>> spec = loads('[model]\\ninput = [10]\\n[[layers]]\\ntype = "dense"\\nout_features = "n"')
    >>> analyze(spec, n=5).totals["params"]
    55
    """
    dtype = _choice(DType, dtype or spec.dtype, "dtype")
    optimizer = _choice(Optimizer, optimizer, "optimizer")
    device = _choice(Device, device, "device")
    if batch is not None:
        values[BATCH] = batch
    env = environment(spec, values)
    if BATCH in env:  # the batch is a size like any other: whole, at least 1
        _bound(Size(), env[BATCH], env, spec, where="values", field=BATCH)
    x = tuple(_bound(Size(), stored, env, spec, where="[model]", field="input") for stored in spec.input)
    nodes, uses = graph.expand(spec, env)
    shapes: dict[str, Shape] = {INPUT: x}
    grads: dict[str, bool] = {INPUT: False}  # whether a tensor requires grad: something upstream has parameters
    bound: dict[tuple, dict] = {}  # a layer's fields bound once per distinct value of the names it uses
    used: dict[int, tuple[str, ...]] = {}
    rows: list[Row] = []
    for position, node in enumerate(nodes, start=1):
        layer = _layer(node, bound, used, spec.path)
        xs = tuple(shapes[name] for name in node.inputs)
        gs = tuple(grads[name] for name in node.inputs)
        if not layer.merges and len(xs) > 1:
            raise SpecError(f"a {layer.kind} layer reads one tensor, but from names {len(xs)}",
                            "add them first with a merge layer: add, mul or concat", "from",
                            where=node.where, path=spec.path, line=node.spec.line)
        row = _row(node, layer, position, xs, gs, rows, spec.path)
        rows.append(row)
        shapes[node.name] = row.output
        grads[node.name] = row.requires_grad or row.params != 0
    return Report(
        model=spec.name,
        input=x,
        rows=tuple(rows),
        dtype=dtype,
        batch=env.get(BATCH),  # None: B stays a symbol
        values=tuple(env.items()),
        path=spec.path,
        course=spec.course,
        optimizer=optimizer,
        device=device,
        uses=tuple(uses),
    )


def _choice(kind, value, name: str):
    try:
        return kind(value)
    except ValueError:
        raise SpecError(f"unknown {name} {value!r}", f"one of {', '.join(kind)}", where=f"--{name}") from None


def environment(spec: Spec, values: dict[str, object]) -> dict[str, Value]:
    """The known names: given values first, then [vars] (each may use the others)."""
    known = names(spec) if values else set()
    env = {name: _given(name, value, spec, known) for name, value in values.items()}
    stored = dict(spec.vars)
    visiting: list[str] = []

    def resolve(name: str) -> None:
        if name in env or name not in stored:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise SpecError(f"the vars refer to each other in a circle: {cycle}", None, name, "[vars]", spec.path)
        visiting.append(name)
        for dependency in getattr(stored[name], "names", ()):
            resolve(dependency)
        visiting.pop()
        env[name] = _bound(None, stored[name], env, spec, where="[vars]", field=name)

    for name in stored:
        resolve(name)
    return env


def names(spec: Spec) -> set[str]:
    """Every name a spec defines or uses: its [vars], and the free names of its expressions."""
    found = {name for name, _ in spec.vars} | {BATCH}

    def collect(value: object) -> None:
        if isinstance(value, expr.Expr):
            found.update(value.names)
        elif isinstance(value, tuple):
            for item in value:
                collect(item)

    collect(spec.input)
    collect(tuple(v for _, v in spec.vars))
    for layer in (*spec.layers, *(item for _, block in spec.blocks for item in block.layers)):
        found.update(layer.names)
    return found


def bind(layer_spec: LayerSpec, env: dict[str, Value], path: str | None = None) -> Layer:
    """The layer object, its expressions evaluated with `env` and its values checked."""
    return LAYERS[layer_spec.kind](name=layer_spec.name, **_fields(layer_spec, env, path, layer_spec.where))


def _layer(node: graph.Node, bound: dict, used: dict, path: str | None) -> Layer:
    """The node's layer; its fields bound once for each distinct value of the names they use (repeated blocks)."""
    spec = node.spec
    names = used.get(id(spec))
    if names is None:
        names = used[id(spec)] = tuple(sorted(spec.names))
    key = (id(spec), *(node.env.get(name) for name in names))
    kwargs = bound.get(key)
    if kwargs is None:
        kwargs = bound[key] = _fields(spec, node.env, path, node.where)
    return LAYERS[spec.kind](name=node.name, **kwargs)


def _fields(layer_spec: LayerSpec, env: dict[str, Value], path: str | None, where: str) -> dict:
    cls = LAYERS[layer_spec.kind]
    kinds = cls.spec_fields()
    place = {"where": where, "path": path, "line": layer_spec.line}
    given = dict(layer_spec.fields)
    missing = [f.name for f in dataclasses.fields(cls) if f.name in kinds and f.name not in given
               and f.default is dataclasses.MISSING]
    if missing:
        raise SpecError("missing: this field has no default", f"a {layer_spec.kind} layer needs {', '.join(missing)}",
                        missing[0], **place)
    kwargs = {}
    for field, stored in layer_spec.fields:
        try:
            kwargs[field] = kinds[field].bind(stored, env)
        except SpecError as error:
            raise error.at(field=field, **place) from None
    return kwargs


def _row(node: graph.Node, layer: Layer, position: int, xs: tuple[Shape, ...], gs: tuple[bool, ...],
         rows: list[Row], path: str | None) -> Row:
    x = xs if layer.merges else xs[0]
    try:
        return Row(
            index=position,
            layer=layer,
            input=x,
            output=layer.output(x),
            weights=layer.weights(x),
            biases=layer.biases(x),
            macs=layer.macs(x),
            requires_grad=any(gs),
            inputs=node.inputs,
            grads=gs,
        )
    except SpecError as error:
        raise error.at(where=node.where, path=path, line=node.spec.line, hint=_before(node, xs, rows)) from None


def _before(node: graph.Node, xs: tuple[Shape, ...], rows: list[Row]) -> str:
    """What the layer reads, for the hint of a message about it."""
    if node.inputs == ((rows[-1].name,) if rows else (INPUT,)):
        return f'the previous layer "{rows[-1].name}" outputs {fmt.shape(xs[0])}' if rows else f"the input is {fmt.shape(xs[0])}"
    parts = [f"the model's input is {fmt.shape(x)}" if name == INPUT else f'"{name}" outputs {fmt.shape(x)}'
             for name, x in zip(node.inputs, xs)]
    return ("it reads " if len(parts) == 1 else "its inputs: ") + "; ".join(parts)


def _bound(kind, stored, env, spec: Spec, **place) -> Value:
    try:
        return kind.bind(stored, env) if kind else bind_number(stored, env)
    except SpecError as error:
        raise error.at(path=spec.path, **place) from None


def _given(name: str, value: object, spec: Spec, known: set[str]) -> Value:
    """A value given to analyze (or by --set): a number, or a formula as text; `known`: the spec's names."""
    if name not in known:
        raise SpecError(
            f"the spec has no name {name!r}",
            f"its names are {', '.join(sorted(known))}" if known else None,
            name,
            "values",
            spec.path,
        )
    if isinstance(value, bool):
        raise SpecError(f"expected a number, got {value}", None, name, "values", spec.path)
    if isinstance(value, (int, Fraction)):
        return num.normal(value)
    if isinstance(value, float):
        return num.normal(Fraction(repr(value)))
    if isinstance(value, str):
        try:
            return expr.parse(value).evaluate({})
        except SpecError as error:
            raise error.at(field=name, where="values", path=spec.path) from None
    return num.normal(value)  # a sympy expression from a script
