"""Spec -> Network: bind the values, then walk the layers, each one's output the next one's input."""

from __future__ import annotations

import dataclasses

from ..core import arguments, expr, fmt, num, untrusted
from ..core.dtypes import Device, DType, Optimizer
from ..core.errors import SpecError
from ..core.fields import Size, bind_number
from ..core.num import Shape, Value
from ..core.parallel import Layout
from ..layers import LAYERS, Layer
from ..spec import graph
from ..spec.finetune import merged as merged_finetune
from ..spec.read import BATCH, INPUT, LayerSpec, Spec
from . import checkpoint
from .finetune import Plan, dtype_of
from .network import Network, Row


def network(
    spec: Spec,
    *,
    batch: int | str | None = None,
    dtype: str | None = None,
    optimizer: str = "sgd",
    device: str = "cpu",
    autocast: str | None = None,
    gpus: int | None = None,
    strategy: str | None = None,
    tp: int | None = None,
    parallel: Layout | None = None,
    freeze: list[str] | str | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_dropout: float | None = None,
    lora_targets: list[str] | str | None = None,
    base_dtype: str | None = None,
    **values,
) -> Network:
    """Shapes, parameters and MACs of every layer; `values` name sizes the spec leaves open; `autocast`
    ("bfloat16", "float16"): the training step runs under torch.autocast, the parameters in `dtype`.
    Fine-tuning, over the spec's [finetune] (archcalc/analysis/finetune.py): `freeze` (layer-path patterns), LoRA's
    `lora_rank`, `lora_alpha`, `lora_dropout`, `lora_targets`, and `base_dtype`. `gpus`, `strategy`, `tp` (or a whole
    `parallel` Layout, core/parallel.py): the step spread over GPUs, its memory per rank.

    >>> from archcalc import loads
    >>> spec = loads('[model]\\ninput = [10]\\n[[layers]]\\ntype = "dense"\\nout_features = "n"')
    >>> network(spec, n=5).totals["params"]
    55
    """
    if not isinstance(spec, Spec):
        raise TypeError(f"analyze(spec): spec must be a Spec (archcalc.load(path) or archcalc.loads(text)), "
                        f"got {type(spec).__name__}")
    tuned = merged_finetune(spec.finetune, freeze=freeze, lora_rank=lora_rank, lora_alpha=lora_alpha,
                            lora_dropout=lora_dropout, lora_targets=lora_targets, base_dtype_=base_dtype)
    given_dtype = dtype
    dtype = _choice(DType, dtype or spec.dtype, "dtype")
    dtype = dtype_of(tuned, dtype, given_dtype)
    optimizer = _choice(Optimizer, optimizer, "optimizer")
    device = _choice(Device, device, "device")
    autocast = None if autocast is None else _choice(DType, autocast, "autocast")
    if batch is not None:
        values[BATCH] = batch
    env = environment(spec, values)
    if BATCH in env:  # the batch is a size like any other: whole, at least 1
        _bound(Size(), env[BATCH], env, spec, where="values", field=BATCH)
    x = tuple(_bound(Size(), stored, env, spec, where="[model]", field="input") for stored in spec.input)
    try:
        nodes, uses = graph.expand(spec, env)
    except SpecError as error:
        raise _at_field(error, spec) from None
    plan = _plan(spec, tuned, dtype, nodes, uses, autocast)
    rows = _rows(spec, nodes, x, plan)
    outputs = _outputs(spec, rows)
    net = Network(
        model=spec.name,
        input=x,
        rows=_backward(rows, outputs),
        outputs=outputs,
        dtype=dtype,
        batch=env.get(BATCH),  # None: B stays a symbol
        values=tuple(env.items()),
        path=spec.path,
        course=spec.course,
        optimizer=optimizer,
        device=device,
        uses=tuple(uses),
        autocast=autocast,
        names=spec.names,
        finetune=tuned,
        parallel=parallel if parallel is not None else Layout.of(gpus, strategy, tp),
    )
    return checkpoint.marked(net) if any(use.checkpoint for use in uses) else net


def _plan(spec: Spec, tuned, dtype: DType, nodes: list[graph.Node], uses, autocast: DType | None) -> Plan | None:
    """The fine-tuning plan of the spec's [finetune] and the flags, or None; refuses what it does not model."""
    if not tuned:
        return None
    plan = Plan(tuned, dtype, spec.outputs or (nodes[-1].name,), spec.path)
    if autocast is not None:
        raise SpecError("fine-tuning is modelled without autocast", "--precision bf16-true (or base_dtype = \"bfloat16\") "
                        "stores the base in bfloat16", where="--precision", path=spec.path)
    if (tuned.lora or plan.quantized) and any(use.checkpoint for use in uses):
        raise SpecError("LoRA and quantized bases are modelled without activation checkpointing",
                        "leave checkpoint out of the block uses", where="[finetune]", path=spec.path)
    return plan


def _rows(spec: Spec, nodes: list[graph.Node], x: Shape, plan: Plan | None = None) -> list[Row]:
    """The rows of the expanded layers, in order, each reading the outputs of those it names; `plan` adapts each
    layer to the fine-tuning (frozen, LoRA, quantized base) before its row is computed."""
    shapes: dict[str, Shape] = {INPUT: x}
    grads: dict[str, bool] = {INPUT: False}  # whether a tensor requires grad: something upstream has parameters
    bound: dict[tuple, tuple] = {}  # a layer's fields bound once per distinct value of the names it uses
    used: dict[int, tuple[str, ...]] = {}
    computed: dict[tuple, tuple] = {}  # (binding, input shapes) -> output, weights, biases, MACs: repeated blocks
    rows: list[Row] = []
    batchless: set[str] = set()  # outputs without a batch axis in torch (a parameter broadcast as it is)
    layers = [_layer(node, bound, used, spec.path) for node in nodes]  # every field checked before any shape
    for position, (node, (layer, binding)) in enumerate(zip(nodes, layers), start=1):
        if node.name in shapes:
            raise SpecError(f"the full name {node.name!r} is taken twice", "a layer's path must differ from every other's, "
                            "block uses' included: rename one", "name", where=node.where, path=spec.path, line=node.spec.line_of("name"))
        xs = tuple(shapes[name] for name in node.inputs)
        gs = tuple(grads[name] for name in node.inputs)
        if plan is not None:
            layer = _adapted(plan, node, layer, xs)
        if not layer.merges and len(xs) > 1:
            raise SpecError(f"a {layer.kind} layer reads one tensor, but from names {len(xs)}",
                            "add them first with a merge layer: add, mul or concat", "from",
                            where=node.where, path=spec.path, line=node.spec.line_of("from"))
        row = _row(node, layer, position, xs, gs, rows, spec.path, computed, binding)
        _check_links(node, row, rows, spec.path, batchless)
        if row.layer.batchless():
            batchless.add(node.name)
        rows.append(row)
        shapes[node.name] = row.output
        grads[node.name] = not layer.detached and (row.requires_grad or row.trainable_params != 0)
    if plan is not None:
        plan.check()
    return rows


def _adapted(plan: Plan, node: graph.Node, layer: Layer, xs: tuple[Shape, ...]) -> Layer:
    """The layer as the plan tunes it; a shape the layer refuses is left for its row to report, in place."""
    try:
        return plan.adapt(node.name, layer, xs if layer.merges else xs[0])
    except SpecError as error:
        if error.where is not None:
            raise
        return layer


def _check_links(node: graph.Node, row: Row, rows: list[Row], path: str | None, batchless: set[str] = frozenset()) -> None:
    """Token ids are read only from the model's input; a tied weight names an earlier layer of the same weight shape;
    a tensor without a batch axis (a parameter with expand = false) is read only by a broadcasting merge."""
    place = {"where": node.where, "path": path, "line": node.spec.line}
    flat = [name for name in node.inputs if name in batchless]
    if flat and not row.layer.broadcasts:
        raise SpecError(f"{row.kind} reads {flat[0]!r}, a parameter with expand = false (no batch axis in torch)",
                        "only add and mul broadcast it over the batch: give it expand = true (the default)", "from", **place)
    if row.layer.token_ids is not None and node.inputs != (INPUT,):
        raise SpecError(f"{row.kind} reads token ids, and only the model's input holds them",
                        'read the model\'s input (first, or from = "input"), with input = ["T"]: T token ids', **place)
    target = row.layer.tie
    if target is None:
        return
    other = next((r for r in rows if r.name == target), None)
    if other is None:
        raise SpecError(f"no earlier layer is named {target!r}", "tie names an earlier layer whose weight this one shares",
                        "tie", **place | {"line": node.spec.line_of("tie")})
    theirs, ours = other.layer.weight_shape(other.input), row.layer.weight_shape(row.input)
    if theirs is None or tuple(theirs) != tuple(ours):
        raise SpecError(
            f"cannot share {target}'s weight: " + ("it has none" if theirs is None else
                                                   f"it is {fmt.shape(theirs)}, this layer's would be {fmt.shape(ours)}"),
            "a tied layer's weight must have the shape of the one it shares (out_features = num_embeddings)",
            "tie", **place | {"line": node.spec.line_of("tie")})


def _at_field(error: SpecError, spec: Spec) -> SpecError:
    """An error about a layer's field, moved from the layer's header line to the field's own line."""
    if error.field is None or error.line is None:
        return error
    for layer in (*spec.layers, *(item for _, block in spec.blocks for item in block.layers)):
        if layer.line == error.line and any(key == error.field for key, _ in layer.lines):
            return dataclasses.replace(error, line=layer.line_of(error.field))
    return error


def _outputs(spec: Spec, rows: list[Row]) -> tuple[str, ...]:
    """[model] outputs, each a layer's full name (default: the last layer's)."""
    if not spec.outputs:
        return (rows[-1].name,)
    names = {row.name for row in rows}
    for name in spec.outputs:
        if name not in names:
            close = [n for n in names if n.endswith("." + name)]
            raise SpecError(f"outputs names {name!r}, which is no layer", f"did you mean {close[0]!r}? " if close else
                            "give layers' full names (a block use's last layer: \"layer4.1.add\")", "outputs",
                            where="[model]", path=spec.path)
    return spec.outputs


def _backward(rows: list[Row], outputs: tuple[str, ...]) -> tuple[Row, ...]:
    """The rows, those whose output does not feed one of the model's outputs marked: a training step's backward
    pass, from the loss, never reaches them."""
    needed = set(outputs)
    for row in reversed(rows):
        if row.name in needed:
            needed.update(row.inputs)
    return tuple(row if row.name in needed else dataclasses.replace(row, backward=False) for row in rows)


def _choice(kind, value, name: str):
    try:
        return kind(value)
    except ValueError:
        raise SpecError(f"unknown {name} {value!r}", f"one of {', '.join(kind)}", where=f"--{name}") from None


def environment(spec: Spec, values: dict[str, object]) -> dict[str, Value]:
    """The known names: given values first, then [vars] (each may use the others)."""
    known = names(spec) if values else set()
    for name in values:
        if styled := untrusted.styled_problem(name):
            raise SpecError(f"{untrusted.one_line(repr(name))} is not a usable name: {styled}", None, untrusted.one_line(name),
                            "values", spec.path)
    env = {untrusted.name(name): _given(untrusted.name(name), value, spec, known) for name, value in values.items()}
    stored = dict(spec.vars)

    def resolve(name: str) -> None:
        """Each var after the vars it uses: depth first, on an explicit stack (a chain of 3000 vars is no recursion)."""
        visiting, stack = {name: 0}, [(name, iter(sorted(getattr(stored[name], "names", ()))))]
        while stack:
            current, dependencies = stack[-1]
            for dependency in dependencies:
                if dependency in env or dependency not in stored:
                    continue
                if dependency in visiting:
                    path = [n for n, _ in stack]
                    cycle = " -> ".join([*path[path.index(dependency):], dependency])
                    raise SpecError(f"the vars refer to each other in a circle: {cycle}", None, dependency, "[vars]", spec.path)
                visiting[dependency] = len(stack)
                stack.append((dependency, iter(sorted(getattr(stored[dependency], "names", ())))))
                break
            else:
                stack.pop()
                del visiting[current]
                env[current] = _bound(None, stored[current], env, spec, where="[vars]", field=current)

    for name in stored:
        if name not in env:
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


def _layer(node: graph.Node, bound: dict, used: dict, path: str | None) -> tuple[Layer, object]:
    """The node's layer, and a key for its bound fields: bound once for each distinct value of the names
    they use (the layers of a repeated block mostly share them)."""
    spec = node.spec
    names = used.get(id(spec))
    if names is None:
        names = used[id(spec)] = tuple(sorted(spec.names))
    key = (id(spec), *(node.env.get(name) for name in names))
    found = bound.get(key)
    if found is None:
        found = bound[key] = (_fields(spec, node.env, path, node.where), len(bound))
    return LAYERS[spec.kind](name=node.name, **found[0]), found[1]


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
            raise error.at(field=field, **place | {"line": layer_spec.line_of(field)}) from None
    return kwargs


def _row(node: graph.Node, layer: Layer, position: int, xs: tuple[Shape, ...], gs: tuple[bool, ...],
         rows: list[Row], path: str | None, computed: dict, binding: object) -> Row:
    x = xs if layer.merges else xs[0]
    try:
        key = (binding, xs, layer.tuning)
        numbers = computed.get(key)
        if numbers is None:
            numbers = computed[key] = (layer.output(x), layer.weights(x), layer.biases(x), layer.macs(x))
        output, weights, biases, macs = numbers
        row = Row(
            index=position,
            layer=layer,
            input=x,
            output=output,
            weights=weights,
            biases=biases,
            macs=macs,
            requires_grad=any(gs),
            inputs=node.inputs,
            grads=gs,
        )
        for what, value in (("output", num.mul(row.output)), ("params", row.params), ("MACs", row.macs)):
            if num.is_concrete(value) and (problem := untrusted.problem_of_size(value)):
                raise SpecError(f"{what}: {problem}")
        return row
    except SpecError as error:
        before = _before(node, xs, rows)
        if error.hint and layer.merges:  # a merge error names the layers whose shapes disagree, and the rule
            error = dataclasses.replace(error, hint=f"{before}; {error.hint}")
        raise error.at(where=node.where, path=path, line=node.spec.line_of(error.field), hint=before) from None


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
        raise error.at(path=spec.path, line=spec.line_of(place["where"], place["field"]), **place) from None


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
    try:
        number = arguments.number(value, "batch" if name == BATCH else name, "analyze", field=name)
    except SpecError as error:
        raise error.at(path=spec.path) from None
    unknown = sorted(num.free_names(number) - known)
    if unknown:  # --batch nan, --set H=x: a name no part of the spec gives meaning to
        shown = untrusted.one_line(repr(value)[:60])
        problem = (f"expected a finite number, got {shown}" if {n.lower() for n in unknown} & {"nan", "inf", "infinity"}
                   else f"{shown} names {', '.join(unknown)}, which the spec does not use")
        raise SpecError(problem, f"give a whole number, or a formula in the spec's names ({', '.join(sorted(known))})",
                        name, "values", spec.path)
    return number
