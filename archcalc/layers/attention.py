"""Multi-head self-attention over tokens [T, d], with grouped query heads (kv_heads) and a causal flag.

Four projections, as GPT-2 and torch.nn.MultiheadAttention have them: q, k and v in one
fused matrix `in_proj` (d → d + 2·kv_dim, GPT-2's c_attn, MHA's in_proj_weight) and
`out_proj` (d → d, GPT-2's c_proj). FLOPs count every product, 2 per multiply-accumulate,
QKᵀ and AV in full (a causal mask is not halved, as FlopCounterMode counts SDPA on CUDA).

What autograd keeps depends on the kernel (measured with saved_tensors_hooks, torch 2.13, CPU):
- "flash" (torch's scaled_dot_product_attention, fused): the in_proj output (q, k and v are views
  of it), the logsumexp of each query's scores (float32 whatever the dtype) and the attention
  output (which out_proj keeps too);
- "math" (attention written as matmuls, and SDPA's math kernel in the model's dtype): contiguous
  copies of q, kᵀ and v, the softmax's output [heads, T, T], with dropout its mask and the dropped
  scores, and the heads merged back into [T, d] for out_proj.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import choice, flag, real, size
from ..core.num import Dim, Shape, Value
from .base import Inexpressible, Kept, Layer, Tensor, register
from .dense import lora_kept
from .events import CastWeight, Drop, HandGradient, Hold, KeepInput, New, Program, When
from .tuning import Lora, adapt_input, adapt_output, frozen_program

KERNELS = ("flash", "math")


class Sizes(NamedTuple):
    """One sample's sizes in attention's timeline programs: T, d, kv_dim (the width of k and of v), in_proj's out
    features d + 2·kv_dim, and the elements of [T, d] (q, the output), [T, kv_dim] (k, v), in_proj's output
    [T, d + 2·kv_dim] and the scores [heads, T, T]."""

    t: Dim
    d: Dim
    kv: Dim
    inner: Dim
    td: Dim
    tk: Dim
    tq: Dim
    square: Dim


@register
@dataclass(frozen=True, kw_only=True)
class Attention(Layer):
    kind = "attention"
    # `archcalc import` reads nn.MultiheadAttention's fields from its call too (causal from its mask, kernel from need_weights)
    torch_modules = ("MultiheadAttention", "LlamaAttention", "MistralAttention", "Qwen2Attention")
    # transformers' attention modules hold their sizes in their config (their biases: torch_read)
    torch_attributes = (("config.num_attention_heads", "num_heads"), ("config.num_key_value_heads", "kv_heads"))
    num_heads: Dim = size()
    kv_heads: Dim | None = size(None)  # heads of k and v (grouped-query attention); default num_heads
    causal: bool = flag(False)
    dropout: Value = real(0, low=0, high=1)
    bias: bool = flag(True)
    kernel: str = choice(*KERNELS, default="flash")
    # the torch module it stands for, for the memory timeline's copies: "split" (q, k, v split from in_proj's
    # output: GPT-2, archcalc's own), "multihead" (torch.nn.MultiheadAttention, batch_first: torchvision's ViT),
    # "llama" (transformers' LlamaAttention: q_proj, k_proj, v_proj, o_proj, SDPA with enable_gqa)
    module: str = choice("split", "multihead", "llama", default="split")
    # q and k rotated by the cos and sin tables of a `rotary` layer, its second input (from = ["x", "rotary_emb"]):
    # Llama's rotate_half, after the projections
    rotary: bool = flag(False)
    # the output projection's bias where it differs from q's, k's and v's (`bias`): Qwen2's o_proj has none (module "llama")
    out_bias: bool | None = flag(None)
    # a bias [heads, T, T] added to the scores, read as its second input (from = ["x", "relative_attention_bias"]): T5's
    # relative position bias (a `relative_bias` layer)
    position_bias: bool = flag(False)
    # sliding-window attention (Mistral's sliding_window): each query sees the last `window` keys, itself included.
    # Generation's cache keeps that many (archcalc/memory/generation.py); shapes, FLOPs and the training step are
    # full causal attention's (FLOPs count masked products in full, as for causal)
    window: Dim | None = size(None)
    # transformers' use_cache = true (GPT2Config's default) in training: the module appends its keys and values to a
    # DynamicCache (torch.cat onto an empty tensor), so the kernel reads, and keeps, those two copies. module "split"
    use_cache: bool = flag(False)

    @property
    def merges(self) -> bool:
        return self.rotary or self.position_bias  # it reads the tokens and the rotary tables (or a position bias)

    @property
    def broadcasts(self) -> bool:
        return self.position_bias  # the bias [1, heads, T, T] is added to every sample's scores

    def output(self, x: Shape) -> Shape:
        if self.rotary and self.position_bias:
            raise SpecError("rotary and position_bias are two ways of giving positions: archcalc's attention takes one", None, "rotary")
        if self.rotary and not (isinstance(x[0], tuple) and len(x) == 2):
            raise SpecError("rotary = true reads the rotary tables too: from = [the tokens, a rotary layer]",
                            'for example from = ["input_layernorm", "rotary_emb"]', "from")
        if self.position_bias and not (isinstance(x[0], tuple) and len(x) == 2):
            raise SpecError("position_bias = true reads the bias too: from = [the tokens, a relative_bias layer]",
                            'for example from = ["layer_norm", "relative_attention_bias"]', "from")
        if self.position_bias:
            t, _ = self.tokens(x[0])
            bias = x[1]
            if len(bias) != 3 or any(num.is_concrete(a - b) and a != b for a, b in zip(bias, (self.num_heads, t, t))):
                raise SpecError(f"the position bias {fmt.shape(bias)} does not fit {fmt.group(self.num_heads)} heads over "
                                f"T = {fmt.group(t)}: it must be [num_heads, T, T]", None, "from")
        if self.window is not None and not self.causal:
            raise SpecError("a sliding window is causal: each query sees the `window` keys up to itself", "add causal = true", "window")
        self.tokens(x)
        return self.hidden(x)

    def weights(self, x: Shape) -> Dim:
        _, d = self.tokens(x)
        return num.normal(d * (2 * d + 2 * self.kv_dim(x)) + num.add(self.adapter_tensors(x)))

    def biases(self, x: Shape) -> Dim:
        _, d = self.tokens(x)
        return num.normal((d + 2 * self.kv_dim(x) if self.bias else 0) + (d if self.o_bias else 0))

    def macs(self, x: Shape) -> Dim:
        t, _ = self.tokens(x)
        return num.normal(sum(self.projections(x)) + 2 * self.scores(x) + t * num.add(self.adapter_tensors(x)))

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        grad = self._tokens_grad(grad)
        # in_proj: its weight's gradient, and its input's when that needs one; out_proj: both;
        # QKᵀ and AV: the gradients of both factors of each (q and k, the scores and v). Frozen: no weight's gradient,
        # and nothing past out_proj's input where nothing before it needs a gradient; LoRA: its adapters' (lora.py)
        inner, outer = self.projections(x)
        if not self.frozen:
            return num.normal(inner * (2 if grad else 1) + 2 * outer + 4 * self.scores(x))
        t, _ = self.tokens(x)
        adapted, inside = self._adapted(), self._inside(grad)
        lora = 0
        for name, (fan_in, fan_out) in self._fans(x).items():
            if name in adapted:  # lora_A's input's gradient where its input needs one
                a, b = self.adapter.tensors(fan_in, fan_out)
                lora += t * (2 * b + a * (2 if (inside if name == self._outer else grad) else 1))
        return num.normal((inner if grad else 0) + (outer + 4 * self.scores(x) if inside else 0) + lora)

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        kept = list(self._keeps(x, y, grad))
        if self.tuning is None:
            return tuple(kept)
        grad = self._tokens_grad(grad)
        # frozen: in_proj's input (the first) is kept for its weight's gradient only, so is out_proj's input where the
        # kernel does not keep it (the heads merged: "math", the last), unless LoRA's lora_A keeps it
        adapted, inside = self._adapted(), self._inside(grad)
        t, d = self.tokens(x)
        if not inside:  # no node inside: only out_proj's adapter keeps its input (with dropout or a cast, a copy of it)
            own = adapted and self.adapter.dropout == 0 and self.adapter.dtype != "float32"
            kept = [Kept(Tensor.own, num.normal(t * d), what="attention output (lora_A's)")] if own else []
        else:
            kept = kept[1:-1] if self.kernel == "math" and self._outer not in adapted else kept[1:]
        if self.rotary and not grad and not {"q_proj", "k_proj"} & set(adapted):  # no rotation's node: no tables kept
            kept = [k for k in kept if k.arg != 1]
        for name in adapted:
            if name != self._outer:
                kept += lora_kept(self.adapter, num.mul(self.hidden(x)), t, True, grad)
        if self._outer in adapted:
            kept += lora_kept(self.adapter, num.normal(t * d), t, False, inside)
        return tuple(kept)

    def _keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        tables = [Kept("input", num.mul(x[1]), per_sample=False, arg=1, what="cos and sin (the rotary tables, one for the batch)")] \
            if self.rotary else []
        x = self.hidden(x)
        t, d = self.tokens(x)
        heads = self.num_heads
        kept = [Kept("input", num.mul(x), what="input (the projections')"), *tables]
        if self.kernel == "flash":
            return (
                *kept,
                Kept("own", num.normal(t * (d + 2 * self.kv_dim(x))),
                     what="q, k, v (rotated)" if self.rotary else "q, k, v (the projections' output)"),
                *[Kept("own", self.kv_dim(x) * t, what=f"{z} (the cache's copy)") for z in ("k", "v") if self.use_cache],
                Kept("own", num.normal(heads * t), "float32", what="logsumexp per head and query (float32)"),
                Kept("own", num.mul(x), what="attention output (out_proj's input)"),
            )
        square = num.normal(heads * t * t)
        kept += [Kept("own", num.mul(x), what="q (a contiguous copy)"), Kept("own", num.mul(x), what="kᵀ (a contiguous copy)"),
                 Kept("own", square, what="softmax output")]
        if self.dropout != 0:
            kept += [Kept("own", square, "mask", what="dropout mask"), Kept("own", square, what="dropped scores")]
        return (*kept, Kept("own", num.mul(x), what="v (a contiguous copy)"),
                Kept("own", num.mul(x), what="heads merged (out_proj's input)"))

    @staticmethod
    def _tokens_grad(grad) -> bool:
        """Whether the tokens need a gradient: `grad`, or a merging row's first flag (the rotary tables need none)."""
        return bool(grad[0]) if isinstance(grad, tuple) else bool(grad)

    @property
    def _outer(self) -> str:
        """The output projection's torch name."""
        return "o_proj" if self.module == "llama" else "out_proj"

    def _adapted(self) -> tuple[str, ...]:
        """The projections LoRA adapts (torch's names)."""
        return self.adapter.projections if self.adapter is not None else ()

    def _inside(self, grad: bool) -> bool:
        """Whether autograd records the kernel (q, k or v needs a gradient): its input needs one, its projections
        train, or LoRA adapts one of those that read the input."""
        return not self.frozen or grad or any(name != self._outer for name in self._adapted())

    def hidden(self, x) -> Shape:
        """The tokens' shape: the input itself, or the first input where it also reads the rotary tables (a position bias)."""
        return x[0] if self.merges and isinstance(x[0], tuple) else x

    def tokens(self, x: Shape) -> tuple[Dim, Dim]:
        """T and d of the input [T, d] (and the rotary tables', checked)."""
        tables = x[1] if self.rotary and isinstance(x[0], tuple) and len(x) > 1 else None
        x = self.hidden(x)
        if len(x) != 2:
            raise SpecError(f"attention needs tokens [T, d], got {fmt.shape(x)}",
                            "an image's patches become tokens with a conv, then flatten and permute (see specs/vit_b_16.toml)")
        t, d = x
        kv = self.num_heads if self.kv_heads is None else self.kv_heads
        if self.module == "multihead" and (self.causal or kv != self.num_heads or self.kernel == "math" or self.rotary):
            raise SpecError("module = \"multihead\" (torch.nn.MultiheadAttention called with need_weights=False) is "
                            "modelled without causal, kv_heads, rotary and kernel = \"math\"",
                            "leave module out (\"split\") for those", "module")
        if self.use_cache and (self.module != "split" or self.kernel != "flash" or self.position_bias):
            raise SpecError("use_cache = true is modelled for GPT-2's attention (module \"split\", the fused kernel, no "
                            "position_bias)", "leave module, kernel and position_bias out", "use_cache")
        if self.rotary and self.module != "llama":
            raise SpecError("rotary = true is modelled as Llama writes it (module = \"llama\")", 'add module = "llama"', "rotary")
        if self.out_bias is not None and self.module != "llama":
            raise SpecError("out_bias is modelled for module = \"llama\" (transformers' q_proj, k_proj, v_proj, o_proj)",
                            'add module = "llama", or leave out_bias out', "out_bias")
        if self.module == "llama" and (self.kernel == "math" or self.dropout != 0):
            raise SpecError("module = \"llama\" is transformers' sdpa attention (its default): kernel = \"math\" and "
                            "dropout are not modelled for it", "leave kernel and dropout out", "module")
        if tables is not None and (len(tables) != 3 or tables[0] != 2 or any(
                num.is_concrete(a - b) and a != b for a, b in ((tables[1], t), (tables[2] * self.num_heads, d)))):
            raise SpecError(f"the rotary tables {fmt.shape(tables)} do not fit tokens {fmt.shape(x)} with {fmt.group(self.num_heads)} "
                            "heads: they must be [2, T, d/num_heads]", "give the rotary layer head_dim = d/num_heads", "from")
        for whole, part, field, of in ((d, self.num_heads, "num_heads", "d"), (self.num_heads, kv, "kv_heads", "num_heads")):
            if num.is_concrete(whole) and num.is_concrete(part) and whole % part:
                raise SpecError(
                    f"{field} = {fmt.group(part)} does not divide {of} = {fmt.group(whole)}",
                    "each head takes d/num_heads features, and each k/v head serves num_heads/kv_heads query heads",
                    field,
                )
        return t, d

    @property
    def o_bias(self) -> bool:
        """Whether the output projection has a bias (`out_bias`, else as the others)."""
        return self.bias if self.out_bias is None else self.out_bias

    def kv_dim(self, x: Shape) -> Dim:
        """The width of k (and of v): kv_heads·head_dim."""
        _, d = self.tokens(x)
        return d if self.kv_heads is None else num.normal(num.div(d, self.num_heads) * self.kv_heads)

    def projections(self, x: Shape) -> tuple[Dim, Dim]:
        """MACs of in_proj and of out_proj, per sample."""
        t, d = self.tokens(x)
        return num.normal(t * d * (d + 2 * self.kv_dim(x))), num.normal(t * d * d)

    def scores(self, x: Shape) -> Dim:
        """MACs of QKᵀ (and as many of AV): heads·T·T·head_dim = T²·d, whatever kv_heads."""
        t, d = self.tokens(x)
        return num.normal(t * t * d)

    def summary(self, x: Shape) -> str:
        parts = [f"{fmt.group(self.num_heads)} heads"]
        if self.kv_heads is not None and self.kv_heads != self.num_heads:
            parts.append(f"{fmt.group(self.kv_heads)} kv")
        parts += [word for word, on in (("causal", self.causal), ("no bias", not self.bias), ("math", self.kernel == "math"),
                                        ("rotary", self.rotary), ("Llama's", self.module == "llama")) if on]
        if self.window is not None:
            parts.append(f"window {fmt.group(self.window)}")
        if self.dropout != 0:
            parts.append(f"p={fmt.group(self.dropout)}")
        return ", ".join(parts)

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        x = self.hidden(x)
        t, d = self.tokens(x)
        head = num.div(d, self.num_heads)
        kv = self.kv_dim(x)
        head_text = f"head_dim = d/num_heads = {fmt.term(d)}/{fmt.term(self.num_heads)} = {fmt.group(head)}"
        kv_text = "" if self.kv_heads is None else f"; k and v: kv_heads·head_dim = {fmt.term(self.kv_heads)}·{fmt.term(head)} = {fmt.group(kv)} wide"
        inner, outer = self.projections(x)
        lines = [
            ("output", f"{head_text}{kv_text}; the heads are concatenated back: {fmt.shape(x)}"),
            ("weights", f"weights = d·(d + 2·{'kv_dim' if self.kv_heads is not None else 'd'}) + d·d (q, k, v, out; the heads split d, they add none)"
                        f" = {fmt.term(d)}·{fmt.term(num.normal(d + 2 * kv))} + {fmt.term(d)}·{fmt.term(d)} = {fmt.group(self.weights(x))}"),
            ("biases", f"biases = d + 2·{'kv_dim' if self.kv_heads is not None else 'd'} + d = {fmt.group(self.biases(x))}"
             if self.bias else "biases = 0 (bias = false)"),
            ("macs", f"MACs = projections {fmt.group(inner)} + {fmt.group(outer)}, QKᵀ and AV T²·d each = {fmt.term(t)}²·{fmt.term(d)}"
                     f"{' (causal: counted in full)' if self.causal else ''} → {fmt.group(self.macs(x))}"),
        ]
        return lines

    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        _, d = self.tokens(x)
        bias = self.biases(x)
        if quantity in ("params", "weights"):
            extra = bias if quantity == "params" else 0
            out = [(num.normal(self.num_heads * self.weights(x) + extra * self.num_heads),
                    f"every head counted with the whole projections: the heads split d = {fmt.group(d)} into "
                    f"{fmt.group(self.num_heads)} parts of {fmt.group(num.div(d, self.num_heads))}, they add no parameters"),
                   (num.normal(self.weights(x) - d * d + (extra - d if extra else 0)),
                    "out_proj forgotten: after the heads, a d×d projection (GPT-2's c_proj, MHA's out_proj) mixes them")]
            if self.kv_heads not in (None, self.num_heads):
                out.append((num.normal(4 * d * d + (4 * d if extra else 0)),
                            f"k and v counted d wide: with kv_heads = {fmt.group(self.kv_heads)} they are "
                            f"{fmt.group(self.kv_dim(x))} wide (grouped-query attention)"))
            return tuple(out)
        if quantity in ("macs", "flops"):
            factor = 2 if quantity == "flops" else 1
            inner, outer = self.projections(x)
            out = [(num.normal(factor * (inner + outer)), "only the projections: QKᵀ and AV are products too, T²·d MACs each")]
            if self.causal:
                out.append((num.normal(factor * (inner + outer + self.scores(x))),
                            "causal halved: the convention counts QKᵀ and AV in full, masked or not (as torch counts SDPA)"))
            return tuple(out)
        return ()

    def to_torch(self, x: Shape, nn):
        _, d = self.tokens(x)
        kv = self.num_heads if self.kv_heads is None else self.kv_heads
        if self.module == "multihead":
            return nn.MultiheadSelfAttention(int(d), int(self.num_heads), dropout=float(Fraction(self.dropout)), bias=self.bias)
        if self.module == "llama":
            module = nn.LlamaSelfAttention(int(d), int(self.num_heads), int(kv), causal=self.causal, bias=self.bias,
                                           out_bias=self.o_bias)
        else:
            module = nn.SelfAttention(int(d), int(self.num_heads), int(kv), causal=self.causal,
                                      dropout=float(Fraction(self.dropout)), bias=self.bias, math=self.kernel == "math",
                                      cache=self.use_cache)
        a = self.adapter
        for name in a.projections if a is not None else ():  # peft's LoRA layer in place of the projection
            setattr(module, name, nn.LoraLinear(getattr(module, name), int(a.rank), float(a.alpha), float(a.dropout)))
        return module

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        if self.kernel == "math":
            return {}
        if self.dropout != 0:  # SDPA's math fallback ran: FlopCounterMode counts its matmuls, as archcalc does
            return {"saved_bytes": (None, "no fused attention kernel takes dropout on the CPU: torch ran the math one")}
        why = "it counts scaled_dot_product_attention as 0 on the CPU, QKᵀ and AV missed"
        scores = self.scores(x)
        inside = self._inside(grad)
        missed = 2 * scores + (4 * scores if inside else 0)  # QKᵀ and AV, and their backward where it runs
        return {"flops": (num.normal(2 * (self.macs(x) - 2 * scores)), why),
                "training_flops": (num.normal(2 * (self.macs(x) + self.backward_macs(x, grad) - missed)), why)}

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        """nn.MultiheadAttention is module = "multihead"; transformers' LlamaAttention (Mistral's, Qwen2's), causal,
        module = "llama" with rotary (its num_heads, kv_heads and bias are its config's: num_attention_heads,
        num_key_value_heads, attention_bias)."""
        if torch_name == "MultiheadAttention":
            return {"module": "multihead"}
        return {"module": "llama", "rotary": True, "causal": True}

    @classmethod
    def torch_read(cls, module) -> dict:
        """transformers' LlamaAttention (Mistral's, Qwen2's): its biases, q_proj's and o_proj's (Qwen2: q, k, v only)."""
        if not hasattr(module, "q_proj") or not hasattr(module, "o_proj"):
            return {}
        if getattr(getattr(module, "config", None), "sliding_window", None):
            raise Inexpressible(f"with sliding_window = {module.config.sliding_window}: archcalc's causal attention sees every "
                                "earlier token")
        bias, out = module.q_proj.bias is not None, module.o_proj.bias is not None
        if {module.k_proj.bias is not None, module.v_proj.bias is not None} != {bias}:
            raise Inexpressible("with k_proj's or v_proj's bias unlike q_proj's: archcalc's attention has one flag for them")
        return ({} if bias else {"bias": False}) | ({} if out == bias else {"out_bias": out})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    autocast_op_names = ("linear", "scaled_dot_product_attention")
    autocast_kept = (0,)  # the projections' weights (their linear nodes keep them; the input needs a gradient in a transformer)
    tensor_parallel = "heads"  # Megatron's: the heads split, in_proj column-parallel, out_proj row-parallel

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """The module's ops (`_program`), fine-tuned (archcalc/layers/tuning.py): frozen, its projections keep nothing
        for their weights' gradients and make none; LoRA beside in_proj (GPT-2's c_attn) and out_proj (c_proj)."""
        program = self._cached(self._program(x, grad, device, inplace, amp), x, device, amp)
        if self.tuning is None or program is None:
            return program
        if self.module == "llama":
            return self._llama_tuned(x, grad, device, inplace)
        adapted = self.adapter.projections if self.adapter is not None else ()
        t, d = self.tokens(x)
        inner = num.normal(d + 2 * self.kv_dim(x))
        cuda = device == "cuda"
        if not grad and "in_proj" not in adapted:  # nothing before it needs a gradient: no node inside
            return self._inert_program(x, device, Lora(self.adapter, t, d, d, "out_proj.lora.", cuda) if adapted else None)
        program = frozen_program(program, {"x": None, "m": "out", "xc": "qkv"})
        if "out_proj" in adapted:
            source = "m" if any(isinstance(e, New) and e.name == "m" for e in program.forward) else "o"
            lora = Lora(self.adapter, t, d, d, "out_proj.lora.", cuda)
            program = adapt_output(program, lora, source, "out", "g", "go", d, inplace)
        if "in_proj" in adapted:
            program = adapt_input(program, Lora(self.adapter, t, d, inner, "in_proj.lora.", cuda), "qkv", "gqkv", grad)
        return program

    def _cached(self, program: Program | None, x: Shape, device: str, amp: tuple[str, str] | None) -> Program | None:
        """use_cache: k and v copied into the cache (torch.cat onto an empty tensor) once q, k and v are made; the
        kernel keeps the copies (and q, a view of the projections' output), freed with what it keeps."""
        if not self.use_cache or program is None:
            return program
        if device == "cpu" and self.dropout != 0:
            raise SpecError("use_cache = true with dropout (SDPA's math fallback on the CPU) is not modelled",
                            "dropout = 0, or use_cache = false", "use_cache")
        made = next(e for e in program.forward if isinstance(e, New) and e.name == "qkv")
        copies = [New(name, num.normal(self.tokens(x)[0] * self.kv_dim(x)),
                      made.storage) for name in ("k.cache", "v.cache")]
        forward = list(program.forward)
        at = forward.index(made) + 1
        forward[at:at] = copies
        backward = [Drop(*e.names, "k.cache", "v.cache") if isinstance(e, Drop) and "lse" in e.names else e for e in program.backward]
        return Program(tuple(forward), tuple(backward))

    def _inert_program(self, x: Shape, device: str, lora: Lora | None) -> Program | None:
        """Frozen, its input needing no gradient (nothing before it trains): no node records the projections or the
        kernel, so each tensor lives while torch's code holds it; q, k and v until the module returns. LoRA beside
        out_proj keeps out_proj's input (the kernel's output, or the heads merged). On the CPU only (torch's fused
        kernel, "math", SDPA's math fallback); else None (the generic rule: its output alone)."""
        if self.module != "split" or device != "cpu":
            return None
        s = self._sizes(x)
        if self.kernel == "flash" and self.dropout == 0:  # the fused kernel: its logsumexp freed at once
            fwd, source = [New("qkv", s.tq), New("o", s.td), self._lse(s.t, device), Drop("lse")], "o"
        else:
            fwd, source = [New("qkv", s.tq), *self._math_unrecorded(s)], "m"
        if lora is None:
            return Program((*fwd, New("out", s.td), Drop("qkv", source)), ())
        fwd += [New("out.base", s.td), *lora.forward(source, "out.base", "out", False), Drop("qkv", source)]
        events, _, _ = lora.backward("g", False)  # its input needs no gradient: g is dropped with MulBackward's
        return Program(tuple(fwd), tuple(events))

    def _math_unrecorded(self, s: Sizes) -> list:
        """`_math_forward` up to the heads merged (m), no node recording it (measured): QKᵀ's operands freed as it
        returns, the probabilities once dropped out, the dropped ones and v's copy once multiplied."""
        grouped_fallback = self.kernel == "flash" and s.kv != s.d  # k repeated (kc), then scaled (ks)
        after = {"s" if self.kernel == "flash" else "s0": ("qc", "ks" if grouped_fallback else "kc"),
                 "ad": ("mask", "a"), "o": ("vc", "ad" if self.dropout != 0 else "a")}
        fwd: list = []
        for e in self._math_forward(s)[:-2]:  # out_proj's output and qkv's drop: the caller's
            fwd.append(e)
            if isinstance(e, New) and e.name in after:
                fwd.append(Drop(*after[e.name]))
        return fwd

    def _program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                 amp: tuple[str, str] | None = None) -> Program | None:
        """Every tensor the module allocates and frees, op by op (archcalc/memory/timeline/ runs it): in_proj, the
        heads as views of its output, the kernel, the heads merged, out_proj; then backward in reverse.
        Measured with a TorchDispatchMode (tests/oracle/timeline_probe.py, torch 2.13, CPU): "flash" is torch's fused
        CPU kernel; with dropout no fused CPU kernel runs, SDPA's math fallback does (q and k scaled first,
        the causal mask a [T, T] tensor made per call); "math" is attention written as matmuls."""
        if self.module == "llama":  # on the CPU, in the model's dtype; else the generic rule
            return self._llama_program(x, grad, inplace) if amp is None and device == "cpu" else None
        if amp is not None:
            fused = self.kernel == "flash" and (device == "cuda" or self.dropout == 0)  # no math fallback
            return self._autocast_program(x, grad, device, amp, inplace) if fused else None
        if self.module == "multihead":
            return self._multihead_program(x, grad, device, inplace)
        s = self._sizes(x)
        fwd: list = [KeepInput(), New("qkv", s.tq)]
        bwd = self._out_proj_backward(s)
        if self.kernel == "flash" and (device == "cuda" or self.dropout == 0):  # fused; on CUDA the memory-efficient
            fwd += [New("o", s.td), self._lse(s.t, device), New("out", s.td)]  # kernel (dropout inside it)
            bwd += [New("gq", s.td), New("gk", s.tk), New("gv", s.tk), *(self._delta(s.t, s.d) if device == "cuda" else []),
                    Drop("go", "qkv", "lse", "o"), New("gqkv", s.tq), Drop("gq", "gk", "gv")]
        else:
            fwd += self._math_forward(s)
            bwd += self._math_backward(s)
        if grad:
            bwd.append(New("gx", s.td))
        bwd.append(New("grad.in_proj.weight", num.normal(s.d * (s.d + 2 * s.kv)), per_sample=False))
        if self.bias:
            bwd.append(New("grad.in_proj.bias", s.inner, per_sample=False))
        bwd.append(Drop("gqkv", "x"))
        return Program(tuple(fwd), tuple(bwd))

    def _sizes(self, x: Shape) -> Sizes:
        """The sizes the timeline programs read (tokens checked)."""
        t, d = self.tokens(x)
        kv = self.kv_dim(x)
        return Sizes(t, d, kv, num.normal(d + 2 * kv), num.normal(t * d), num.normal(t * kv), num.normal(t * (d + 2 * kv)),
                     num.normal(self.num_heads * t * t))

    def _out_proj_backward(self, s: Sizes) -> list:
        """out_proj's backward in the model's dtype: its input's gradient, its weight's and bias's; the gradient it was
        handed freed."""
        bwd: list = [New("go", s.td), New("grad.out_proj.weight", s.d * s.d, per_sample=False)]
        if self.bias:
            bwd.append(New("grad.out_proj.bias", s.d, per_sample=False))
        return [*bwd, Drop("g")]

    def _math_scores(self, s: Sizes, fixed: Dim) -> list:
        """"math" and SDPA's math fallback: q, k (and v) copied, QKᵀ; the fallback scales q and k first and makes its
        causal mask, a [T, T] tensor, per call."""
        fallback, td, square = self.kernel == "flash", s.td, s.square
        mask = [New("ones", fixed, "bool", per_sample=False), New("tril", fixed, "bool", per_sample=False), Drop("ones"),
                New("inf", 1, per_sample=False), New("zero", 1, per_sample=False), New("where", fixed, per_sample=False),
                Drop("zero", "inf", "tril")] if self.causal and fallback else []
        if fallback and s.kv != s.d:
            return [New("qs", td), *mask, New("kc", td), New("vc", td), New("ks", td), New("qc", td), New("s", square)]
        if fallback:
            return [New("qs", td), *mask, New("ks", td), New("qc", td), New("kc", td), New("s", square), Drop("ks")]
        return [New("qc", td), New("kc", td), New("s0", square), New("s", square), Drop("s0")]

    def _math_forward(self, s: Sizes) -> list:
        """The kernel's tensors past in_proj, "math" or SDPA's math fallback: the copies and QKᵀ (`_math_scores`), the
        causal mask, softmax, dropout, AV, the heads merged, out_proj."""
        fallback, grouped, td, square = self.kernel == "flash", s.kv != s.d, s.td, s.square
        fixed = num.normal(s.t * s.t)
        fwd = self._math_scores(s, fixed)
        if self.causal:
            if not fallback:
                fwd += [New("full", fixed, per_sample=False), New("where", fixed, per_sample=False), Drop("full")]
            fwd += [New("s2", square), *([] if fallback else [Drop("where")]), Drop("s"), New("a", square)]
            fwd += [Drop("s2")] if fallback else []
        else:
            fwd += [New("a", square)] + ([Drop("s")] if fallback else [])
        if self.dropout != 0:
            fwd += [New("mask", square, "mask"), New("ad", square)]
        if not (fallback and grouped):
            fwd.append(New("vc", td))
        fwd.append(New("o", td))
        if fallback:
            fwd += [Drop("kc")] if grouped else []
            fwd += [Drop("qs")] + ([Drop("where")] if self.causal else [])
        else:
            fwd.append(Drop("s2" if self.causal else "s"))
        return [*fwd, New("m", td), Drop("o"), New("out", td), Drop("qkv")]

    def _math_backward(self, s: Sizes) -> list:
        """Backward of `_math_forward` past out_proj: the heads' merge, AV, dropout, softmax, (the scale), QKᵀ, the
        heads' views (in_proj's output gradient, gqkv)."""
        fallback, grouped, td, tk, tq, square = self.kernel == "flash", s.kv != s.d, s.td, s.tk, s.tq, s.square
        bwd: list = [Drop("m"), New("go2", td), Drop("go"), New("gv", td), New("ga", square), Drop("go2", "vc")]
        if self.dropout != 0:
            bwd += [Drop("ad"), New("ga2", square), Drop("ga", "mask")]
        ga = "ga2" if self.dropout != 0 else "ga"
        if fallback:
            bwd += [New("gs", square), Drop(ga, "a"), New("gk", td), New("gq", td), Drop("gs", "ks" if grouped else "kc", "qc"),
                    New("gk2", td), Drop("gk")]
            if grouped:
                return [*bwd, New("gv2", tk), Drop("gv"), New("gk3", tk), Drop("gk2"), New("gq2", td), Drop("gq"),
                        New("gq3", td), Drop("gq2"), New("gqkv", tq), Drop("gq3", "gk3", "gv2")]
            return [*bwd, New("gq2", td), Drop("gq"), New("gv2", td), Drop("gv"), New("gq3", td), Drop("gq2"),
                    New("gqkv", tq), Drop("gq3", "gk2", "gv2")]
        bwd += [New("gs", square), Drop(ga, "a"), New("gs2", square), Drop("gs"), New("gk", td), New("gq", td),
                Drop("gs2", "kc", "qc")]
        if grouped:
            return [*bwd, New("gv2", tk), Drop("gv"), New("gk2", tk), Drop("gk"), New("gq2", td), Drop("gq"), New("gqkv", tq),
                    Drop("gq2", "gk2", "gv2")]
        return [*bwd, New("gv2", td), Drop("gv"), New("gq2", td), Drop("gq"), New("gqkv", tq), Drop("gq2", "gk", "gv2")]

    def _autocast_program(self, x: Shape, grad: bool, device: str, amp: tuple[str, str], inplace: bool) -> Program:
        """Under autocast (16-bit q, k, v), measured on the CPU with a TorchDispatchMode, on CUDA read from its
        source: each projection (nn.Linear) casts its bias, its weight and its input (where it is float32), in that
        order (the weights' copies cached until autocast exits, the weight's kept for the input's gradient); in
        backward its 16-bit gradients are cast back by the copies' ToCopyBackward in the reverse order.
        The fused kernel keeps its output and a float32 logsumexp [B, H, T]. On CUDA it is SDPA's flash kernel
        (FlashAttention-2, flash_api.cpp mha_fwd / mha_bwd): two small rng-state tensors kept beside; its backward
        makes dq, dk, dv, a float32 softmax_d [B, H, T rounded up to 128] and a float32 dq accumulator [B, T
        rounded to 128, H, head_dim rounded to 32], both freed as it returns. nn.MultiheadAttention (module =
        "multihead") adds its copies as _multihead_program does; but on CUDA the flash kernel writes its output
        and the heads' gradients in q's layout ([T, B, H, D]: empty_like), so out_proj reads the output without a
        copy, the heads' gradients need none, and its backward copies the output and its gradient (.contiguous())."""
        low, dtype = amp
        s = self._sizes(x)
        d, cast = s.d, dtype != low
        fwd = self._autocast_in_proj(s, grad, amp, inplace)
        kernel, rng = self._flash_forward(s, low, device)
        fwd += kernel
        fwd += [CastWeight("b_out", d, low), Drop("b_out")] if self.bias else []
        fwd += [CastWeight("w_out", num.normal(d * d), low), New("out", s.td, low)]
        # backward: out_proj, then its copies' ToCopyBackward
        bwd: list = [New("go", s.td, low), New("gw_out", num.normal(d * d), low, per_sample=False)]
        bwd += [New("gb_out", d, low, per_sample=False)] if self.bias else []
        bwd.append(Drop("g", "w_out"))
        bwd += [New("grad.out_proj.weight", num.normal(d * d), "param", per_sample=False), Drop("gw_out")]
        bwd += [New("grad.out_proj.bias", d, "param", per_sample=False), Drop("gb_out")] if self.bias else []
        bwd += self._flash_backward(s, low, device, rng)
        bwd += self._autocast_in_proj_backward(s, grad, low, cast, device, inplace)
        bwd.append(Drop("gqkv", "xc" if cast or self.module == "multihead" else "x", *(["w_in"] if grad else [])))
        bwd += [New("gx", s.td, dtype), Drop("gxl")] if grad and cast else []  # the input copy's ToCopyBackward
        bwd += [New("grad.in_proj.weight", num.normal(d * s.inner), "param", per_sample=False), Drop("gw_in")]
        bwd += [New("grad.in_proj.bias", s.inner, "param", per_sample=False), Drop("gb_in")] if self.bias else []
        return Program(tuple(fwd), tuple(bwd))

    def _autocast_in_proj(self, s: Sizes, grad: bool, amp: tuple[str, str], inplace: bool) -> list:
        """in_proj under autocast: its bias and weight cast (the weight's copy kept for x's gradient), x cast where
        it is float32, the 16-bit q, k, v."""
        low, dtype = amp
        cast, td, tq = dtype != low, s.td, s.tq
        fwd: list = [CastWeight("b_in", s.inner, low), Drop("b_in")] if self.bias else []
        fwd += [CastWeight("w_in", num.normal(s.d * s.inner), low)] + ([] if grad else [Drop("w_in")])  # kept for x's gradient
        if self.module != "multihead":
            return [*fwd, *([New("xc", td, low)] if cast else [KeepInput()]), New("qkv", tq, low)]
        # x transposed to [T, B, d]: its 16-bit copy keeps that layout, in_proj's matmul copies it
        fwd += [New("xa", td, low)] if cast else []
        fwd += [New("xc", td, low), New("mm", tq, low)]
        if self.bias and not inplace:  # its bias added out of place under a dispatch mode
            fwd += [New("add", tq, low), Drop("mm")]
        fwd += [Drop("xa")] if cast else []
        return [*fwd, New("qkv", tq, low), Drop("add" if self.bias and not inplace else "mm")]

    def _flash_forward(self, s: Sizes, low: str, device: str) -> tuple[list, tuple[str, ...]]:
        """The fused kernel under autocast: its output and float32 logsumexp; on CUDA its rng state (the tensors'
        names returned, freed by its backward)."""
        fwd: list = [New("o", s.td, low), New("lse", num.normal(self.num_heads * s.t), "float32")]
        if device != "cuda":
            return fwd, ()
        fwd += [New("rng", 2, "int64", per_sample=False), New("unused", 1, "int64", per_sample=False)]
        if self.dropout == 0:
            return fwd, ("rng", "unused")
        # a second rng state replaces the first
        return [*fwd, New("rng2", 2, "int64", per_sample=False), Drop("rng")], ("rng2", "unused")

    def _flash_backward(self, s: Sizes, low: str, device: str, rng: tuple[str, ...]) -> list:
        """The fused kernel's backward under autocast: q's, k's and v's gradients; on CUDA FlashAttention-2's float32
        softmax_d and dq accumulator, padded, freed as it returns; its forward's tensors freed."""
        cuda, multihead, t, heads = device == "cuda", self.module == "multihead", s.t, self.num_heads
        head = num.div(s.d, heads)
        # multihead on CUDA: the kernel's output has q's layout ([T, B, H, D]: out_proj reads it without a copy), so
        # _flash_attention_backward copies the gradient and the output to [B, T, H, D] (.contiguous()) first
        bwd: list = [New("goc", s.td, low), New("oc", s.td, low)] if multihead and cuda else []
        bwd += [New("gq", s.td, low), New("gk", s.tk, low), New("gv", s.tk, low)]
        if cuda:
            padded = num.is_concrete(t) and num.is_concrete(head)
            rows = num.normal(-(-t // 128) * 128) if padded else t
            width = num.normal(-(-head // 32) * 32) if padded else head
            bwd += [New("softmax_d", num.normal(heads * rows), "float32"),
                    New("dq_accum", num.normal(rows * heads * width), "float32"),
                    Drop("dq_accum", "softmax_d", *(["goc", "oc"] if multihead else []))]
        return [*bwd, Drop("go", "qkv", "lse", "o", *rng)]

    def _autocast_in_proj_backward(self, s: Sizes, grad: bool, low: str, cast: bool, device: str, inplace: bool) -> list:
        """in_proj's output gradient from the heads' (multihead: through its copies) and in_proj's 16-bit gradients."""
        td, tq, inner = s.td, s.tq, s.inner
        gx = [New("gxl" if cast else "gx", td, low)] if grad else []
        if self.module != "multihead":
            return [New("gqkv", tq, low), Drop("gq", "gk", "gv"), *gx, New("gw_in", num.normal(s.d * inner), low, per_sample=False),
                    *([New("gb_in", inner, low, per_sample=False)] if self.bias else [])]
        if device == "cuda":  # the heads' gradients in q's layout: select_backward's sums straight away
            bwd, last = [New("s_v", tq, low), Drop("gv"), New("s_k", tq, low), Drop("gk")], "gq"
        else:  # as _multihead_program on the CPU: each head's gradient copied twice, then select_backward's
            bwd, last = self._heads_copied(td, tq, low), "c2_q"
        sums, total = self._select_sums(tq, last, inplace, low)
        bwd += [*sums, New("gqkv", tq, low), Drop(total)]
        # in_proj is a matmul and a bias added: the bias's gradient first, then the weight's and the input's
        bwd += [New("gb_in", inner, low, per_sample=False)] if self.bias else []
        return [*bwd, New("gw_in", num.normal(s.d * inner), low, per_sample=False), *gx]

    def _multihead_program(self, x: Shape, grad: bool, device: str, inplace: bool) -> Program:
        """torch.nn.MultiheadAttention(batch_first=True) called with need_weights=False (torchvision's ViT), as
        F.multi_head_attention_forward runs it: the input transposed to [T, B, d] is copied for in_proj (a
        matmul on a non-contiguous input: kept for the weight's gradient), in_proj's output is copied again
        into [3, T, B, d] (q, k and v are views of that copy), SDPA runs on the heads' views; its output is
        permuted to [T, B, d] for out_proj: a copy on CUDA (the memory-efficient kernel writes [B, T, H, D]),
        none on the CPU (its fused kernel writes the query's layout). Backward: each head gradient is copied
        twice back to [T, B, d], q's, k's and v's become [3, T, B, d] zeros each (select_backward) and are
        summed (in place, unless a dispatch mode is on), then copied back to in_proj's [T, B, 3d]. Measured
        on the CPU with a TorchDispatchMode; on CUDA read from attention.cu and attention_backward.cu."""
        s = self._sizes(x)
        d, td, tq = s.d, s.td, s.tq
        # forward: x transposed and copied, in_proj (its bias added in place, out of place under a dispatch mode)
        fwd: list = [New("xc", td), New("mm", tq)]
        if self.bias and not inplace:
            fwd += [New("add", tq), Drop("mm")]
        fwd += [New("qkv", tq), Drop("add" if self.bias and not inplace else "mm")]
        bwd = self._out_proj_backward(s)
        if self.dropout != 0 and device != "cuda":  # CUDA's memory-efficient kernel takes dropout itself
            kernel, heads, first = self._multihead_fallback(s)
        else:
            kernel, heads, first = self._multihead_fused(s, device)
        sums, total = self._select_sums(tq, first, inplace)
        fwd += kernel
        bwd += [*heads, *sums, New("gproj", tq), Drop(total)]
        if self.bias:
            bwd.append(New("grad.in_proj.bias", num.normal(3 * d), per_sample=False))
        bwd.append(New("grad.in_proj.weight", num.normal(3 * d * d), per_sample=False))
        if grad:
            bwd.append(New("gx", td))
        bwd.append(Drop("gproj", "xc"))
        return Program(tuple(fwd), tuple(bwd))

    def _multihead_fallback(self, s: Sizes) -> tuple[list, list, str]:
        """nn.MultiheadAttention with dropout on the CPU, SDPA's math fallback: q and k scaled, no copies (B and H are
        adjacent in [T, B, H, D]); forward, backward up to select_backward's sums, and the last head gradient's name."""
        td, tq, square = s.td, s.tq, s.square
        fwd = [New("qs", td), New("ks", td), New("s", square), New("a", square), Drop("s"), New("mask", square, "mask"),
               New("ad", square), New("o", td), New("m", td), Drop("o"), New("out", td)]
        bwd = [Drop("m"), New("gv", td), New("ga", square), Drop("go", "qkv", "ad"), New("ga2", square),
               Drop("ga", "mask"), New("gs", square), Drop("ga2", "a"), New("gk", td), New("gq", td),
               Drop("gs", "ks", "qs"), New("gk2", td), Drop("gk"), New("gq2", td), Drop("gq"),
               New("c_v", td), Drop("gv"), New("c_q", td), Drop("gq2"), New("s_v", tq), Drop("c_v"),
               New("s_k", tq), Drop("gk2")]
        return fwd, bwd, "c_q"

    def _multihead_fused(self, s: Sizes, device: str) -> tuple[list, list, str]:
        """nn.MultiheadAttention's fused kernel: its output permuted for out_proj (a copy on CUDA); backward up to
        select_backward's sums (the heads' gradients copied twice), and the last head gradient's name."""
        td, cuda = s.td, device == "cuda"
        fwd = [New("o", td), self._lse(s.t, device)]
        fwd += [New("m", td), New("out", td)] if cuda else [New("out", td)]
        bwd: list = [Drop("m"), New("goc", td)] if cuda else []  # grad_out.contiguous() in the kernel
        bwd += [New("gq", td), New("gk", td), New("gv", td)]
        bwd += [*self._delta(s.t, s.d), Drop("goc")] if cuda else []
        return fwd, [*bwd, Drop("go", "qkv", "lse", "o"), *self._heads_copied(td, s.tq)], "c2_q"

    @staticmethod
    def _heads_copied(td: Dim, tq: Dim, storage: str = "model") -> list:
        """nn.MultiheadAttention's heads' gradients on the CPU: each copied twice back to [T, B, d], then v's and k's
        select_backward [3, T, B, d] (q's: `_select_sums`)."""
        return [New("c_v", td, storage), Drop("gv"), New("c_k", td, storage), Drop("gk"), New("c_q", td, storage), Drop("gq"),
                New("c2_v", td, storage), Drop("c_v"), New("c2_k", td, storage), Drop("c_k"), New("c2_q", td, storage),
                Drop("c_q"), New("s_v", tq, storage), Drop("c2_v"), New("s_k", tq, storage), Drop("c2_k")]

    @staticmethod
    def _select_sums(tq: Dim, last: str, inplace: bool, storage: str = "model") -> tuple[list, str]:
        """q's select_backward made from the head gradient `last`, the three summed; the sum's name. InputBuffer adds
        the second into the first in place (out of place under a dispatch mode)."""
        if inplace:
            return [Drop("s_k"), New("s_q", tq, storage), Drop(last), Drop("s_q")], "s_v"
        return [New("sum", tq, storage), Drop("s_v", "s_k"), New("s_q", tq, storage), Drop(last), New("sum2", tq, storage),
                Drop("sum", "s_q")], "sum2"

    def _lse(self, t: Dim, device: str) -> New:
        """The logsumexp the fused kernel keeps, float32: per head and query; on CUDA (the memory-efficient
        kernel) the queries are padded to a multiple of 32 (attention.cu: ceil_div(M, 32) * 32)."""
        rows = num.normal(-(-t // 32) * 32) if device == "cuda" and num.is_concrete(t) else t
        return New("lse", num.normal(self.num_heads * rows), "float32")

    def _delta(self, t: Dim, d: Dim) -> list:
        """The memory-efficient backward's float32 delta before its kernel runs (attention_backward.cu, float32:
        (grad_out * out).sum(-1).transpose(-2, -1).contiguous()), freed as it returns."""
        rows = num.normal(self.num_heads * t)
        return [New("prod", num.normal(t * d), "float32"), New("sum", rows, "float32"), New("delta", rows, "float32"),
                Drop("prod", "sum", "delta")]

    def _llama_program(self, x: Shape, grad: bool, inplace: bool, needs: str = "qkv") -> Program:
        """transformers' LlamaAttention op by op on the CPU (sdpa, no mask: torch's fused flash kernel with enable_gqa),
        measured with a TorchDispatchMode: q_proj, k_proj, v_proj; with rotary, q then k rotated (x·cos, −x₂, the
        halves concatenated, ·sin, the sum; the raw q and k freed once both are rotated); the kernel's output and
        float32 logsumexp; o_proj (the heads' merge is a view: the kernel writes [B, T, H, D]).

        Backward: o_proj (mm: the weight's gradient first; with a bias, addmm: the input's, the weight's, the
        bias's), the kernel's three gradients; the rotations' in reverse, k's first (the ·sin branch, −, the two
        halves' slice_backward summed, then ·cos), their sums in k's and q's buffers; then v_proj, k_proj, q_proj (the
        last made runs first), a rotated gradient copied (.contiguous() of its transpose) where the heads are
        several and T > 1; x's gradients meet in its buffer, x released after q_proj's.

        `needs`: which of q, k and v need a gradient (fine-tuned, its input needing none: those LoRA adapts); the
        kernel's other gradients are freed as it returns, and no node rotates or projects them back."""
        s = self._sizes(x)
        td, tk = s.td, s.tk
        rotated_grad = self.rotary and ("q" in needs or "k" in needs)  # a rotation's node keeps the tables
        fwd: list = [KeepInput(), *([KeepInput("x1")] if rotated_grad else []), New("q", td), New("k", tk), New("v", tk)]
        fwd += self._llama_rotations(s) if self.rotary else []
        rotated = {"q": "qe", "k": "ke"} if self.rotary else {"q": "q", "k": "k"}
        fwd += [New("o", td), New("lse", num.normal(self.num_heads * s.t), "float32"), New("out", td)]
        weight = New("grad.o_proj.weight", num.normal(s.d * s.d), per_sample=False)
        # a projection with a bias is addmm (its input's gradient first, then the weight's and the bias's); without,
        # mm (the weight's first)
        bwd: list = [New("go", td), weight, New("grad.o_proj.bias", s.d, per_sample=False)] if self.o_bias else [weight, New("go", td)]
        bwd += [Drop("g"), New("gq", td), New("gk", tk), New("gv", tk), Drop("go", rotated["k"], rotated["q"], "v", "lse", "o")]
        unused = tuple("g" + n for n in "qkv" if n not in needs)
        bwd += [Drop(*unused)] if unused else []
        rotations, grads = self._llama_rotations_backward(s, inplace, needs)
        return Program(tuple(fwd), tuple(bwd + rotations + self._llama_projections_backward(s, grads, grad, needs)))

    def _llama_tuned(self, x: Shape, grad: bool, device: str, inplace: bool) -> Program:
        """LlamaAttention fine-tuned: its projections frozen, peft's LoRA beside any of q_proj, k_proj, v_proj, o_proj
        (measured as `_llama_program` is). Where its input needs no gradient, only the adapted ones of q, k and v do
        (none: `_llama_inert`)."""
        s = self._sizes(x)
        adapted = self.adapter.projections if self.adapter is not None else ()
        needs = "qkv" if grad else "".join(n for n in "qkv" if f"{n}_proj" in adapted)
        lora = {n: Lora(self.adapter, s.t, s.d, fan_out, f"{n}.lora.", device == "cuda")
                for n, (_, fan_out) in self._fans(x).items() if n in adapted}
        if not needs:
            return self._llama_inert(s, lora.get("o_proj"))
        program = frozen_program(self._llama_program(x, grad, inplace, needs), {"x": None})
        if "o_proj" in lora:
            program = adapt_output(program, lora["o_proj"], "o", "out", "g", "go", s.d, inplace)
        _, grads = self._llama_rotations_backward(s, inplace, needs)
        for n in needs:
            if f"{n}_proj" in lora:
                gy = n + "cl" if self._llama_copied(n, s) else grads[n]
                program = adapt_input(program, lora[f"{n}_proj"], n, gy, grad, "gx" + n)
        return program

    def _llama_inert(self, s: Sizes, lora: Lora | None) -> Program:
        """Frozen, nothing in it needing a gradient: no node records it, so each tensor lives while transformers' code
        holds it (q, k and v until the module returns; the logsumexp freed at once). LoRA beside o_proj keeps its
        input, the kernel's output."""
        fwd: list = [New("q", s.td), New("k", s.tk), New("v", s.tk), *(self._llama_rotations(s) if self.rotary else []),
                     New("o", s.td), New("lse", num.normal(self.num_heads * s.t), "float32"), Drop("lse")]
        locals_ = ("qe", "ke", "v", "o") if self.rotary else ("q", "k", "v", "o")
        if lora is None:
            return Program((*fwd, New("out", s.td), Drop(*locals_)), ())
        fwd += [New("out.base", s.td), *lora.forward("o", "out.base", "out", False), Drop(*locals_)]
        events, _, _ = lora.backward("g", False)  # o needs no gradient: g is dropped with MulBackward's
        return Program(tuple(fwd), tuple(events))

    def _llama_rotations(self, s: Sizes) -> list:
        """q, then k rotated: x·cos, −x₂, the halves concatenated, ·sin, the sum; the raw q and k freed once both are."""
        fwd: list = []
        for n, elements in (("q", s.td), ("k", s.tk)):
            fwd += [New(n + "c", elements), New(n + "n", num.div(elements, 2)), New(n + "r", elements), Drop(n + "n"),
                    New(n + "s", elements), Drop(n + "r"), New(n + "e", elements), Drop(n + "c", n + "s")]
        return [*fwd, Drop("q", "k")]

    def _llama_rotations_backward(self, s: Sizes, inplace: bool, needs: str = "qkv") -> tuple[list, dict[str, str]]:
        """The rotations' backward, k's first (made last): the ·sin branch, −, the two halves' slice_backward summed,
        then ·cos, their sums in k's and q's buffers; the rotary tables released. The kernel's gradients' names
        after them returned (those that `needs`)."""
        bwd: list = []
        grads = {"q": "gq", "k": "gk", "v": "gv"}
        if not self.rotary or ("q" not in needs and "k" not in needs):
            return bwd, grads
        for n, elements in (("k", s.tk), ("q", s.td)):
            if n not in needs:
                continue
            bwd += [New(n + "g1", elements), New(n + "gn", num.div(elements, 2)), New(n + "s1", elements), Drop(n + "gn"),
                    New(n + "s2", elements), Drop(n + "g1")]
            if inplace:  # InputBuffer: the second half's gradient added into the first's
                bwd.append(Drop(n + "s2"))
                total = n + "s1"
            else:
                bwd += [New(n + "a", elements), Drop(n + "s1", n + "s2")]
                total = n + "a"
            bwd += [New(n + "gc", elements), Drop(grads[n])]
            if inplace:
                bwd.append(Drop(n + "gc"))
            else:
                bwd += [New(n + "t", elements), Drop(total, n + "gc")]
                total = n + "t"
            grads[n] = total
        return [*bwd, Drop("x1")], grads

    def _llama_copied(self, n: str, s: Sizes) -> bool:
        """Whether q's or k's rotated gradient is copied (.contiguous() of its transpose) before its projection's
        backward: where its heads are several and T > 1."""
        count = self.num_heads if n == "q" else (self.num_heads if self.kv_heads is None else self.kv_heads)
        return self.rotary and n != "v" and count != 1 and not (num.is_concrete(s.t) and s.t == 1)

    def _llama_projections_backward(self, s: Sizes, grads: dict[str, str], grad: bool, needs: str = "qkv") -> list:
        """v_proj's, k_proj's, q_proj's backward (the last made runs first), a rotated gradient copied (.contiguous()
        of its transpose) where the heads are several and T > 1; x's gradients handed to its buffer one by one, x
        released after q_proj's (those that `needs`)."""
        bwd: list = []
        for n, elements in (("v", s.tk), ("k", s.tk), ("q", s.td)):
            if n not in needs:
                continue
            source = grads[n]
            if self._llama_copied(n, s):  # the transposed gradient made contiguous
                bwd += [New(n + "cl", elements), Drop(source)]
                source = n + "cl"
            weight = New(f"grad.{n}_proj.weight", num.normal(num.div(elements, s.t) * s.d), per_sample=False)
            gx = [New("gx" + n, s.td)] if grad else []
            if self.bias:
                bwd += [*gx, weight, New(f"grad.{n}_proj.bias", num.div(elements, s.t), per_sample=False)]
            else:
                bwd += [weight, *gx]
            bwd.append(Drop(source, *(["x"] if n == "q" else [])))
            bwd += [HandGradient("gx" + n), Drop("gx" + n)] if grad else []
        return bwd

    def param_tensors(self, x: Shape) -> tuple[Dim, ...]:
        """in_proj's weight and bias, out_proj's weight and bias, as torch holds them (Llama's: q, k, v, o)."""
        _, d = self.tokens(x)
        if self.module == "llama":
            kv = self.kv_dim(x)
            pairs = ((d * d, d, self.bias), (d * kv, kv, self.bias), (d * kv, kv, self.bias), (d * d, d, self.o_bias))
            own = tuple(num.normal(n) for w, b, on in pairs for n in ((w, b) if on else (w,)))
            return (*own, *self.adapter_tensors(x))
        inner = num.normal(d + 2 * self.kv_dim(x))
        own = (num.normal(d * inner), inner, num.normal(d * d), d) if self.bias else (num.normal(d * inner), num.normal(d * d))
        return (*own, *self.adapter_tensors(x))

    def _fans(self, x: Shape) -> dict[str, tuple[Dim, Dim]]:
        """Each projection's input and output features (split and multihead: in_proj and out_proj)."""
        _, d = self.tokens(x)
        kv = self.kv_dim(x)
        if self.module == "llama":
            return {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d)}
        return {"in_proj": (d, num.normal(d + 2 * kv)), "out_proj": (d, d)}

    def lora_projections(self) -> tuple[tuple[str, ...], ...]:
        if self.module == "multihead":
            return ()
        if self.module == "llama":
            return (("q_proj",), ("k_proj",), ("v_proj",), ("o_proj",))
        return (("in_proj", "c_attn"), ("out_proj", "c_proj"))  # GPT-2's names for the same two

    def adapter_tensors(self, x: Shape) -> tuple[Dim, ...]:
        if self.adapter is None:
            return ()
        fans = self._fans(x)
        return tuple(n for name in self.adapter.projections for n in self.adapter.tensors(*fans[name]))

    def quantized_weights(self, x: Shape) -> tuple[tuple[int, Dim], ...]:
        """(index in param_tensors, out features) of each projection's weight: a bias, where it has one, after it."""
        biased = (self.bias, self.bias, self.bias, self.o_bias) if self.module == "llama" else (self.bias, self.bias)
        starts = [sum(2 if on else 1 for on in biased[:i]) for i in range(len(biased))]
        return tuple((start, fan_out) for start, (_, fan_out) in zip(starts, self._fans(x).values()))

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        """nn.MultiheadAttention's in_proj [d + 2·kv, d] and out_proj [d, d] (Llama's q, k, v, o: [out, d]), biases after
        their weights."""
        _, d = self.tokens(x)
        if self.module == "llama":
            kv = self.kv_dim(x)
            outs = (d, kv, kv, d)
        else:
            outs = (num.normal(d + 2 * self.kv_dim(x)), d)
        return tuple(shape for out in outs for shape in (((out, d), (out,)) if self.bias else ((out, d),)))


@register
@dataclass(frozen=True, kw_only=True)
class Rotary(Layer):
    """The rotary position embedding's tables (transformers' LlamaRotaryEmbedding, as LlamaModel calls it once for all
    its layers): cos and sin of positions·θ^(−2i/head_dim), [2, T, head_dim], one pair for the whole batch, read by
    every `attention` with rotary = true (from = [the tokens, this layer]), which rotates q and k with them.

    Computed in float32 from its input's length (positions 0..T−1) and cast to the input's dtype: no parameters, two
    buffers (inv_freq and its copy, head_dim/2 each), no FLOPs counted (element-wise), no gradient; the attention
    layers keep the tables for backward, one storage for all of them."""

    kind = "rotary"
    detached = True
    torch_modules = ("LlamaRotaryEmbedding", "MistralRotaryEmbedding", "Qwen2RotaryEmbedding")
    head_dim: Dim = size()
    theta: Value = real(10000, low=0)  # rope_theta: changes the values only

    def output(self, x: Shape) -> Shape:
        if len(x) != 2:
            raise SpecError(f"rotary reads tokens [T, d] (for T), got {fmt.shape(x)}")
        if num.is_concrete(self.head_dim) and self.head_dim % 2:
            raise SpecError(f"head_dim = {self.head_dim} is odd: rotate_half splits it in two halves", None, "head_dim")
        return (2, x[0], self.head_dim)

    def summary(self, x: Shape) -> str:
        return f"cos, sin of {fmt.group(self.head_dim)}, θ={fmt.group(self.theta)}"

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        return [("output", f"cos and sin of positions 0..T−1 times θ^(−2i/head_dim), [2, T, head_dim] = "
                           f"{fmt.shape(self.output(x))}, one pair for the batch; computed in float32, no parameters"),
                ("macs", "MACs = 0: element-wise; the attention layers that read the tables keep them (once)")]

    def to_torch(self, x: Shape, nn):
        return nn.RotaryTables(int(self.head_dim), float(self.theta))

    @classmethod
    def torch_read(cls, module) -> dict:
        """head_dim = 2·inv_freq's length; theta: the config's rope_parameters["rope_theta"] (transformers 5), or rope_theta."""
        config = getattr(module, "config", None)
        parameters = getattr(config, "rope_parameters", None) or {}
        theta = parameters.get("rope_theta", getattr(config, "rope_theta", 10000)) if isinstance(parameters, dict) else 10000
        rope = parameters.get("rope_type", "default") if isinstance(parameters, dict) else "default"
        if rope != "default":
            raise Inexpressible(f"rope_type {rope!r}: archcalc's rotary is the default one")
        theta = int(theta) if float(theta).is_integer() else theta
        return {"head_dim": 2 * int(module.inv_freq.numel())} | ({"theta": theta} if theta != 10000 else {})

    # Memory (archcalc/memory/timeline/): its facts and hooks -----------------------------------------------
    transformers_body = True  # LlamaModel's rotary_emb

    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        return self.head_dim * size  # inv_freq and original_inv_freq, head_dim/2 values each

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """LlamaRotaryEmbedding's ops (measured with a TorchDispatchMode, torch 2.13), with its positions as LlamaModel
        makes them (arange + the cache's length; they and the embeddings it reads are held by the model's body until
        it returns) and its causal mask's
        check for packed sequences (transformers' create_causal_mask, before the tables): positions, as float32, times
        inv_freq (a float32 copy of it in a 16-bit model), the frequencies twice
        (cat), cos (·1, the attention scaling), sin (·1); in a 16-bit model both cast; the locals freed as it returns,
        the tables it returns held by the body (position_embeddings) until it returns.
        The tables are one storage here, two in torch: made with cos's, the peak is the same (sin's temporary
        comes after). No backward: no gradient reaches it."""
        if amp is not None or device != "cpu":
            return None
        t, h = x[0], self.head_dim
        th = num.normal(t * h)
        # LlamaModel's body holds its input, the embeddings (its local inputs_embeds), until it returns
        fwd = (KeepInput(), Hold("x"), Drop("x"),
               New("arange", t, "int64", per_sample=False), New("pos", t, "int64", per_sample=False), Drop("arange"),
               Hold("pos"),
               # the causal mask's check for packed sequences (create_causal_mask: the positions' diff, != 1, cumsum)
               New("first", 1, "int64"), New("cat", t + 1, "int64"), New("diff", t, "int64"), Drop("cat"),
               New("ne", t, "bool"), New("packed", t, "int64"), Drop("ne"), New("last", 1, "bool"),
               New("all", 1, "bool", per_sample=False), Drop("last", "all", "first", "diff", "packed"),
               New("pf", t, "float32", per_sample=False),
               When(New("inv", num.div(h, 2), "float32", per_sample=False), low=True),
               New("freqs", num.normal(num.div(th, 2)), "float32", per_sample=False),
               Drop("pf"), When(Drop("inv"), low=True), New("emb", th, "float32", per_sample=False),
               New("c0", th, "float32", per_sample=False),
               When(New("out", num.normal(2 * th), per_sample=False), low=False),
               When(New("cos", th, "float32", per_sample=False), low=True),
               Drop("c0"), New("s0", th, "float32", per_sample=False),
               When(New("sin", th, "float32", per_sample=False), low=True), Drop("s0"),
               When(New("out", num.normal(2 * th), per_sample=False), low=True), When(Drop("cos", "sin"), low=True),
               Drop("pos", "freqs", "emb"), Hold("out"))  # cos and sin: the body's local position_embeddings
        return Program(fwd, ())
