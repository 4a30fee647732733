"""Capture with torch.fx: a module traced symbolically, each node mapped to a layer (the first capture tried).

torch.fx records each call of a torch.nn module as one node, with its arguments as written, and
functional calls (`F.relu`, `torch.flatten`, `x + y`, `torch.cat`) as they are written; it takes
milliseconds where torch.export takes seconds, so it is tried first. It cannot trace code whose
control flow reads tensors (or what torch.fx's proxies cannot stand for: Hugging Face's models);
then CaptureFailed sends the import to torch.export (capture_export.py).
"""

from __future__ import annotations

import dataclasses
import re

from ...core.errors import ArchcalcError
from ..build import require
from . import functions
from .functions import is_shape, nodes, tensors
from .mapping import PASSTHROUGH, Layer, from_module, plain, torch_base
from .names import BASES
from .problems import ImportFailed, Problem, Unmapped, place


class CaptureFailed(ArchcalcError):
    """A capture could not record the module's graph (the error, and a hint that fits it)."""

    def __init__(self, capture: str, module: str, error: BaseException, hint: str):
        self.capture, self.error = capture, error
        first = (str(error).strip().splitlines() or [""])[0]
        super().__init__(f"{capture} cannot capture {module}: {type(error).__name__}: {first[:300]}\n  hint: {hint}")


class Tracer:
    """torch.fx's tracer, with a subclass of a mapped torch.nn class that keeps its base's forward (torchvision's
    Conv3DSimple) a leaf like its base: torch.fx would trace into it, as into any class outside torch.nn."""

    def __new__(cls):
        torch = require()

        class _Tracer(torch.fx.Tracer):
            def is_leaf_module(self, module, name: str) -> bool:
                base = torch_base(module)
                if base is not None and type(module).forward is base.forward:
                    return True
                return super().is_leaf_module(module, name)

        tracer = _Tracer()
        tracer.record_stack_traces = True
        return tracer


def trace(module):
    """The module as a torch.fx graph (with each node's source line), or CaptureFailed."""
    torch = require()
    try:
        graph = Tracer().trace(module)
    except Exception as error:  # the model's own code: whatever it raises says why torch.fx cannot follow it
        raise CaptureFailed("torch.fx", type(module).__name__, error, fx_hint(error)) from None
    return torch.fx.GraphModule(module, graph)


def fx_hint(error: BaseException) -> str:
    text = str(error)
    if "symbolically traced variables cannot be used as inputs to control flow" in text:
        return "an `if` or a loop reads a tensor's value: torch.fx cannot follow it (torch.export is tried next)"
    return "torch.fx stands a proxy in for each tensor, and this code does what a proxy cannot (torch.export is tried next)"


def layers(module, input_shape: list | None = None) -> tuple[list[Layer], list[str]]:
    """The spec's layers of a module, in execution order, and the names of what forward returns.

    A module's layer is named by its path (`layer1.0.conv1`), so `build` of the spec has the
    module's state_dict keys. A functional call is named after the module that makes it
    (`x + y` in `layer1.0`: `layer1.0.add`), and so is a module without parameters called more
    than once (torchvision's shared `self.relu`: `layer1.0.relu`, then `layer1.0.relu_1`).
    `input_shape` (one sample's) lets an attention mask be read at that size (names at MASK_PROBE).
    """
    graph = trace(module)
    modules = dict(graph.named_modules())
    nodes = list(graph.graph.nodes)
    calls: dict[str, int] = {}
    for node in nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    reserved, given = set(calls), set()  # module paths first: functional names step around them
    out: list[Layer] = []
    alias: dict[str, str] = {}  # fx node name -> the spec name whose output it is
    problems: list[Problem] = []
    returned: list = []
    for node in nodes:
        if node.op == "placeholder":  # forward's arguments: the first is the input, others may go unused (mask=None)
            alias[node.name] = SECOND + node.name if alias else "input"
            continue
        if node.op == "output":
            returned = tensors(node)
            continue
        if node.op == "get_attr" or _mask_only(node, modules):
            alias[node.name] = ATTRIBUTE + str(node.target)
            continue
        try:
            made = _layer(node, modules, alias, calls, (graph, input_shape))
        except _Skip:
            continue
        except Unmapped as error:
            problems.append(Problem(error.cause, error.path or _context(node), _source(node)))
            alias[node.name] = node.name  # so that what reads it is still checked
            continue
        if made is None:  # a view that changes nothing: the same tensor
            alias[node.name] = alias[tensors(node)[0].name]
            continue
        made = dataclasses.replace(made, name=_name(node, made, reserved, given))
        alias[node.name] = made.name
        out.append(made)
    if not problems:
        problems += _output_problems(returned, alias, out)
    if problems:
        raise ImportFailed(type(module).__name__, problems, "torch.fx")
    return out, [alias[n.name] for n in returned]


def _name(node, made: Layer, reserved: set, given: set) -> str:
    """A module: its path (a suffix from its second call on). A functional call: the path of the
    module that makes it, then the operation (`layer1.0.add`), stepping around module paths."""
    if node.op == "call_module":
        base, free = node.target, lambda name: name not in given
    else:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        owner = stack[-1][0] if stack else ""
        op = BASES.get(made.kind, re.sub(r"_\d+$", "", node.name))
        base = f"{owner}.{op}" if owner else op
        free = lambda name: name not in given and name not in reserved
    found, n = base, 0
    while not free(found):
        n += 1
        found = f"{base}_{n}"
    given.add(found)
    return found


def _output_problems(returned: list, alias: dict, out: list[Layer]) -> list[Problem]:
    """A spec's output is its last layer's: forward must return that one tensor."""
    return [Problem(cause) for cause in output_causes([alias[n.name] for n in returned], out)]


def output_causes(returned: list[str], out: list[Layer]) -> list[str]:
    """Why what forward returns is no spec's output: one tensor is the last layer's; several ([model] outputs) are
    layers' outputs, each once."""
    if not returned:
        return ["forward returns no tensor: a spec has an output"]
    if len(returned) == 1:
        last = out[-1].name if out else "input"
        if returned[0] != last:
            return [f"forward returns {returned[0]!r}, but the last layer computed is {last!r}: a spec's output is its last layer's"]
        return []
    computed = {layer.name for layer in out}
    odd = [name for name in returned if name not in computed]
    if odd:
        return [f"forward returns {len(returned)} tensors, one of them {odd[0]!r}, which no layer computes: "
                "a spec's outputs are its layers'"]
    if len(set(returned)) != len(returned):
        return [f"forward returns {len(returned)} tensors, one of them twice: a spec's outputs are distinct layers"]
    return []


def _context(node) -> str:
    """The path of the module whose forward makes a call ("" at the top)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    return stack[-1][0] if stack else ""


def _argument(node, i: int, name: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _source(node) -> str:
    return place(node.meta.get("stack_trace"), f"node {node.name}", require().__file__.rsplit("/", 1)[0])


ATTRIBUTE = "\0"  # alias prefix of a tensor the module holds (get_attr): no layer's output
SECOND = "\1"  # alias prefix of forward's arguments after the first


def _operation(node) -> str:
    if node.op == "call_module":
        return node.target
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{name}()"


class _Skip(Exception):
    """A node that is not a tensor (x.size(0), a shape): used by others as an argument, never a layer."""


def _layer(node, modules: dict, alias: dict, calls: dict, probe: tuple = (None, None)) -> Layer | None:
    if is_shape(node):
        raise _Skip
    if node.op == "call_module" and type(modules[node.target]).__name__ in ATTENTION:
        if calls[node.target] > 1:
            raise Unmapped(f"called {calls[node.target]} times with the same weights "
                           "(a spec's layers each have their own)", node.target)
        return Layer(node.target, "attention", _attention(node, modules[node.target], *probe), (alias[node.args[0].name],))
    inputs = tuple(alias[n.name] for n in tensors(node))
    second = [name[len(SECOND):] for name in inputs if name.startswith(SECOND)]
    if second:
        raise Unmapped(f"{_operation(node)} reads forward's argument {second[0]!r}: a spec's network reads one input")
    held = [name[len(ATTRIBUTE):] for name in inputs if name.startswith(ATTRIBUTE)]
    if held:
        owner, _, tensor = held[0].rpartition(".")
        if node.op == "call_module":  # a module called on a tensor of no layer (swin v2's cpb_mlp on its coordinates)
            raise Unmapped(f"{type(modules[node.target]).__name__} reads a parameter or buffer of no layer ({tensor}): "
                           "archcalc has no layer for it", node.target)
        raise Unmapped(f"{_operation(node)} reads a parameter or buffer of no layer ({tensor}): archcalc has no layer for it",
                       owner or _context(node))
    if node.op == "call_module":
        module = modules[node.target]
        if type(module).__name__ in PASSTHROUGH:
            return None  # nn.Identity: its input itself
        kind, fields = from_module(module, node.target)
        if calls[node.target] > 1 and any(True for _ in module.parameters()):
            raise Unmapped(f"called {calls[node.target]} times with the same weights "
                           "(a spec's layers each have their own)", node.target)
        return Layer(node.target, kind, fields, inputs)
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if name == "getitem" and not node.users:
        raise _Skip  # `x, _ = mha(...)`: an element nothing reads selects nothing
    if name == "getitem" and _is_attention(node.args[0], modules):
        if node.args[1] != 0:
            raise Unmapped(f"its output [{node.args[1]!r}]: archcalc's attention gives its output [0], "
                           "not the attention weights", node.args[0].target)
        return None  # (output, weights)[0]: the attention layer's output
    if name == "getattr":
        raise Unmapped(f".{node.args[1]}: archcalc has no layer for this attribute")
    if not functions.known(name):
        raise Unmapped(f"{name}(): archcalc has no layer for this {'method' if node.op == 'call_method' else 'function'}")
    made = functions.layer(node, name, name)
    if made is None:
        return None
    kind, fields = made
    return Layer(node.name, kind, fields, inputs)


# --- nn.MultiheadAttention: self-attention (query, key and value one tensor) over [B, T, d] ------------

ATTENTION = ("MultiheadAttention",)
MASK_PROBE = 7  # the sequence length a mask is read at where T is a name


def _is_attention(node, modules: dict) -> bool:
    return hasattr(node, "op") and node.op == "call_module" and type(modules[node.target]).__name__ in ATTENTION


def _attention(node, module, root, input_shape) -> dict:
    """The `attention` fields of an nn.MultiheadAttention call: num_heads, bias, dropout; causal from
    is_causal=True or a causal attn_mask; kernel "math" where need_weights (torch's default) makes it
    compute the weights with matmuls, else torch's fused scaled_dot_product_attention."""
    path = node.target
    query, key, value = (_argument(node, i, n) for i, n in enumerate(("query", "key", "value")))
    if not (query is key is value):
        raise Unmapped("MultiheadAttention with query, key and value not one tensor (cross-attention): "
                        "archcalc's attention is self-attention", path)
    if not module.batch_first:
        raise Unmapped("MultiheadAttention(batch_first=False) reads [T, B, d]: archcalc's attention reads "
                        "[B, T, d] (batch_first=True)", path)
    if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
        raise Unmapped("MultiheadAttention with kdim, vdim, add_bias_kv or add_zero_attn: archcalc's attention "
                        "has none of them", path)
    if _argument(node, 3, "key_padding_mask") is not None:
        raise Unmapped("MultiheadAttention with a key_padding_mask: archcalc's attention has none", path)
    fields = {"num_heads": module.num_heads}
    if module.in_proj_bias is None:
        fields["bias"] = False
    if module.dropout:
        fields["dropout"] = plain(module.dropout, "p")
    mask, is_causal = _argument(node, 5, "attn_mask"), _argument(node, 7, "is_causal", False)
    if mask is not None:
        _causal_mask(path, mask, root, input_shape)
    if mask is not None or is_causal:
        fields["causal"] = True
    if _argument(node, 4, "need_weights", True):
        fields["kernel"] = "math"
    elif "causal" not in fields:
        fields["module"] = "multihead"  # its own copies (the memory timeline)
    return fields


def _constant(node) -> bool:
    """A tensor made from the module's buffers and the input's sizes only (never its values)."""
    if node.op == "get_attr" or is_shape(node):
        return True
    return node.op in ("call_function", "call_method") and all(
        map(_constant, nodes(node.args) + nodes(list(node.kwargs.values()))))


def _mask_only(node, modules: dict) -> bool:
    """A constant tensor read only as attention masks (directly or through other such tensors): no layer."""
    return (node.op in ("call_function", "call_method") and not is_shape(node) and _constant(node) and bool(node.users)
            and all(_is_attention(user, modules) or _mask_only(user, modules) for user in node.users))


def _causal_mask(path: str, mask, root, input_shape) -> None:
    """An attn_mask must be causal at the input's T: True (bool) or -inf (float) exactly above the diagonal, else False or 0."""
    torch = require()
    if not hasattr(mask, "op") or not _constant(mask) or root is None or input_shape is None:
        raise Unmapped("an attn_mask archcalc cannot read (it reads only a causal mask built from T or held as a buffer)", path)
    sizes = [size if isinstance(size, int) else MASK_PROBE for size in input_shape]
    t = sizes[0] if len(sizes) == 2 else None
    try:
        value = _evaluate(mask, root, torch.zeros(1, *sizes))
    except Exception as error:
        raise Unmapped(f"reading its attn_mask failed: {type(error).__name__}: {error}", path) from None
    if t is None or tuple(value.shape) != (t, t):
        raise Unmapped(f"attn_mask of shape {list(value.shape)} for T = {t}: archcalc's causal attention "
                        "masks [T, T] (a fixed-size buffer needs T given as its size)", path)
    above = torch.ones(t, t, dtype=torch.bool).triu(1)
    causal = bool((value == above).all()) if value.dtype == torch.bool else bool(
        (value[above] == float("-inf")).all() and (value[~above] == 0).all())
    if not causal:
        raise Unmapped("attn_mask is not the causal mask (-inf or True exactly above the diagonal): "
                        "archcalc's attention masks causally or not at all", path)


def _evaluate(node, root, sample):
    """The value of a node when the traced module runs on `sample`, without autograd: the nodes up to it
    run once (per graph and sample shape), so a mask is read before the attention that takes it runs."""
    torch = require()
    state = root.meta.get("archcalc_values")
    if state is None or state[0] != tuple(sample.shape):
        runner = torch.fx.Interpreter(root)
        runner.env, runner.args_iter = {}, iter([sample])
        root.meta["archcalc_values"] = state = (tuple(sample.shape), runner)
    runner = state[1]
    with torch.no_grad():
        for step in root.graph.nodes:
            if node in runner.env:
                break
            if step not in runner.env:
                runner.env[step] = runner.run_node(step)
    return runner.env[node]
