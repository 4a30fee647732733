"""Attention written as operations (torch.export's graph): the projections, SDPA, the heads merged back and the output
projection are one `attention` layer.

timm's Attention (a fused qkv Linear, reshaped, permuted and unbound into q, k, v), Hugging Face's GPT-2 (c_attn split
in three), BERT's, ViT's and CLIP's (query, key and value Linears) all call torch's scaled_dot_product_attention on
heads made by views, and project its output, the heads merged by views, with one more Linear. Those views move values
and compute nothing: from SDPA's q, k and v back through them to the projections (one fused, or three), and forward
from its output to the output projection, the whole is archcalc's `attention` (num_heads and kv_heads from the heads'
shapes, causal from is_causal or the mask's values, dropout from dropout_p); what reads anything in between, or a
projection that is not d → d (heads·head_dim ≠ d), leaves the operations to be listed one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..build import require
from .functions import is_shape, tensors
from .mapping import torch_base
from .problems import Unmapped

# Operations that only route values between the projections, SDPA and the output projection (views, copies, splits)
ROUTES = {"view", "reshape", "_unsafe_view", "permute", "transpose", "unbind", "split", "split_with_sizes", "chunk",
          "getitem", "select", "slice", "narrow", "contiguous", "clone", "expand", "unsqueeze", "squeeze", "alias",
          "detach", "flatten", "unflatten"}
CORE = "scaled_dot_product_attention"
PROJECTIONS = ("Linear", "Conv1D")  # torch's, and Hugging Face's GPT-2 Conv1D (the weight transposed)


@dataclass
class Found:
    """One attention: the operations it replaces and the layer it is."""

    core: object  # the SDPA node
    routes: set  # the views between the projections, the core and the output projection
    projections: list  # the module calls of q, k and v: one (fused) or three
    out: object  # the output projection's call
    source: object  # the tensor the projections read
    fields: dict = field(default_factory=dict)
    bias: object = None  # the attn_mask that is a learned position bias (T5's), read as the layer's second input


def operation(node) -> str:
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    return packet.__name__ if packet is not None else getattr(target, "__name__", str(target))


@dataclass
class Core:
    """What computes attention from q, k and v: SDPA, or its operations written out (q @ kᵀ, a scale, a mask, softmax,
    dropout, @ v: nanoGPT's); `inside` are the written-out operations between q, k, v and the output."""

    node: object  # the operation whose output is the heads' output
    q: object
    k: object
    v: object
    mask: object = None
    causal: bool = False
    dropout: object = 0.0
    filled: bool = False  # the mask is masked_fill's (True: masked), not added
    kernel: str = "flash"
    inside: tuple = ()


def find(recovered, member: dict) -> tuple[list[Found], list]:
    """The attentions written as operations in a recovered program (each SDPA, or softmax(q @ kᵀ) @ v, outside a mapped
    module), and the (Unmapped, node) of those found but not expressible (listed instead of their operations)."""
    found, refused = [], []
    for node in recovered.graph.nodes:
        if node.op != "call_function" or node in member or node not in recovered.dependent:
            continue
        core = _sdpa(node) if operation(node) == CORE else _written(recovered, node) if operation(node) == "matmul" else None
        if core is None:
            continue
        try:
            made = _attention(recovered, member, core)
        except Unmapped as error:
            refused.append((error, node))
            continue
        if made is not None:
            found.append(made)
    return found, refused


def _sdpa(node) -> Core:
    args = list(node.args) + [None] * 8
    kwargs = node.kwargs
    mask = args[3] if args[3] is not None else kwargs.get("attn_mask")
    causal = bool(args[5] if args[5] is not None else kwargs.get("is_causal", False))
    dropout = args[4] if args[4] is not None else kwargs.get("dropout_p", 0.0)
    return Core(node, args[0], args[1], args[2], mask, causal, dropout)


def _scalar(node) -> bool:
    """x * c or x / c with a number c (a scale)."""
    return operation(node) in ("mul", "div") and len(node.args) == 2 and isinstance(node.args[1], (int, float))


def _written(recovered, node) -> Core | None:
    """softmax((q @ kᵀ)·scale [masked]) [dropped] @ v, as nanoGPT writes it: the last product's Core, or None."""
    if len(node.args) != 2:
        return None
    a, v = node.args
    inside, dropout, mask, filled = [], 0.0, None, False
    if operation(a) in ("dropout", "native_dropout") and len(a.users) == 1:
        dropout = a.args[1] if len(a.args) > 1 else a.kwargs.get("p", 0.5)
        inside.append(a)
        a = a.args[0]
    if operation(a) not in ("softmax", "_softmax") or len(a.users) != 1 or a.args[1] not in (-1, a.meta["val"].dim() - 1):
        return None
    inside.append(a)
    s = a.args[0]
    if operation(s) == "masked_fill" and s.args[1] not in recovered.dependent and s.args[2] == float("-inf"):
        mask, filled = s.args[1], True
        inside.append(s)
        s = s.args[0]
    elif operation(s) == "add" and len(s.args) == 2 and hasattr(s.args[1], "op") and s.args[1] not in recovered.dependent:
        mask = s.args[1]
        inside.append(s)
        s = s.args[0]
    while _scalar(s) and len(s.users) == 1:
        inside.append(s)
        s = s.args[0]
    if operation(s) != "matmul" or len(s.users) != 1:
        return None
    q, kt = s.args
    rank = kt.meta["val"].dim()
    if operation(kt) != "transpose" or sorted(d % rank for d in kt.args[1:3]) != [rank - 2, rank - 1]:
        return None
    inside += [s, kt]
    return Core(node, q, kt.args[0], v, mask, False, dropout, filled, "math", tuple(inside))


def _attention(recovered, member: dict, core: Core) -> Found | None:
    chains = [_back(recovered, member, n) for n in (core.q, core.k, core.v)]
    if any(chain is None for chain in chains):
        return None
    calls = list(dict.fromkeys(call for call, _ in chains))
    if len(calls) not in (1, 3):
        return None
    routes = {n for _, path in chains for n in path}
    sources = {s for call in calls for s in _inputs(recovered, call)}
    if len(sources) != 1:
        return None
    (source,) = sources
    forward, out = _forward(recovered, member, core.node)
    if out is None:
        return None
    routes |= set(forward) | set(core.inside)
    outputs = {call.nodes[-1] for call in calls}
    for n in routes | outputs:
        if any(user not in routes and user is not core.node and user not in out.nodes for user in n.users):
            return None  # something else reads what the attention computes inside
    fields = _fields(recovered, member, core, calls, out, source)
    return Found(core.node, routes, calls, out, source, fields, core.mask if fields.get("position_bias") else None)


def _back(recovered, member: dict, node):
    """The module call (a projection) a q, k or v is routed from, and the routing operations on the way."""
    path = []
    while True:
        call = member.get(node)
        if call is not None:
            ok = call.nodes[-1] is node and _projection(call.module)
            return (call, path) if ok else None
        if node.op != "call_function" or not (operation(node) in ROUTES or _scalar(node)) or node not in recovered.dependent:
            return None
        read = [n for n in tensors(node) if n in recovered.dependent]
        if len(read) != 1:
            return None
        path.append(node)
        node = read[0]


def _forward(recovered, member: dict, core):
    """The views from SDPA's output to the output projection, and that projection's call."""
    path, node = [], core
    while True:
        users = list(node.users)
        if len(users) != 1:
            return path, None
        (user,) = users
        call = member.get(user)
        if call is not None:
            if _projection(call.module) and _inputs(recovered, call) == [node]:
                return path, call
            return path, None
        if user.op != "call_function" or operation(user) not in ROUTES:
            return path, None
        path.append(user)
        node = user


def _projection(module) -> bool:
    base = torch_base(module)
    return base is not None and base.__name__ in PROJECTIONS


def _inputs(recovered, call) -> list:
    inside = set(call.nodes)
    found = []
    for node in call.nodes:
        for arg in tensors(node):
            if arg not in inside and arg in recovered.dependent and arg not in found:
                found.append(arg)
    return found


def _features(module) -> tuple[int, int]:
    """(in, out) of a projection: nn.Linear's weight is [out, in], Conv1D's [in, out]."""
    rows, columns = (int(n) for n in module.weight.shape)
    return (rows, columns) if torch_base(module).__name__ == "Conv1D" else (columns, rows)


def _fields(recovered, member, core: Core, calls, out, source) -> dict:
    path = recovered.context(core.node)
    x = source.meta["val"]
    q = core.q.meta["val"]
    if x.dim() != 3 or q.dim() != 4:
        raise Unmapped(f"attention on {x.dim() - 1}-axis tokens: archcalc's attention reads [T, d]", path)
    d = int(x.shape[-1])
    heads, head_dim = int(q.shape[1]), int(q.shape[-1])
    if heads * head_dim != d:
        raise Unmapped(f"attention with {heads} heads of {head_dim} on d = {d}: archcalc's heads split d (heads·head_dim = d)", path)
    if len(calls) == 1:
        _, width = _features(calls[0].module)
        kv = (width - d) // 2
        if width != d + 2 * kv:
            raise Unmapped(f"a fused projection of {width} features for d = {d}: archcalc's is d + 2·kv_dim", path)
    else:
        widths = [_features(call.module)[1] for call in calls]
        kv = widths[1]
        if widths[0] != d or widths[2] != kv:
            raise Unmapped(f"projections of {widths} features for d = {d}: archcalc's are d, kv_dim, kv_dim", path)
    if _features(out.module) != (d, d):
        raise Unmapped(f"an output projection {_features(out.module)} for d = {d}: archcalc's is d → d", out.path)
    biases = {getattr(call.module, "bias", None) is not None for call in [*calls, out]}
    if len(biases) != 1:
        raise Unmapped("projections with and without biases: archcalc's attention has them all or none", path)
    if kv % head_dim:
        raise Unmapped(f"k and v of {kv} features with heads of {head_dim}", path)
    fields: dict = {"num_heads": heads}
    if kv != d:
        fields["kv_heads"] = kv // head_dim
    mask, causal, dropout = core.mask, core.causal, core.dropout
    if core.kernel != "flash":
        fields["kernel"] = core.kernel
    if mask is not None and _learned_bias(recovered, member, mask):
        fields["position_bias"] = True
        fields["kernel"] = "math"  # SDPA has no fused kernel for a mask that needs a gradient
    elif mask is not None:
        causal = causal or _mask(recovered, mask, path, core.filled)
    if causal:
        fields["causal"] = True
    if dropout:
        fields["dropout"] = int(dropout) if float(dropout).is_integer() else dropout
    if not biases.pop():
        fields["bias"] = False
    return fields


def _learned_bias(recovered, member: dict, mask) -> bool:
    """Whether an attn_mask is a learned bias: views of what an Embedding looks up at computed indices (T5's
    relative_attention_bias at the buckets of relative positions)."""
    node = mask
    while node.op == "call_function" and node not in member:
        if recovered.unmasked(node):  # where(a padding mask of all True, bias, -inf): the bias
            node = node.args[1]
            continue
        read = [n for n in tensors(node) if not is_shape(n)]
        if operation(node) not in ROUTES | {"to", "_to_copy"} or len(read) != 1:
            return False
        node = read[0]
    call = member.get(node)
    return call is not None and torch_base(call.module) is not None and torch_base(call.module).__name__ == "Embedding" \
        and getattr(recovered.parent_of(call.path), "relative_attention_num_buckets", None) is not None


def _mask(recovered, mask, path: str, filled: bool = False) -> bool:
    """Whether an attn_mask is causal (True), or masks nothing (False); Unmapped for any other, or one that cannot be read."""
    torch = require()
    value = recovered.constants.value(mask)
    if value is None:
        raise Unmapped("SDPA with an attn_mask archcalc cannot read (it reads a causal mask, or one that masks nothing, "
                       "computed from sizes)", path)
    t_q, t_k = value.shape[-2], value.shape[-1]
    rows = value.reshape(-1, t_q, t_k)
    if not bool((rows == rows[:1]).all()):
        raise Unmapped("SDPA with an attn_mask that differs by sample or head (padding): archcalc's attention is causal "
                       "or not masked", path)
    if filled:  # masked_fill(mask, -inf): True where masked
        keep = ~rows[0].bool()
    else:
        keep = rows[0] if rows.dtype == torch.bool else rows[0] > torch.finfo(rows.dtype).min / 2
    if bool(keep.all()):
        return False
    if t_q == t_k and bool((keep == torch.ones(t_q, t_k, dtype=torch.bool).tril()).all()):
        return True
    raise Unmapped("SDPA with an attn_mask that is neither causal nor empty (a sliding window, padding): archcalc's "
                   "attention is causal or not masked", path)
