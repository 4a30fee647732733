"""A graph spec as readable PyTorch source: one nn.Module class per block, one for the model.

A block's class takes as constructor arguments what differs between its uses
(`in_channels`, `channels`, `stride`..., and `has_downsample` for the layers that
`when` leaves out of some uses); what all its uses share is written as a literal.
Every class registers its modules under the spec's names (`self.layer1[0].downsample[1]`
is `layer1.0.downsample.1`), so the exported model has `build()`'s state_dict keys.
Numbered children 0, 1, 2... are an nn.ModuleList, other numbers an nn.ModuleDict,
named ones a `Namespace` (an nn.Module holding the submodules it is given).

forward reads what each layer's `from` names, in execution order; a value that
only the next line reads is `x`, others keep their layer's name. A block use
that the layers after it read into (not only its output) cannot be one call:
its layers are written out where it is used; and where a block's uses cannot
share a class, the model is written out without block classes.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..analysis import checkpoint
from ..core import fmt, num
from ..core.errors import SpecError
from ..report import Report
from . import library
from .build import INPUT, Part, container, modules, parts, require
from .pysource import ACTIVATION_CLASSES, EXPLICIT, RESERVED, TORCH_FUNCTIONS, Code, aligned, literal, plain, short, sizes, where

CHANNEL_ARGS = {"out_channels": "channels", "out_features": "features", "num_features": "channels"}
TAKEN = {"x", "self", "torch", "nn", "F", "Namespace", "super", "input", "model", "checkpoint"}
ABSENT = object()  # the value of an argument in a use where its layer is not there


class Unsupported(Exception):
    """A block whose uses cannot share one class."""


@dataclass
class Node:
    """A use of a block (without repeat) written as one call: rows [first, stop) of the report."""

    path: str
    block: str
    first: int
    stop: int
    inp: str = ""  # the full name of the tensor it reads
    checkpointed: bool = False  # an outermost checkpointed use (archcalc/analysis/checkpoint.py)
    children: list[Node] = field(default_factory=list)
    args: dict[str, object] = field(default_factory=dict)  # its constructor arguments, set by its class


@dataclass
class Entry:
    """One line of a class's forward in one use: a row, or a call of a block."""

    local: str  # its name inside the class ("conv1", "downsample.0", "layer1.0")
    reads: tuple[str, ...]  # full names
    out: str  # full name of the tensor it makes (a block call: its last row's)
    part: Part | None = None
    node: Node | None = None


def source(report: Report, name: str, header: list[str], footer: list[str], extras) -> str:
    """The classes and the model; `header` (docstring, imports) and `footer` (the __main__ part) around them;
    `extras` (export.Extras) gathers archcalc's own classes they use and the model's last lines."""
    all_parts = parts(report, torch_names=False)
    try:
        return _source(report, all_parts, _nodes(report, all_parts), name, header, footer, extras)
    except Unsupported:
        extras.used.clear()
        return _source(report, all_parts, [], name, header, footer, extras)


def _source(report, all_parts, nodes, name, header, footer, extras) -> str:
    kinds: list[str] = []

    def visit(kind: str) -> None:  # a block's class after the classes of the blocks inside it
        for node in _walk(nodes):
            if node.block == kind:
                for child in node.children:
                    if child.block not in kinds:
                        visit(child.block)
        if kind not in kinds:
            kinds.append(kind)

    for node in _walk(nodes):
        visit(node.block)
    taken = {name, *TAKEN, *RESERVED, *library.names()}  # a block's class is never None, print, nn or SelfAttention
    names = {}
    for kind in kinds:
        names[kind] = _camel(kind, taken)
        taken.add(names[kind])
    helper = {"namespace": False}
    body: list[str] = []
    for kind in kinds:
        uses = [n for n in _walk(nodes) if n.block == kind]
        cls = Class(names[kind], [_entries(all_parts, n.children, n.first, n.stop, n.path + ".", n.inp) for n in uses],
                    [_channels(all_parts, n) for n in uses], names, extras.used)
        for node, args in zip(uses, cls.call_args()):
            node.args = args
        body += [*cls.source(helper, f'Block "{plain(kind)}" of the spec, at {", ".join(n.path for n in uses)}.'), "", ""]
    model = Class(name, [_entries(all_parts, nodes, 0, len(all_parts), "", INPUT)], [report.input[0]], names, extras.used)
    extras.finish(report, lambda part: modules(part)[0])
    model.last = extras.last
    if any(node.checkpointed for node in _walk(nodes)):  # after the torch imports
        at = header.index("from torch import nn") + 1 if "from torch import nn" in header else len(header)
        header = [*header[:at], "from torch.utils.checkpoint import checkpoint", *header[at:]]
    body += model.source(helper, None, report)
    namespace = [
        "class Namespace(nn.Module):",
        '    """Submodules under the names it is given: the spec\'s dotted layer names."""',
        "",
        "    def __init__(self, **children: nn.Module | None) -> None:",
        "        super().__init__()",
        "        for name, child in children.items():",
        "            self.add_module(name, child)",
        "",
        "",
    ]
    return "\n".join([*header, *(namespace if helper["namespace"] else []), *extras.library(), *body, *footer])


def _walk(nodes: list[Node]):
    for node in nodes:
        yield from _walk(node.children)
        yield node


def _nodes(report: Report, all_parts: list[Part]) -> list[Node]:
    """The block uses that can be one call each, nested as they are in the spec."""
    names = [p.row.name for p in all_parts]
    regions = {(r.first, r.stop) for r in checkpoint.regions(report)}
    kept = []
    for use in sorted((u for u in report.uses if u.repeat is None and u.stop > u.first), key=lambda u: (u.first, -u.stop)):
        inside = set(names[use.first:use.stop])
        reads = {n for p in all_parts[use.first:use.stop] for n in p.row.inputs if n not in inside}
        last = names[use.stop - 1]
        leaks = any(n in inside and n != last for p in all_parts if p.row.name not in inside for n in p.row.inputs)
        if len(reads) == 1 and not leaks:
            kept.append(Node(container(use.path), use.block, use.first, use.stop, reads.pop(),
                             (use.first, use.stop) in regions))
    top: list[Node] = []
    stack: list[Node] = []
    for node in kept:
        while stack and not (stack[-1].first <= node.first and node.stop <= stack[-1].stop):
            stack.pop()
        (stack[-1].children if stack else top).append(node)
        stack.append(node)
    return top


def _entries(all_parts, children: list[Node], first: int, stop: int, prefix: str, inp: str) -> tuple[list[Entry], str, str]:
    """The lines of one use of a class (the model is its class's one use), its input's and output's full names."""
    calls = {c.first: c for c in children}
    out = []
    i = first
    while i < stop:
        if i in calls:
            c = calls[i]
            out.append(Entry(c.path[len(prefix):], (c.inp,), all_parts[c.stop - 1].row.name, node=c))
            i = c.stop
        else:
            part = all_parts[i]
            out.append(Entry(part.names[0][len(prefix):], tuple(part.row.inputs), part.row.name, part=part))
            i += 1
    return out, inp, all_parts[stop - 1].row.name


def _channels(all_parts, node: Node):
    """The channels of a block use's input (its first axis)."""
    for part in all_parts[node.first:node.stop]:
        for name, shape in zip(part.row.inputs, part.row.shapes):
            if name == node.inp:
                return shape[0]
    return None


class Class:
    """A class for the uses of one block (or the model): what its uses share, and what tells them apart."""

    def __init__(self, name: str, uses: list, in_channels: list, class_names: dict, used: set):
        self.name = name
        self.used = used  # archcalc's own classes the constructors call (backends/library.py)
        self.last: list[str] = []  # the lines that end __init__ (the model's: tied weights, frozen layers)
        self.uses = uses  # per use: (entries, input name, output name)
        self.class_names = class_names
        self.in_channels = tuple(in_channels)
        self.order = _merged([[e.local for e in entries] for entries, _, _ in uses])
        self.at = [{e.local: e for e in entries} for entries, _, _ in uses]
        self.fullest = max(range(len(uses)), key=lambda k: len(uses[k][0]))
        self.params: dict[str, tuple] = {}
        self.flags: dict[str, str] = {}  # local -> the flag saying whether it is there
        self.texts: dict[str, str] = {}  # local -> its constructor (registered modules and block calls)
        self.inline: dict[str, object] = {}  # local -> how forward computes it without a module
        self._build()

    def representative(self, local: str) -> Entry:
        if local in self.at[self.fullest]:
            return self.at[self.fullest][local]
        return next(at[local] for at in self.at if local in at)

    def _build(self) -> None:
        groups: list[list] = []  # [name, values per use]
        for local in self.order:
            present = tuple(local in at for at in self.at)
            if not all(present):
                flag = _unique("has_" + _identifier(local.split(".")[0]), set(self.params) - {*self.flags.values()})
                if flag in self.params and self.params[flag] != present:
                    flag = _unique("has_" + _identifier(local), set(self.params))
                self.params[flag] = present
                self.flags[local] = flag
            entry = self.representative(local)
            if entry.part is not None:
                inline = _inline(entry.part)
                if inline is not None:
                    samples = {_inline(at[local].part)[1](["a"] * len(at[local].reads)) for at in self.at if local in at}
                    if len(samples) > 1:
                        raise Unsupported(local)
                    self.inline[local] = inline
                    continue
            head, arguments = self._arguments(local)
            rendered = []
            for argument, required, values in arguments:
                known = [v for v in values if v is not ABSENT]
                if len({repr(v) for v in known}) <= 1:  # the same in every use (that has the layer)
                    text = self._matching(groups, values) if len(known) < len(values) else None
                    text = text or literal(short(known[0]))
                else:
                    text = self._group(groups, argument, values)
                rendered.append(text if required else f"{argument}={text}")
            self.texts[local] = head if isinstance(head, Code) else f"{head}({', '.join(rendered)})"
        flags = dict(self.params)
        self.params = {name: tuple(values) for name, values in groups}
        if "in_channels" in self.params:
            self.params = {"in_channels": self.params["in_channels"]} | self.params
        self.params |= flags  # the flags last

    def _matching(self, groups: list, values: list) -> str | None:
        """The argument that has these values in every use where the layer is there (a projection's stride)."""
        for name, group in groups:
            if all(a is ABSENT or a == b for a, b in zip(values, group)) and len({repr(b) for b in group}) > 1:
                return name
        return None

    def _group(self, groups: list, argument: str, values: list) -> str:
        for group in groups:
            if all(a is ABSENT or b is ABSENT or a == b for a, b in zip(values, group[1])):
                group[1] = [b if b is not ABSENT else a for a, b in zip(values, group[1])]
                return group[0]
        inputs = all(v is ABSENT or v == c for v, c in zip(values, self.in_channels))
        name = "in_channels" if inputs and argument in ("in_channels", "num_features", "in_features") else CHANNEL_ARGS.get(argument, argument)
        name = _unique(_identifier(name), {g[0] for g in groups} | set(self.params) | TAKEN)
        groups.append([name, list(values)])
        return name

    def _arguments(self, local: str) -> tuple[str, list]:
        """The constructor's name and, per argument, (name, required, value per use)."""
        per_use = []
        head = None
        for at in self.at:
            entry = at.get(local)
            if entry is None:
                per_use.append(None)
                continue
            if entry.node is not None:
                call = (self.class_names[entry.node.block], [(k, False, None, v) for k, v in entry.node.args.items()])
            else:
                module = modules(entry.part)[0]
                if hasattr(module, "exported"):  # a torch class archcalc adapts (LSTM: the output only)
                    call = (Code(module.exported[0]), [])
                else:
                    call = _call(module, self.used, entry.part.row)
            if head is not None and call[0] != head:
                raise Unsupported(local)
            head = call[0]
            per_use.append(call[1])
        names = list(dict.fromkeys(a[0] for args in per_use if args for a in args))
        out = []
        for argument in names:
            values, required, keep = [], False, False
            for args in per_use:
                found = next((a for a in args if a[0] == argument), None) if args else None
                if found is None:
                    values.append(ABSENT)
                    continue
                _, required, default, value = found
                values.append(value)
                keep = keep or required or argument in EXPLICIT or short(value) != short(default)
            if keep:
                out.append((argument, required, values))
        return head, out

    def call_args(self) -> list[dict]:
        return [{name: values[k] for name, values in self.params.items()} for k in range(len(self.uses))]

    def source(self, helper: dict, doc: str | None, report: Report | None = None) -> list[str]:
        flags = set(self.flags.values())
        signature = "".join(f", {n}: {_type(v, n in flags)}" for n, v in self.params.items())
        lines = [f"class {self.name}(nn.Module):"]
        if doc:
            lines += [f'    """{doc}"""', ""]
        lines += [f"    def __init__(self{signature}) -> None:", "        super().__init__()"]
        lines += [f"        self.{flag} = {flag}" for flag in dict.fromkeys(self.flags.values())]
        tree: dict = {}
        for local, text in self.texts.items():
            node = tree
            *parents, leaf = local.split(".")
            for segment in parents:
                node = node.setdefault(segment, {})
            node[leaf] = (text, self.flags.get(local))
        self.access: dict[str, str] = {}
        init = []
        for key, sub in tree.items():
            text, flag = _render(sub, "        ", helper, self.access, f"self.{key}", key)
            init.append((f"self.{key} = {text if flag is None else f'{text} if {flag} else None'}",
                         self._note(key, report)))
        width = max((len(code) for code, note in init if note and "\n" not in code), default=0)
        for code, note in init:  # a container's comment goes above it, not after its last line
            if "\n" in code and note:
                lines.append(f"        # {note}")
            single = note and "\n" not in code
            lines.append(f"        {code.ljust(width)}  # {note}" if single else f"        {code}")
        lines += [f"        {line}" for line in self.last]
        lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
        forward = self._forward(report)
        lines += aligned(forward, "        ") if report else [f"        {code}" for code, _ in forward]
        return lines

    def _note(self, key: str, report: Report | None) -> str:
        if report is None:
            return ""
        params = num.add(row.params for row in report.rows if row.name == key or row.name.startswith(key + "."))
        return f"{fmt.group(params)} parameters" if params else ""

    def _forward(self, report: Report | None) -> list[tuple[str, str]]:
        order = self.order
        reads = {}
        for local in order:
            entry = self.representative(local)
            owner = self.uses[self.at.index(next(at for at in self.at if at.get(local) is entry))]
            by_out = {e.out: e.local for e in owner[0]}
            reads[local] = tuple("@input" if n == owner[1] else by_out[n] for n in entry.reads)
        readers: dict[str, list[int]] = {}
        for i, local in enumerate(order):
            for name in reads[local]:
                readers.setdefault(name, []).append(i)
        last_local = order[-1]
        readers.setdefault(last_local, []).append(len(order))
        var = {"@input": "x"}
        holder = "@input"
        used = set(TAKEN)
        lines: list[tuple[str, str]] = []
        for i, local in enumerate(order):
            args = [var[n] for n in reads[local]]
            expression = self._expression(local, args)
            optional = local in self.flags
            later = [r for r in readers.get(holder, []) if r > i]
            if not optional and readers.get(local, []) and set(readers[local]) == {i + 1} and not later:
                name = "x"
                holder = local
            else:
                name = _unique(_identifier(local), used)
                used.add(name)
            var[local] = name
            note = ""
            if report is not None:
                entry = self.representative(local)
                row = report.rows[(entry.node.stop - 1) if entry.node else entry.part.row.index - 1]
                note = f"B×{sizes(row.output)}"
            if optional:
                lines.append((f"{name} = {args[0]}", "passed on where the block leaves it out"))
                lines.append((f"if self.{self.flags[local]}:", ""))
                lines.append((f"    {name} = {expression}", note))
            else:
                lines.append((f"{name} = {expression}", note))
        lines.append((f"return {var[last_local]}", ""))
        return lines

    def _expression(self, local: str, args: list[str]) -> str:
        if local in self.inline:
            _, make = self.inline[local]
            return make(args)
        entry = self.representative(local)
        call = f"{self.access[local]}({', '.join(args)})"
        if entry.node is not None and all(at[local].node.checkpointed for at in self.at if local in at):
            # recomputed in backward (activation checkpointing); plain under no_grad
            return f"checkpoint({self.access[local]}, {', '.join(args)}, use_reentrant=False)"
        if entry.part is not None and hasattr(modules(entry.part)[0], "exported"):
            call += "[0]"  # LSTM, GRU: the output sequence
        if entry.part is not None and entry.part.row.layer.activation:
            module = modules(entry.part)[1]
            return _activation_call(module, entry.part.row.layer.activation, call)
        return call


def _inline(part: Part):
    """(part, args -> expression) for a row forward computes without a module of its own, else None."""
    nn = require().nn
    from .modules import Add, Concat, Mul

    row = part.row
    module, *activation = modules(part)
    wrap = (lambda e: _activation_call(activation[0], row.layer.activation, e)) if activation else (lambda e: e)
    if isinstance(module, Add):
        return part, lambda a: wrap(" + ".join(a))
    if isinstance(module, Mul):
        return part, lambda a: wrap(" * ".join(a))
    if isinstance(module, Concat):
        return part, lambda a: wrap(f"torch.cat([{', '.join(a)}], {module.dim + 1})")
    if isinstance(module, nn.Flatten):
        end = "" if module.end_dim == -1 else f", {module.end_dim}"
        return part, lambda a: f"torch.flatten({a[0]}, {module.start_dim}{end})"
    if isinstance(module, nn.Unflatten) or (isinstance(module, nn.Sequential) and isinstance(module[-1], nn.Unflatten)):
        dims = ", ".join(str(d) for d in row.output)
        return part, lambda a: f"{a[0]}.reshape({a[0]}.size(0), {dims})"
    function = ACTIVATION_CLASSES.get(type(module).__name__)  # an activation layer: a function call
    if function is not None:
        return part, lambda a: _activation_call(module, function, a[0])
    if hasattr(module, "source"):  # a module archcalc defines (permute, mean, select): its call on x, written out
        return part, lambda a: wrap(re.sub(r"\bx\b", a[0], module.source))
    return None


def _call(module, used: set, row) -> tuple:
    """(the constructor's name, its arguments) for a module of archcalc's library or torch.nn; refused naming the layer."""
    try:
        if any(not library.own_child(module, n) for n, _ in module.named_children()):
            return Code(library.constructor(module, used)), []  # adapted (LoRA in an attention): one expression
        return library.head(module), library.arguments(module, used)
    except SpecError as error:
        raise error.at(where=where(row)) from None


def _activation_call(module, function: str, inner: str) -> str:
    if function in TORCH_FUNCTIONS:
        return f"torch.{function}({inner})"
    dim = getattr(module, "dim", None)
    return f"F.{function}({inner}{', dim=' + str(dim) if dim is not None else ''})"


def _render(tree, indent: str, helper: dict, access: dict, path_code: str, local: str):
    """(expression, flag) of a subtree; records each module's accessor in `access` (local name -> code)."""
    if isinstance(tree, tuple):
        access[local] = path_code
        return tree
    keys = list(tree)
    rendered = {}
    for key in keys:
        if all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
            child_code = f"{path_code}[{key}]"
        elif all(k.isidentifier() and not keyword.iskeyword(k) for k in keys):
            child_code = f"{path_code}.{key}"
        else:
            child_code = f"{path_code}[{key!r}]".replace("'", '"')
        rendered[key] = _render(tree[key], indent + "    ", helper, access, child_code, f"{local}.{key}")
    flags = {flag for _, flag in rendered.values()}
    inner = indent + "    "
    if all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
        if len(flags) > 1:
            raise Unsupported(local)
        items = [rendered[str(i)][0] for i in range(len(keys))]
        return "nn.ModuleList([\n" + "".join(f"{inner}{t},\n" for t in items) + f"{indent}])", flags.pop()
    shared = flags.pop() if len(flags) == 1 else None
    texts = {k: (t if f is None or f == shared else f"{t} if {f} else None") for k, (t, f) in rendered.items()}
    if all(k.isidentifier() and not keyword.iskeyword(k) for k in keys):
        helper["namespace"] = True
        return "Namespace(\n" + "".join(f"{inner}{k}={t},\n" for k, t in texts.items()) + f"{indent})", shared
    return "nn.ModuleDict({\n" + "".join(f'{inner}"{k}": {t},\n' for k, t in texts.items()) + f"{indent}}})", shared


def _merged(orders: list[list[str]]) -> list[str]:
    """One order holding every use's names, each use's order kept (absent names fit where they belong)."""
    out: list[str] = []
    for order in orders:
        position = 0
        for name in order:
            if name in out:
                position = out.index(name) + 1
            else:
                out.insert(position, name)
                position += 1
    return out


def _type(values: tuple, flag: bool) -> str:
    if flag:
        return "bool"
    known = [v for v in values if v is not ABSENT]
    kinds = {"nn.Module" if isinstance(v, Code) else type(v).__name__ for v in known}
    return kinds.pop() if len(kinds) == 1 else "object"


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out = f"{name}_{k}"
        k += 1
    return out


def _camel(kind: str, taken: set[str]) -> str:
    name = "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", kind)) or "Block"
    if name[0].isdigit():
        name = "Block" + name
    return _unique(name, taken)
