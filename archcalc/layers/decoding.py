"""What a kind does in a generation's forward passes, op by op: transformers' modules in eval under inference_mode,
with a KV cache (archcalc/memory/timeline/generate.py runs these programs; docs/memory-model.md, "Generation").

A pass runs `tokens` new tokens (the prompt in the prefill, 1 in a decode step); the row's input shape is at that
length. Most kinds need no program here: in eval the timeline's generic rule (one output, its inputs freed when their
last reader has run) is what torch does. The kinds below make and free more, measured with a TorchDispatchMode
(tests/oracle/generation_probe.py, transformers 5.25, torch 2.13, CPU): attention (GPT-2's and Llama's, with the
cache's update), Llama's rotary tables and RMSNorm, GPT-2's gelu_new and learned positions. One small function per
kind, registered once.

Besides layers/events.py's events a program may name the cache: `Cached` (the layer's keys and values appended, or
written into a static cache) and `Mask` (the causal mask a static cache's decode step builds, once per forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..core import num
from ..core.num import Dim, Shape
from .events import Convert, Drop, Event, Hold, New, When

PROGRAMS: dict[str, Callable] = {}


NORMS = ("layernorm", "rmsnorm")


@dataclass(frozen=True)
class KV:
    """What a layer keeps in the cache: `width` values per token and sample for its keys (as many for its values),
    and how: `causal`, `window` (a sliding window's length), `module` (whose code: "split" GPT-2's, "llama")."""

    width: Dim
    causal: bool
    window: Dim | None
    module: str


def cache(layer, x: Shape) -> KV | None:
    """What the layer keeps in a KV cache (None: nothing, it is no attention)."""
    if layer.kind != "attention":
        return None
    return KV(layer.kv_dim(layer.hidden(x)), layer.causal, layer.window, layer.module)


@dataclass(frozen=True)
class Cached:
    """The cache's update (Cache.update): the layer's new keys and values, `width` elements per token and sample
    (kv_heads·head_dim), appended by torch.cat (a dynamic cache: the grown copy made while the old one is alive, keys
    first) or copied into the preallocated tensors (a static cache); then the program drops `drop`, the projections'
    outputs the keys and values were made from (a view's base is no name: none)."""

    width: Dim
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mask:
    """The causal mask the model builds once per forward where SDPA cannot take is_causal (a static cache's decode
    step: the keys are the whole preallocated length), held until the model's body returns."""


def register(kind: str) -> Callable:
    def add(function: Callable) -> Callable:
        if kind in PROGRAMS:
            raise ValueError(f"a generation program for {kind!r} is registered already")
        PROGRAMS[kind] = function
        return function

    return add


def program(layer, x: Shape, tokens: Dim) -> tuple | None:
    """The row's ops in a generation's forward (None: the generic rule), its input `x` at `tokens` new tokens."""
    found = PROGRAMS.get(layer.kind)
    return None if found is None else found(layer, x, tokens)


@dataclass
class Frames:
    """transformers' Python variables in a forward, as references held past a tensor's last reader (the timeline's
    rule frees a tensor once its last reader has run): `before[i]` the names referenced before row i runs, `after[i]`
    those referenced once it has run, `release[i]` those let go once it has run (row indices, from 1; `rows` and
    `uses` a network's). Per decoder layer (a block use with one attention layer):
    - its input, until it returns (the model's loop variable; Llama's first layer's: the embeddings, the model's);
    - a sub-module's input (the rows of `mlp.*`), until its last row has run (LlamaMLP's argument);
    - GPT-2's block (attention module "split"), whose outputs are names of their own: what an add reads, until the
      block returns (residual, attn_output, feed_forward_hidden_states), and a norm's output until the next add."""

    before: dict[int, list[str]] = field(default_factory=dict)
    after: dict[int, list[str]] = field(default_factory=dict)
    release: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: tuple, uses: tuple) -> Frames:
        frames = cls()
        for use in uses:
            inside = rows[use.first:use.stop]
            attention = [row for row in inside if row.kind == "attention"]
            if use.repeat is not None or len(attention) != 1:
                continue
            frames.hold(inside, inside[0].index)
            groups: dict[str, list] = {}
            for row in inside:
                inner = row.name[len(use.path) + 1:]
                if "." in inner:
                    groups.setdefault(inner.split(".")[0], []).append(row)
            for members in groups.values():
                if len(members) > 1:
                    frames.hold(members, members[0].index)
            if attention[0].layer.module == "split":
                frames.gpt2(inside)
        return frames

    def hold(self, rows: list, start: int) -> None:
        """The inputs of `rows` from outside them, referenced from before `start` until the last of them has run."""
        made = {row.name for row in rows}
        names = list(dict.fromkeys(n for row in rows for n in row.inputs if n not in made))
        self.before.setdefault(start, []).extend(names)
        self.release.setdefault(rows[-1].index, []).extend(names)

    def gpt2(self, rows: list) -> None:
        """GPT2Block's own names: residual, attn_output, feed_forward_hidden_states, and hidden_states reassigned at
        each add."""
        made = {row.name: row for row in rows}
        last = rows[-1].index
        adds = [row for row in rows if row.kind == "add"]
        for row in adds:
            for name in row.inputs:
                if name in made:
                    self.after.setdefault(made[name].index, []).append(name)
                    self.release.setdefault(last, []).append(name)
        for row in rows:
            later = next((a for a in adds if a.index > row.index), None)
            if row.kind in NORMS and later is not None:
                self.after.setdefault(row.index, []).append(row.name)
                self.release.setdefault(later.index, []).append(row.name)


@register("attention")
def _attention(layer, x: Shape, tokens: Dim) -> tuple[Event, ...]:
    """GPT2Attention (module "split"): c_attn's output (q, k and v are views of it, q's held until it returns), the
    cache's update, SDPA's output (its [B, T, H, D] layout: the heads' merge copies nothing), c_proj.
    LlamaAttention ("llama"): q_proj, k_proj, v_proj; with rotary, q then k rotated (x·cos, the negated half, the
    halves concatenated, ·sin, the sum), the raw q and k freed; the update, then the rotated k and v freed (the
    names now hold the cache's); SDPA (grouped queries through enable_gqa: no copies), o_proj; the rotated q freed as
    it returns."""
    x = layer.hidden(x)
    _, d = layer.tokens(x)
    kv = layer.kv_dim(x)
    td, tk = num.normal(tokens * d), num.normal(tokens * kv)
    if layer.module != "llama":
        return (New("qkv", num.normal(tokens * (d + 2 * kv))), Cached(kv), New("o", td), New("out", td), Drop("o", "qkv"))
    fwd: list = [New("q", td), New("k", tk), New("v", tk)]
    rotated = {"q": "q", "k": "k"}
    if layer.rotary:
        for n, size in (("q", td), ("k", tk)):
            fwd += [New(n + "c", size), New(n + "n", num.div(size, 2)), New(n + "r", size), Drop(n + "n"),
                    New(n + "s", size), Drop(n + "r"), New(n + "e", size), Drop(n + "c", n + "s")]
            rotated[n] = n + "e"
        fwd.append(Drop("q", "k"))
    fwd += [Cached(kv, (rotated["k"], "v")), New("o", td), New("out", td), Drop("o", rotated["q"])]
    return tuple(fwd)


@register("rotary")
def _rotary(layer, x: Shape, tokens: Dim) -> tuple[Event, ...]:
    """LlamaModel's positions (arange(past, past + T): made, offset, held until its body returns), a static cache's
    mask, then LlamaRotaryEmbedding in float32: positions·inv_freq, the frequencies twice (cat), cos (·1, the
    attention scaling) and sin (·1), each cast to the model's dtype (a 16-bit model: new tensors, the float32 ones
    freed as it returns); cos and sin held until the body returns."""
    th, half = num.normal(tokens * layer.head_dim), num.div(layer.head_dim, 2)
    fixed = {"per_sample": False}
    fwd = [New("arange", tokens, "int64", **fixed), New("positions", tokens, "int64", **fixed), Drop("arange"),
           Hold("positions"), Drop("positions"), Mask(),
           New("pf", tokens, "float32", **fixed), When(New("inv", half, "float32", **fixed), low=True),
           New("freqs", num.normal(tokens * half), "float32", **fixed), Drop("pf"), When(Drop("inv"), low=True),
           New("emb", th, "float32", **fixed), New("c0", th, "float32", **fixed), New("cos", th, "float32", **fixed),
           Drop("c0"), New("s0", th, "float32", **fixed), New("sin", th, "float32", **fixed), Drop("s0")]
    cast = (New("cos16", th, **fixed), New("sin16", th, **fixed), Drop("freqs", "emb", "cos", "sin"),
            Hold("cos16"), Hold("sin16"), Drop("cos16", "sin16"))  # a 16-bit model: the tables cast, as it returns
    kept = (Drop("freqs", "emb"), Hold("cos"), Hold("sin"), Drop("cos", "sin"))
    fwd += [When(e, low=True) for e in cast] + [When(e, low=False) for e in kept]
    return (*fwd, New("out", 0, **fixed))


@register("rmsnorm")
def _rmsnorm(layer, x: Shape, tokens: Dim) -> tuple[Event, ...] | None:
    """LlamaRMSNorm: x.to(float32) (x itself in float32), x², its mean (x² freed), + eps, rsqrt (the sum freed),
    x·rsqrt (rsqrt freed; the float32 x too, its name rebound), .to(x's dtype), γ· that; the mean freed as it
    returns. nn.RMSNorm (module "torch"): the generic rule."""
    if layer.module != "llama":
        return None
    n = num.mul(x)
    groups = num.div(n, x[-1])
    return (Convert("xf", "x", n, "model", "opmath"), New("p", n, "opmath"), New("ms", groups, "opmath"), Drop("p"),
            New("v", groups, "opmath"), New("r", groups, "opmath"), Drop("v"), New("xn", n, "opmath"), Drop("r", "xf"),
            Convert("xb", "xn", n, "opmath", "model"), New("out", n), Drop("xb", "xn", "ms"))


@register("gelu_new")
def _gelu_new(layer, x: Shape, tokens: Dim) -> tuple[Event, ...]:
    """NewGELUActivation's eight ops, each temporary freed once read: 0.5·x, x³, ·0.044715, x + that, ·√(2/π), tanh,
    1 + tanh, the product (0.5·x freed last)."""
    n = num.mul(x)
    return (New("v", n), New("p", n), New("a", n), Drop("p"), New("b", n), Drop("a"), New("c", n), Drop("b"),
            New("t", n), Drop("c"), New("u", n), Drop("t"), New("out", n), Drop("u", "v"))


@register("parameter")
def _parameter(layer, x: Shape, tokens: Dim) -> tuple[Event, ...] | None:
    """GPT-2's learned positions (`length`): GPT2Model's position ids (arange(past, past + T), offset) and wpe's
    lookup, [1, T, d], both held until its body returns. Without `length`: the generic rule."""
    if layer.length is None:
        return None
    fixed = {"per_sample": False}
    return (New("arange", tokens, "int64", **fixed), New("positions", tokens, "int64", **fixed), Drop("arange"),
            Hold("positions"), Drop("positions"), New("out", num.mul(layer.output(x)), **fixed), Hold("out"))
