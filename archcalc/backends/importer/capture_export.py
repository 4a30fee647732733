"""Capture with torch.export (non-strict): the module's ATen operations, each tagged with the modules it runs in.

Non-strict export runs forward in Python on fake tensors, so it follows what torch.fx cannot
(Hugging Face's models: keyword arguments, dataclass outputs, masks built from sizes), and each
operation carries `nn_module_stack`, the path and class of every module call it is under. Layers
are recovered from it: the operations under a mapped module's call are that one layer (its fields
read from the module, as torch.fx's call_module); a subclass of a mapped torch.nn class is that
layer for its own operations, its children apart (timm's BatchNormAct2d: a batchnorm, then its
`act`); an unmapped module is walked into, and its operations map one by one (functions.py, by
the ATen operation's name). Sizes are dynamic (torch.export's Dim.AUTO) for the batch and every
axis the input names, so a view sized from x.shape reads the batch axis as such.

It takes seconds where torch.fx takes milliseconds: the import tries it second (__init__.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...layers import LAYERS
from ...layers.base import Inexpressible
from ...layers.shape import VIEWS
from ..build import require
from . import attention, functions
from .capture_fx import ATTRIBUTE, SECOND, CaptureFailed, output_causes
from .constants import Constants
from .functions import is_shape, nodes, tensors
from .mapping import PASSTHROUGH, Layer, from_module, plain, torch_base, whole
from .names import BASES, free
from .problems import ImportFailed, Problem, Unmapped, place
from .sizes import Sizes

BATCH = 2  # the sample's batch: 1 would be specialised (torch.export treats sizes 0 and 1 as constants)
PROBES = {"T": 7, "D": 8}  # a named axis's size in the sample; other names (H, W, L...) 224
PROBE = 224
CONSTANT = "\2"  # alias prefix of a tensor computed without the input's values (a mask, positions, random noise)


def sample(module, input_shape: list):
    """The example input: [BATCH, *shape] with each named axis at its probe size; token ids where the
    model starts with an embedding of a 1-D input, random values otherwise (on the module's device)."""
    torch = require()
    sizes = [PROBES.get(d, PROBE) if isinstance(d, str) else int(d) for d in input_shape]
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    embedding = next((m for m in module.modules() if isinstance(m, torch.nn.Embedding)), None)
    if len(sizes) == 1 and embedding is not None:
        return torch.randint(0, embedding.num_embeddings, (BATCH, *sizes), device=device)
    return torch.randn(BATCH, *sizes, device=device)


def capture(module, input_shape: list):
    """The ExportedProgram of the module on `sample`, the batch and the named axes dynamic, and that sample."""
    torch = require()
    x = sample(module, input_shape)
    auto = torch.export.Dim.AUTO
    dynamic = {0: auto} | {i + 1: auto for i, d in enumerate(input_shape) if isinstance(d, str)}
    try:
        return torch.export.export(module, (x,), dynamic_shapes=(dynamic,), strict=False), x
    except Exception as error:  # the model's own code, run on fake tensors
        raise CaptureFailed("torch.export", type(module).__name__, error, export_hint(error, input_shape)) from None


def export_hint(error: BaseException, input_shape: list) -> str:
    text = f"{type(error).__name__}: {error}"
    named = [d for d in input_shape if isinstance(d, str)]
    if "data-dependent" in text or "DataDependent" in text:
        return "the code branches on a tensor's value (not its size): archcalc cannot follow that; write that part as a spec by hand"
    if named:
        sizes = ", ".join(f"{d} = {PROBES.get(d, PROBE)}" for d in named)
        return f"it was run at {sizes}: give the input's sizes as numbers the model takes (--input)"
    return "torch.export runs forward on fake tensors: this code needs something they cannot give"


@dataclass(eq=False)
class Call:
    """One module call: its operations (in order), the module and its path."""

    key: str
    path: str
    module: object
    nodes: list


class Recovered:
    """The layers of an ExportedProgram; one pass over its nodes, in execution order."""

    def __init__(self, program, module, input_shape: list, x=None):
        self.torch = require()
        self.program, self.root, self.input_shape = program, module, input_shape
        self.graph = program.graph
        self.modules = dict(module.named_modules())
        self.alias: dict[str, str] = {}
        self.layers: list[Layer] = []
        self.problems: list[Problem] = []
        self.given: set[str] = set()
        self.unmapped: set[str] = set()  # nodes listed as problems
        self.torch_dir = self.torch.__file__.rsplit("/", 1)[0]
        signature = program.graph_signature
        self.held = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
                     **signature.inputs_to_lifted_tensor_constants}
        self.calls: dict[str, Call] = {}  # call key -> its call
        self.constants = Constants(program, x, self.held)
        self.parameters = dict(module.named_parameters())
        self.learned: dict[str, str] = {}  # a parameter's path -> the `parameter` layer made of it (a layer scale, a class token)
        self.several: dict = {}  # a node that returns several tensors (chunk, unbind) -> its function's name
        self.owned: dict[int, str] = {}  # a module's weight (by identity) -> the layer that holds it (weight tying)
        self.made_attention: set[str] = set()  # attention layers made of operations (attention.py)
        self.absorbed: set = set()  # operations a layer made of a call already stands for (T5's bias permuted)
        self.alias_parameter: dict[str, str] = {}  # the alias of a view of a parameter -> the parameter's path
        self.parameter_value: dict[str, object] = {}  # the alias of a view of a parameter -> its value (fake tensor)
        self._batch()

    def _batch(self) -> None:
        """Tag every size node with whether it is the batch (views keep the batch axis only as it)."""
        user = [n for n in self.graph.nodes if n.op == "placeholder" and n.name not in self.held]
        self.batch = str(user[0].meta["val"].shape[0]) if user else None
        self.sizes = Sizes(user[0].meta["val"].shape if user else (), self.input_shape)
        for node in self.graph.nodes:
            value = node.meta.get("val")
            if isinstance(value, (int, self.torch.SymInt)) and not isinstance(value, bool):
                node.meta["archcalc_batch"] = str(value) == self.batch
            if node.op == "placeholder" and node.name in self.held:
                node.meta["archcalc_held"] = True

    def specialised(self) -> list[Problem]:
        """Named axes the model fixed (torch.export made them constants): the spec would claim a formula it is not."""
        user = [n for n in self.graph.nodes if n.op == "placeholder" and n.name not in self.held]
        shape = user[0].meta["val"].shape[1:]
        return [Problem(f"the model takes only {name} = {size} (torch.export fixed it): give it as a number with --input")
                for name, size in zip(self.input_shape, shape) if isinstance(name, str) and not isinstance(size, self.torch.SymInt)]

    # --- which call a node belongs to ------------------------------------------------------------------

    def owner_of(self, node) -> Call | None:
        """The mapped module call a node is part of: the outermost module a kind lists as a whole (a torch.nn
        class), or a subclass of one that keeps its base's forward, whose own operation this is (not one of its
        children's). A subclass with a forward of its own (ConvNeXt's LayerNorm2d: permute, F.layer_norm, permute;
        timm's BatchNormAct2d) is walked into: its functional calls that read its parameters are its layer."""
        stack = list((node.meta.get("nn_module_stack") or {}).items())
        for i, (key, (path, _)) in enumerate(stack):
            module = self.modules.get(path)
            if not path or module is None or (torch_base(module) is None and type(module).__name__ not in PASSTHROUGH):
                continue
            base = torch_base(module)
            if whole(module) or (i == len(stack) - 1 and base is not None and type(module).forward is base.forward):
                call = self.calls.setdefault(key, Call(key, path, module, []))
                call.nodes.append(node)
                return call
        return None

    def context(self, node) -> str:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        return stack[-1][0] if stack else ""

    # --- the pass --------------------------------------------------------------------------------------

    def run(self) -> tuple[list[Layer], list[str]]:
        operations = [n for n in self.graph.nodes if n.op == "call_function"]
        for node in operations:
            if not is_shape(node) or node.meta.get("val") is None:
                self.owner_of(node)
        self.reserved = {call.path for call in self.calls.values()}
        weighted = {name for cls in LAYERS.values() for name in cls.torch_weighted}
        self.owners = {self.held[n.name].rpartition(".")[0] for node in operations if _operation(node) in weighted
                       for n in tensors(node) if n.name in self.held}  # modules whose parameters a functional call reads
        last = {call.nodes[-1]: call for call in self.calls.values()}
        member = {node: call for call in self.calls.values() for node in call.nodes}
        self.dependent = self._dependent()
        found, refused = attention.find(self, member)
        for error, node in refused:
            self._problem(error, node)
        inside = {n for a in found for n in (*a.routes, a.core)}
        projections = {call.key for a in found for call in a.projections}
        attentions = {a.out.key: a for a in found}
        first = True
        for node in self.graph.nodes:
            if node.op == "placeholder":
                if node.name in self.held:
                    self.alias[node.name] = ATTRIBUTE + self.held[node.name]
                else:
                    self.alias[node.name] = "input" if first else SECOND + node.name
                    first = False
                continue
            if node.op == "output" or node in inside:
                continue
            if node in member:
                if node in last and last[node].key in attentions:
                    self._attention_of_operations(attentions[last[node].key])
                elif node in last and last[node].key not in projections:
                    self._call(last[node])
                continue
            self._function(node)
        self._unnest({a.out.key for a in found})
        self.problems += self.specialised()
        returned = self._returned()
        if not self.problems:
            self.problems += [Problem(cause) for cause in output_causes(returned, self.layers)]
        if self.problems:
            raise ImportFailed(type(self.root).__name__, self.problems, "torch.export")
        return self.layers, returned

    def _dependent(self) -> set:
        """The nodes whose value depends on the input's values (the others are constants: masks, positions);
        a size read from the input (x.size(1)) is not its values."""
        found = set()
        for node in self.graph.nodes:
            user = node.op == "placeholder" and node.name not in self.held
            read = nodes(node.args) + nodes(list(node.kwargs.values()))
            if user or (node.op == "call_function" and not is_shape(node) and any(n in found for n in read)):
                found.add(node)
        return found

    def _returned(self) -> list[str]:
        signature = self.program.graph_signature
        users = [spec.arg.name for spec in signature.output_specs if spec.kind.name == "USER_OUTPUT" and hasattr(spec.arg, "name")]
        return [self.alias.get(name, name) for name in users]

    def _source(self, node) -> str:
        return place(node.meta.get("stack_trace"), f"node {node.name}", self.torch_dir)

    def _problem(self, error: Unmapped, node) -> None:
        self.problems.append(Problem(error.cause, error.path or self.context(node), self._source(node)))

    # --- a mapped module's call ------------------------------------------------------------------------

    def _call(self, call: Call) -> None:
        inside = set(call.nodes)
        for node in call.nodes:  # x.to(its own dtype) is x: what reads it outside reads the call's input (Llama's residual)
            source = tensors(node)[:1]
            if (_operation(node) in SAME and source and source[0] not in inside and source[0] in self.dependent
                    and _same_tensor(node, source[0])):
                self.alias[node.name] = self.alias.get(source[0].name, source[0].name)
                inside.discard(node)
        detached = self._detached(call.module)
        outputs = [n for n in call.nodes if n in inside and (any(user not in inside for user in n.users) or self._is_returned(n))]
        outputs = [n for n in outputs if (n in self.dependent or detached) and not is_shape(n)]
        inputs: list[str] = []
        for node in call.nodes:
            for arg in tensors(node):
                name = self.alias.get(arg.name, arg.name)
                if arg in inside or (arg not in self.dependent and name not in self.given):
                    continue  # its own parameters, buffers and masks
                if name not in inputs:
                    inputs.append(name)
        if not outputs:
            read = [n for n in call.nodes if any(user not in inside for user in n.users)]
            if read and torch_base(call.module) is not None and torch_base(call.module).__name__ == "Embedding":
                if getattr(self.parent_of(call.path), "relative_attention_num_buckets", None) is not None:
                    self._relative(call, read)
                else:
                    self._positions(call, read)
            elif read and any(True for _ in call.module.parameters()):  # its weights would go uncounted
                self._problem(Unmapped(f"{type(call.module).__name__} reads no tensor computed from the input "
                                       "(positions, a constant): archcalc has no layer for it", call.path), call.nodes[0])
            return  # else nothing reads what it computes (an assertion, a buffer's update)
        if detached and not inputs:  # made from sizes alone (the rotary tables): it reads the tokens before it for T
            inputs = [self.layers[-1].name if self.layers else "input"]
        try:
            made = self._call_layer(call, inputs, outputs if not detached else outputs[:1])
        except Unmapped as error:
            self._problem(error, call.nodes[0])
            for node in outputs:
                self.alias[node.name] = node.name
            return
        if made is None:  # nn.Identity: its input itself
            self.alias[outputs[0].name] = inputs[0]
            return
        name = free(call.path, lambda n: n in self.given)
        self.given.add(name)
        self.layers.append(dataclasses.replace(made, name=name))
        if isinstance(getattr(call.module, "weight", None), self.torch.Tensor):
            self.owned.setdefault(id(call.module.weight), name)
        for node in outputs if detached else outputs[:1]:  # the rotary tables: cos and sin, one layer's output
            self.alias[node.name] = name

    def _detached(self, module) -> bool:
        """Whether a module is a layer kind whose output is made from its input's sizes alone (the rotary tables)."""
        base = torch_base(module)
        return base is not None and any(cls.detached and base.__name__ in cls.torch_modules for cls in LAYERS.values())

    def _positions(self, call: Call, read: list) -> None:
        """An nn.Embedding of positions (GPT-2's wpe of arange(T), BERT's position_ids[:, :T] and token types of zeros,
        CLIP's every position): the table as a `parameter` of its first `length` rows (one row: a token type of 0)."""
        module, node = call.module, call.nodes[0]
        indices = node.args[1] if _operation(node) == "embedding" and len(node.args) > 1 else None  # (weight, indices)
        rows = self._rows(indices) if indices is not None else None
        if rows is None or len(read) != 1:
            self._problem(Unmapped(f"{type(module).__name__} of indices archcalc cannot read (it reads positions 0, 1, "
                                   "2... and a token type of 0)", call.path), node)
            return
        table = [int(module.num_embeddings), int(module.embedding_dim)]
        length = 1 if rows == "zeros" else self.sizes.value(read[0].meta["val"].shape[-2])
        if length is None:
            self._problem(Unmapped(f"{type(module).__name__} of positions whose count archcalc cannot write", call.path), node)
            return
        fields = {"shape": table} | ({} if length == table[0] else {"length": length})
        name = free(call.path, lambda n: n in self.given)
        self.given.add(name)
        self.layers.append(Layer(name, "parameter", fields, (self.layers[-1].name if self.layers else "input",)))
        self.alias[read[0].name] = name

    def unmasked(self, node) -> bool:
        """torch.where(mask, x, other) with a mask of sizes alone that is True everywhere (transformers' padding mask
        without padding, T5's bias masked by it): x itself."""
        if _operation(node) != "where" or len(node.args) != 3:
            return False
        if not hasattr(node.args[0], "op") or node.args[0] in self.dependent:
            return False
        mask = self.constants.value(node.args[0])
        return mask is not None and mask.dtype == self.torch.bool and bool(mask.all()) and \
            tuple(node.meta["val"].shape[-2:]) == tuple(node.args[1].meta["val"].shape[-2:])

    def parent_of(self, path: str):
        """The module that holds a module (T5Attention, for its relative_attention_bias)."""
        return self.modules.get(path.rpartition(".")[0]) if "." in path else self.root

    def _relative(self, call: Call, read: list) -> None:
        """T5's relative_attention_bias, an nn.Embedding of the buckets of relative positions (T5Attention.compute_bias),
        then permuted to [1, heads, T, T]: a `relative_bias` layer, checked against the buckets at the sample's T."""
        from ..modules import relative_buckets

        module, node, owner = call.module, call.nodes[0], self.parent_of(call.path)
        fields = {"num_heads": int(module.embedding_dim), "num_buckets": int(module.num_embeddings),
                  "max_distance": int(owner.relative_attention_max_distance), "bidirectional": not bool(owner.is_decoder)}
        value = self.constants.value(node.args[1]) if len(node.args) > 1 else None
        out = read[0]
        while len(out.users) == 1 and _operation(next(iter(out.users))) in {"permute", "unsqueeze", "view", "reshape"}:
            out = next(iter(out.users))
        shape = tuple(out.meta["val"].shape)
        expected = None if value is None else relative_buckets(value.shape[-1], fields["bidirectional"], fields["num_buckets"],
                                                              fields["max_distance"])
        if expected is None or value.shape != expected.shape or not bool((value == expected).all()) or len(shape) != 4 or shape[0] != 1:
            self._problem(Unmapped(f"{type(module).__name__} of indices that are not T5's relative position buckets "
                                   "(archcalc's relative_bias)", call.path), node)
            return
        name = free(call.path, lambda n: n in self.given)
        self.given.add(name)
        self.layers.append(Layer(name, "relative_bias", {k: v for k, v in fields.items() if (k, v) not in
                                                          (("num_buckets", 32), ("max_distance", 128), ("bidirectional", True))},
                                 (self.layers[-1].name if self.layers else "input",)))
        step = read[0]
        while True:  # the lookup's views, to [1, heads, T, T]: the layer's output
            self.alias[step.name] = name
            self.absorbed.add(step)
            if step is out:
                break
            step = next(iter(step.users))

    def _rows(self, indices) -> str | None:
        """Which rows an embedding looks up: "first" (positions 0, 1, 2...), "zeros" (row 0 everywhere), or None.
        Read from their values; where they are a buffer without values (a model on the meta device), from the
        buffer's name: transformers' position_ids (arange) and token_type_ids (zeros)."""
        torch = self.torch
        value = self.constants.value(indices)
        if value is not None and value.dim() >= 1 and not value.is_floating_point():
            flat = value.reshape(-1, value.shape[-1])
            if bool((flat == 0).all()):
                return "zeros"
            if bool((flat == torch.arange(flat.shape[-1])).all()):
                return "first"
            return None
        buffers, todo, seen = set(), [indices], set()
        while todo:
            step = todo.pop()
            if step in seen:
                continue
            seen.add(step)
            if step.op == "placeholder":
                buffers.add(self.held.get(step.name, "").rpartition(".")[2])
            todo += [n for n in nodes(step.args) if not is_shape(n)]
        if "token_type_ids" in buffers:  # gathered at positions or not: zeros
            return "zeros" if buffers <= {"token_type_ids", "position_ids"} else None
        return "first" if buffers == {"position_ids"} else None

    def _attention_of_operations(self, found) -> None:
        """Attention written as operations (attention.py): one layer, named by the module that calls SDPA."""
        base = self.context(found.core) or "attention"
        name = free(base, lambda n: n in self.given or (n in self.reserved and n != base))
        self.given.add(name)
        inputs = (self.alias.get(found.source.name, found.source.name),)
        if found.bias is not None:  # T5's relative position bias: its layer's output
            inputs += (self.alias.get(found.bias.name, found.bias.name),)
        self.layers.append(Layer(name, "attention", found.fields, inputs))
        self.alias[found.out.nodes[-1].name] = name
        self.made_attention.add(name)

    def _unnest(self, keys) -> None:
        """An attention named by its module, whose other layers (a dropout after the output projection) are named below
        it: renamed `<module>.attention`, beside them (a spec's layer holds no layers)."""
        names = [layer.name for layer in self.layers]
        for name in list(self.made_attention):
            if not any(other.startswith(name + ".") for other in names):
                continue
            new = free(f"{name}.attention", lambda n: n in self.given)
            self.given.add(new)
            self.layers = [dataclasses.replace(layer, name=new if layer.name == name else layer.name,
                                               inputs=tuple(new if n == name else n for n in layer.inputs)) for layer in self.layers]
            self.alias = {k: new if v == name else v for k, v in self.alias.items()}

    def _is_returned(self, node) -> bool:
        return any(user.op == "output" for user in node.users)

    def _call_layer(self, call: Call, inputs: list[str], outputs: list) -> Layer | None:
        path, module = call.path, call.module
        if type(module).__name__ in PASSTHROUGH:
            return None
        if len(outputs) > 1 and not self._detached(module):
            raise Unmapped(f"{type(module).__name__} returns {len(outputs)} tensors read later: an archcalc layer gives one", path)
        if not inputs:
            raise Unmapped(f"{type(module).__name__} reads no tensor computed from the input (positions, a constant): "
                           "archcalc has no layer for it", path)
        self._held_inputs(inputs, f"{type(module).__name__}")
        if any(self.calls[k].path == path for k in self.calls if k != call.key) and any(True for _ in module.parameters()):
            raise Unmapped(f"called {sum(c.path == path for c in self.calls.values())} times with the same weights "
                           "(a spec's layers each have their own)", path)
        if type(module).__name__ == "MultiheadAttention":
            return Layer(path, "attention", self._attention(call, outputs[0]), tuple(inputs[:1]))
        kind, fields = from_module(module, path)
        weight = getattr(module, "weight", None)
        if weight is not None and id(weight) in self.owned and "tie" in LAYERS[kind].spec_fields():
            fields["tie"] = self.owned[id(weight)]  # GPT-2's lm_head: wte's matrix
        return Layer(path, kind, fields, tuple(inputs))

    def _held_inputs(self, inputs: list[str], what: str) -> None:
        second = [name[len(SECOND):] for name in inputs if name.startswith(SECOND)]
        if second:
            raise Unmapped(f"{what} reads forward's argument {second[0]!r}: a spec's network reads one input")

    def _attention(self, call: Call, output) -> dict:
        """nn.MultiheadAttention as `attention`: self-attention over [B, T, d], no mask (the torch.fx capture reads masks)."""
        module, path = call.module, call.path
        inside = set(call.nodes)
        if not self._after(output, f"{path}.out_proj.weight", inside):
            raise Unmapped("its output [1] is read: archcalc's attention gives its output [0], not the attention weights", path)
        if not module.batch_first:
            raise Unmapped("MultiheadAttention(batch_first=False) reads [T, B, d]: archcalc's attention reads [B, T, d] "
                           "(batch_first=True)", path)
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise Unmapped("MultiheadAttention with kdim, vdim, add_bias_kv or add_zero_attn: archcalc's attention has none of them", path)
        read = {arg for node in call.nodes for arg in tensors(node) if arg not in inside}
        if any(arg not in self.dependent and self.held.get(arg.name) is None for arg in read):
            raise Unmapped("MultiheadAttention with a mask: archcalc reads masks where torch.fx can trace the model", path)
        if len({arg for arg in read if arg in self.dependent}) > 1:
            raise Unmapped("MultiheadAttention with query, key and value not one tensor (cross-attention): "
                           "archcalc's attention is self-attention", path)
        fields = {"num_heads": module.num_heads}
        if module.in_proj_bias is None:
            fields["bias"] = False
        if module.dropout:
            fields["dropout"] = plain(module.dropout, "p")
        fused = any(getattr(n.target, "__name__", "").startswith("scaled_dot_product_attention") for n in call.nodes)
        if fused:
            fields["module"] = "multihead"
        else:
            fields["kernel"] = "math"  # need_weights: the weights computed with matmuls
        return fields

    def _after(self, node, weight: str, inside: set) -> bool:
        """Whether a node of a call is computed from an operation that reads the parameter `weight` (MHA's out_proj's)."""
        seen, todo = set(), [node]
        while todo:
            step = todo.pop()
            if step in seen or step not in inside:
                continue
            seen.add(step)
            read = nodes(step.args) + nodes(list(step.kwargs.values()))
            if any(self.held.get(n.name) == weight for n in read):
                return True
            todo += read
        return False

    # --- an operation outside mapped modules -----------------------------------------------------------

    def _function(self, node) -> None:
        if is_shape(node) or node in self.absorbed:
            return
        if self._parameter_view(node):
            return
        if node not in self.dependent and any(self.alias.get(n.name) in self.given for n in tensors(node)):
            self.dependent.add(node)  # it reads a layer made without the input's values (positions, a position bias)
        if node not in self.dependent:
            self.alias[node.name] = CONSTANT + node.name
            return
        if self.unmasked(node):
            self.alias[node.name] = self.alias.get(node.args[1].name, node.args[1].name)
            return
        inputs = tuple(dict.fromkeys(self.alias.get(n.name, n.name) for n in tensors(node)))
        if node.target.__name__ == "getitem" and node.args[0].name in self.unmapped:
            self.unmapped.add(node.name)  # an element of what is listed already
            self.alias[node.name] = node.name
            return
        if _operation(node) in SEVERAL and node.meta.get("val") is not None and isinstance(node.meta["val"], (list, tuple)):
            self.several[node] = _operation(node)  # each element read is a layer (its getitem)
            self.alias[node.name] = node.name
            return
        try:
            made = self._function_layer(node, inputs)
        except Unmapped as error:
            self._problem(error, node)
            self.alias[node.name] = node.name
            self.unmapped.add(node.name)
            return
        if made is None:
            source = tensors(node)[0]
            self.alias[node.name] = self.alias.get(source.name, source.name)
            return
        kind, fields, *named = made
        operation = _operation(node)
        if operation == "getitem" and node.args[0] in self.several:  # an element of chunk's: a layer reading chunk's input
            source = node.args[0]
            operation = self.several[source]
            inputs = tuple(dict.fromkeys(self.alias.get(n.name, n.name) for n in tensors(source)))
        if named:  # a functional call of a module's own parameters: that module's layer (F.layer_norm in LayerNorm2d)
            base = named[0]
            inputs = tuple(n for n in inputs if not n.startswith(ATTRIBUTE))
        else:
            inputs = self._learned(node, inputs) if kind in MERGES else inputs
            context = self.context(node)
            if context in self.owners:  # a module whose own parameters make a layer of its path: beside it
                context = context.rpartition(".")[0]
            op = BASES.get(kind, operation.strip("_"))
            base = f"{context}.{op}" if context else op
        name = free(base, lambda n: n in self.given or n in self.reserved)
        self.given.add(name)
        self.layers.append(Layer(name, kind, fields, inputs))
        self.alias[node.name] = name

    def _function_layer(self, node, inputs: tuple[str, ...]):
        name = _operation(node)
        self._held_inputs(list(inputs), f"aten.{name}")
        if any(n.startswith(CONSTANT) for n in inputs):
            raise Unmapped(f"aten.{name} reads a tensor computed without the input's values (a mask, positions, random noise): "
                           "archcalc has no layer for it")
        held = [n for n in inputs if n.startswith(ATTRIBUTE)]
        if held and any(name in cls.torch_weighted for cls in LAYERS.values()):
            return self._weighted(node, name, held)
        if held and not (name in MERGE_FUNCTIONS and all(self._parameter_of(n) for n in held)):
            owner, _, tensor = held[0][len(ATTRIBUTE):].rpartition(".")
            raise Unmapped(f"aten.{name} reads a parameter or buffer of no layer ({tensor}): archcalc has no layer for it", owner)
        if name == "getitem":
            return self._getitem(node)
        if name in ATEN:
            return ATEN[name](node, self.sizes)
        if not functions.known(name):
            raise Unmapped(f"aten.{name}: archcalc has no layer for this operation")
        return functions.layer(node, name, f"aten.{name}", self.sizes)

    # --- a module's parameters read by functional calls ----------------------------------------------------

    def _parameter_of(self, alias: str) -> str | None:
        """The path of the parameter an alias stands for (itself, or a view of it), or None (a buffer, a constant)."""
        path = self.alias_parameter.get(alias, alias[len(ATTRIBUTE):] if alias.startswith(ATTRIBUTE) else None)
        return path if path in self.parameters else None

    def _parameter_view(self, node) -> bool:
        """A view of a parameter alone (timm's gamma.reshape(1, -1, 1, 1), a class token's expand(B, -1, -1)): no layer
        yet; the `parameter` layer is made where an add, a mul or a cat reads it (_learned)."""
        read = nodes(node.args) + nodes(list(node.kwargs.values()))
        tensors_read = [n for n in read if not is_shape(n)]
        if _operation(node) not in PARAMETER_VIEWS or len(tensors_read) != 1:
            return False
        source = self.alias.get(tensors_read[0].name, tensors_read[0].name)
        path = self._parameter_of(source)
        if path is None:
            return False
        alias = ATTRIBUTE + path + "\3" + node.name  # still the parameter's, for what reads it
        self.alias[node.name] = alias
        self.alias_parameter[alias] = path
        self.parameter_value[alias] = node.meta.get("val")
        return True

    def _learned(self, node, inputs: tuple[str, ...]) -> tuple[str, ...]:
        """An add, mul or cat that reads a parameter (a layer scale, a class token, positions): the parameter
        becomes a `parameter` layer (once, named by its path, bare: the state_dict loads strictly) read first."""
        others = [n for n in tensors(node) if not self.alias.get(n.name, n.name).startswith(ATTRIBUTE)]
        if not others:
            raise Unmapped(f"aten.{_operation(node)} of parameters only: archcalc has no layer for it")
        other = others[0]
        out = []
        for name in inputs:
            path = self._parameter_of(name) if name.startswith(ATTRIBUTE) else None
            if path is None:
                out.append(name)
                continue
            if path not in self.learned:
                fields = self._parameter_fields(path, self.parameter_value.get(name), other)
                layer = free(path, lambda n: n in self.given)
                self.given.add(layer)
                self.layers.append(Layer(layer, "parameter", fields, (self.alias.get(other.name, other.name),)))
                self.learned[path] = layer
            out.append(self.learned[path])
        return tuple(out)

    def _parameter_fields(self, path: str, value, other) -> dict:
        """`parameter`'s fields for a parameter as the merge reads it: expanded over the batch (a class token for a cat),
        or broadcast as it is, its shape as a sample's (leading ones added to the sample's rank)."""
        held = tuple(self.parameters[path].shape)
        value = value if value is not None else self.parameters[path]
        shape = list(value.shape)
        rank = other.meta["val"].dim()
        expanded = bool(shape) and str(shape[0]) == self.batch and self.batch is not None and value is not self.parameters[path]
        if expanded:
            sample = shape[1:]
        elif len(shape) == rank:
            if shape[0] != 1:
                raise Unmapped(f"{path} {held} broadcast over the batch axis with {shape[0]} rows: archcalc's parameter "
                               "is one tensor for every sample")
            sample = shape[1:]
        else:
            sample = [1] * (rank - 1 - len(shape)) + shape
        sample = [int(d) for d in sample]
        fields: dict = {"shape": sample}
        if held != (1, *sample):
            fields["torch_shape"] = list(held)
        fields["bare"] = True
        if not expanded:
            fields["expand"] = False
        return fields

    def _weighted(self, node, name: str, held: list[str]):
        """A functional call whose tensors after the first are a module's own parameters (F.layer_norm(x, shape,
        self.weight, self.bias)): that module's layer, named by its path."""
        owners = {alias[len(ATTRIBUTE):].rpartition(".")[0] for alias in held}
        if len(owners) != 1:
            raise Unmapped(f"aten.{name} reads the parameters of {len(owners)} modules: archcalc's layer has its own", sorted(owners)[0])
        first = tensors(node)[0]
        if self.alias.get(first.name, first.name).startswith(ATTRIBUTE):
            raise Unmapped(f"aten.{name} of a parameter: archcalc has no layer for it")
        made = functions.layer(node, name, f"aten.{name}", self.sizes)
        if made is None:
            raise Unmapped(f"aten.{name}: archcalc has no layer for it")
        return (*made, owners.pop())

    # --- several tensors: chunk, split, unbind ---------------------------------------------------------

    def _getitem(self, node):
        """Element i of what a call returns: chunk's, split's, unbind's (a layer each, by torch_item); max pooling's
        values (its indices refused)."""
        source, index = node.args[0], node.args[1]
        if source in self.several:
            name = self.several[source]
            args, kwargs = functions.arguments(source, self.sizes)
            why = None
            for cls in LAYERS.values():
                if name in cls.torch_several:
                    try:
                        return cls.kind, cls.torch_item(name, args, kwargs, index)
                    except Inexpressible as error:
                        why = error
            raise Unmapped(f"aten.{name}(...)[{index}] {why}" if why else f"aten.{name}: archcalc has no layer for its elements")
        return _getitem(node)

def _operation(node) -> str:
    """The ATen operation's name without its overload (aten.add_.Tensor: add_), or a Python function's."""
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


# Calls that view a parameter alone (a layer scale reshaped, a class token expanded): still that parameter
PARAMETER_VIEWS = {*VIEWS, "expand", "unsqueeze", "alias", "detach", "clone", "contiguous"}
MERGES = {kind for kind, cls in LAYERS.items() if cls.merges is True}  # add, mul, concat: a parameter may be one input
MERGE_FUNCTIONS = {name for kind in MERGES for name in LAYERS[kind].torch_functions}
SEVERAL = {name for cls in LAYERS.values() for name in cls.torch_several}  # chunk, split, unbind: a layer per element


SAME = {"to", "_to_copy", "alias", "detach", "contiguous"}  # calls that may give their input itself


def _same_tensor(node, source) -> bool:
    value, given = node.meta.get("val"), source.meta.get("val")
    return (value is not None and given is not None and value.dtype == given.dtype and tuple(value.shape) == tuple(given.shape)
            and (_operation(node) != "_to_copy"))


def _pad(node, sizes=None):
    """F.pad by nothing (Swin's patch merging pads H and W to even sizes: by 0 when they are) is its input."""
    pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    if isinstance(pad, (list, tuple)) and all(isinstance(p, int) and p == 0 for p in pad) and not value:
        return None
    raise Unmapped(f"aten.{_operation(node)} by {list(pad) if isinstance(pad, (list, tuple)) else pad}: archcalc pads only in "
                   "a conv or a pool (their padding)")


def _to(node, sizes=None):
    source = tensors(node)[0]
    if source.meta["val"].dtype != node.meta["val"].dtype:
        raise Unmapped(f"aten.to({node.meta['val'].dtype}): archcalc's layers compute in the model's one dtype")
    return None  # a dtype it has already


def _view(node, sizes=None):
    """A view or reshape: flatten where it is one (x.view(x.size(0), -1)), else a reshape to the output's own shape
    as torch.export computed it from x.shape (channel shuffle's view(B, groups, C // groups, H, W), ViT's patches), the
    batch axis kept."""
    value, source = node.meta["val"], tensors(node)[0].meta["val"]
    if tuple(value.shape) == tuple(source.shape):
        return None  # a view to the shape it has
    try:
        return functions.layer(node, _operation(node), f"aten.{_operation(node)}", sizes)
    except Unmapped:
        shape = sizes.shape(value) if sizes is not None else None
        if shape is None or value.dim() == 0 or str(value.shape[0]) != str(source.shape[0]):
            raise
        return "reshape", {"shape": list(shape)}


def _getitem(node):
    """Element [0] of max pooling's (values, indices): the values; any other element is refused."""
    source, index = node.args[0], node.args[1]
    if _operation(source) in WITH_INDICES and index == 0:
        return None
    raise Unmapped(f"aten.{_operation(source)}(...)[{index}]: archcalc has no layer for this element of its output")


WITH_INDICES = {f"max_pool{n}d_with_indices" for n in (1, 2, 3)} | {f"adaptive_max_pool{n}d" for n in (1, 2, 3)}
ATEN = {"to": _to, "_to_copy": _to, "pad": _pad, "constant_pad_nd": _pad, **dict.fromkeys(VIEWS, _view)}  # what only torch.export's graph has


def layers(module, input_shape: list) -> tuple[list[Layer], list[str]]:
    """The spec's layers of a module captured by torch.export, and the names of what forward returns."""
    program, x = capture(module, input_shape)
    return Recovered(program, module, input_shape, x).run()
