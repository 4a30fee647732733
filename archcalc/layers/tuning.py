"""Fine-tuning as a layer carries it (`Layer.tuning`): its own parameters frozen, LoRA adapters beside a projection
(peft's), its frozen weight stored quantized (bitsandbytes' layouts); and the events of a projection so tuned.

A projection y = x·Wᵀ + b under LoRA, as peft's `lora.Linear` runs it (peft 0.21, measured with a TorchDispatchMode
on the CPU, tests/memory/test_finetune_oracle.py):

    result = base_layer(x)                                    # frozen: keeps no input (its weight needs no gradient)
    x = x.to(lora_A.weight.dtype)                             # float32 adapters beside a 16-bit base: a copy
    result = result + lora_B(lora_A(dropout(x))) * scaling    # lora_A keeps its input, lora_B lora_A's output
    result = result.to(the base's output dtype)

Its names, peft's: `base_layer`, `lora_A.default`, `lora_B.default` (and `lora_dropout.default`) under the target.

A quantized frozen weight (base_dtype int8, nf4, fp4) is derived from bitsandbytes' source (0.50.1,
37d2a93: nn/modules.py Linear8bitLt and Linear4bit, autograd/_functions.py MatMul8bitLt and MatMul4Bit,
backends/cuda/ops.py, functional.py quantize_4bit): bitsandbytes runs on CUDA only, so no CPU oracle measures it.
- int8 (Linear8bitLt, LLM.int8 without outliers: threshold 0): the weight as int8 [out, in] and one float32 scale
  per row (SCB). Forward: the input cast to float16, quantized per row (int8 and a float32 scale per row), an
  int32 product, dequantized to float16, cast to the input's dtype; the node keeps the input. Backward: the
  weight dequantized into the input's dtype (CB.to(dtype).mul_(SCB / 127)), then the input's gradient.
- nf4, fp4 (Linear4bit, Params4bit): two weights per byte, in blocks of 64 with an absmax per block; with QLoRA's
  double quantization (Linear4bit's default, compress_statistics) the absmax is itself quantized to 8 bits in
  blocks of 256, with a float32 absmax per such block, its mean (offset) and its own 256-entry code; the 4-bit
  code (16 float32) is kept per layer. Forward at more than 1,536 tokens (B·T; below, some GPUs run a fused kernel
  that makes no temporary: the timeline assumes the dequantized path, never below): the absmax dequantized to
  float32 (and the offset added: a second one), the weight dequantized into the input's dtype, F.linear. No
  activation is kept. Backward: the absmax and the weight dequantized again, the input's gradient.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core import num
from ..core.num import Dim, Value
from .events import Convert, Drop, Event, HandGradient, KeepInput, New, Program

QUANTIZED = ("int8", "nf4", "fp4")
BLOCK = 64  # bitsandbytes' 4-bit block size (Linear4bit's default)
NESTED = 256  # double quantization: the 4-bit absmax quantized to 8 bits in blocks of 256
NESTED_CODE = 256  # the 8-bit dynamic map each layer's nested state copies (float32)
CODE_4BIT = 16  # get_4bit_type's table, float32, made per layer
MANY_TOKENS = 1536  # above, bitsandbytes' 4-bit forward always dequantizes (its fused kernel's limit on M)


class Adapter(NamedTuple):
    """LoRA on a projection: rank, alpha (scaling = alpha/rank), dropout on the adapter's input, the adapters'
    storage ("model", or "float32" beside a 16-bit base: peft's autocast_adapter_dtype), and for a layer of several
    projections (attention) which of them it adapts (torch's names: "in_proj", "q_proj"...)."""

    rank: int
    alpha: Value
    dropout: Value = 0
    dtype: str = "model"
    projections: tuple[str, ...] = ()

    def tensors(self, fan_in: Dim, fan_out: Dim) -> tuple[Dim, Dim]:
        """lora_A's weight [rank, in] and lora_B's [out, rank], in elements."""
        return num.normal(self.rank * fan_in), num.normal(fan_out * self.rank)


class Tuning(NamedTuple):
    """How a layer is fine-tuned: its own parameters `frozen` (no gradient, no optimizer state), an `adapter`, its
    frozen weight `quantized` ("int8", "nf4", "fp4"; None: stored in the model's dtype)."""

    frozen: bool = False
    adapter: Adapter | None = None
    quantized: str | None = None


def quantized_bytes(form: str, elements: Dim, rows: Dim) -> tuple[Dim, ...]:
    """The storages of a weight of `elements` (`rows` output features) in bitsandbytes' layout, in bytes, one per
    tensor: int8's weight and its row scales; 4-bit's packed weight, its 8-bit absmax, their offset, the nested
    state's float32 absmax and code, the 4-bit code."""
    if form == "int8":
        return elements, num.normal(4 * rows)
    blocks = num.ceildiv(elements, BLOCK)
    return (num.ceildiv(elements, 2), blocks, 4, num.normal(4 * num.ceildiv(blocks, NESTED)), 4 * NESTED_CODE,
            4 * CODE_4BIT)


# The events of one projection (Layer.program's pieces) -----------------------------------------------------------
# Names: `x` its input (KeepInput where a node keeps it), `y` the base's output; the adapter's own are prefixed.


def base_forward(form: str | None, x: str, y: str, tokens: Dim, fan_in: Dim, fan_out: Dim, keeps_input: bool,
                 grad: bool) -> list[Event]:
    """The frozen base projection x -> y (`keeps_input`: a trained weight's node keeps x; LoRA's own keep is apart).
    Quantized: bitsandbytes' ops around it (see the module). `grad`: the input needs a gradient."""
    rows, n = num.normal(tokens * fan_in), num.normal(fan_in * fan_out)
    out = num.normal(tokens * fan_out)
    if form == "int8":  # MatMul8bitLt (threshold 0): the input in float16, quantized per row, an int32 product
        events = [New(x + ".f16", rows, "float16"), New(x + ".scale", tokens, "float32"),
                  New(x + ".int8", rows, "int8"), Drop(x + ".f16"), New(y + ".i32", out, "int32"),
                  New(y + ".f16", out, "float16"), Convert(y, y + ".f16", out, "float16", "model"),
                  Drop(y + ".f16", y + ".i32", x + ".int8", x + ".scale")]
        return ([KeepInput(x)] if grad else []) + events
    if form in ("nf4", "fp4"):
        blocks = num.ceildiv(n, BLOCK)
        return [New("absmax.dq", blocks, "float32", per_sample=False), New("absmax", blocks, "float32", per_sample=False),
                New("weight.dq", n, per_sample=False), New(y, out), Drop("weight.dq", "absmax", "absmax.dq")]
    return ([KeepInput(x)] if keeps_input else []) + [New(y, out)]


def base_backward(form: str | None, g: str, gx: str, tokens: Dim, fan_in: Dim, fan_out: Dim) -> list[Event]:
    """The frozen base's backward: the input's gradient `gx` from `g` (the weight dequantized first where quantized)."""
    rows, n = num.normal(tokens * fan_in), num.normal(fan_in * fan_out)
    if form == "int8":  # CB.to(dtype, copy=True).mul_(SCB.unsqueeze(1).mul(1/127)), then the matmul
        return [New("weight.dq", n, per_sample=False), New("scale", fan_out, "float32", per_sample=False), Drop("scale"),
                New(gx, rows), Drop("weight.dq")]
    if form in ("nf4", "fp4"):  # dequantize_4bit: the absmax (nested: dequantized, the offset added in place)
        return [New("absmax", num.ceildiv(n, BLOCK), "float32", per_sample=False), New("weight.dq", n, per_sample=False),
                Drop("absmax"), New(gx, rows), Drop("weight.dq")]
    return [New(gx, rows)]


class Lora(NamedTuple):
    """One adapted projection's events: its adapter, its sizes, its names' prefix, where it runs."""

    adapter: Adapter
    tokens: Dim
    fan_in: Dim
    fan_out: Dim
    prefix: str = "lora."  # "in_proj.lora." inside attention
    cuda: bool = False

    @property
    def cast(self) -> bool:
        """float32 adapters beside a 16-bit base: the input copied to float32, the sum float32, cast back."""
        return self.adapter.dtype == "float32"

    def name(self, what: str) -> str:
        return self.prefix + what

    def kept(self) -> str:
        """The name lora_A's node keeps: the input (or its float32 copy), or with dropout the dropped copy."""
        return self.name("xd" if self.adapter.dropout != 0 else "x")

    def forward(self, x: str, y: str, out: str, grad: bool) -> list[Event]:
        """result = y + lora_B(lora_A(dropout(x))) · scaling, as `out`; y is dropped. `grad`: x needs a gradient (a
        dropout mask is kept only then)."""
        a, t, n = self.adapter, self.tokens, self.name
        store = "float32" if self.cast else "model"
        rows_in, rows_out = num.normal(t * self.fan_in), num.normal(t * self.fan_out)
        # x.to(lora_A's dtype): x itself (one more reference), or a float32 copy (peft rebinds x: alive to the end)
        events: list[Event] = [Convert(n("x"), x, rows_in, "model", store)]
        if a.dropout != 0:  # F.dropout on the CPU: a mask (empty_like, bernoulli_, scaled), then x·mask
            mask = "mask" if self.cuda or not self.cast else store
            events += [New(n("mask"), rows_in, mask), New(n("xd"), rows_in, store)]
            if not self.cast:  # the input's own reference goes (its float32 copy stays until the forward returns)
                events.append(Drop(n("x")))
            if not grad:  # no node records the product: its mask goes
                events.append(Drop(n("mask")))
        events += [New(n("a"), num.normal(t * a.rank), store), New(n("b"), rows_out, store),
                   New(n("s"), rows_out, store), Drop(n("b"))]
        if self.cast:  # a 16-bit y plus a float32 product: a float32 sum, then cast back to y's dtype
            events += [New(n("sum"), rows_out, "float32"), Drop(n("s"), y), New(out, rows_out), Drop(n("sum"))]
            if a.dropout != 0:
                events.append(Drop(n("x")))  # the float32 copy, once peft's forward returns
        else:
            events += [New(out, rows_out), Drop(n("s"), y)]
        return events

    def backward(self, g: str, grad: bool, hand: bool = True) -> tuple[list[Event], str | None, str | None]:
        """From the output's gradient `g`: MulBackward, lora_B's node, lora_A's (each its weight's gradient first, then
        its input's; lora_A's input's where `grad`), dropout's, the float32 copy's; the input's gradient handed to
        its buffer at once (`hand`: the row's input), or left alive for the program to sum. Returns the events, the
        name of the gradient the base's backward then reads (g itself, or its copy in the base's dtype), and the
        input's gradient left alive (None where handed or not made)."""
        a, t, n = self.adapter, self.tokens, self.name
        store = "float32" if self.cast else "model"
        rows_in, rows_out = num.normal(t * self.fan_in), num.normal(t * self.fan_out)
        lora_a, lora_b = a.tensors(self.fan_in, self.fan_out)
        events: list[Event] = []
        base_g: str | None = g  # the base's node reads it (none where its input needs no gradient: `grad`)
        if self.cast:  # result.to(dtype)'s ToCopyBackward, then the add hands y its gradient cast back
            events += [New(n("g32"), rows_out, "float32"), Drop(g)]
            events += [New(n("gy"), rows_out)] if grad else []
            base_g, g = (n("gy") if grad else None), n("g32")
        events.append(New(n("gs"), rows_out, store))  # MulBackward: g · scaling
        if self.cast or not grad:  # no other node reads g
            events.append(Drop(g))
            base_g = base_g if self.cast else None
        events += [New("grad." + n("lora_B"), lora_b, store, per_sample=False), New(n("ga"), num.normal(t * a.rank), store),
                   Drop(n("gs"), n("a")), New("grad." + n("lora_A"), lora_a, store, per_sample=False)]
        if not grad:
            return [*events, Drop(n("ga"), self.kept())], base_g, None
        events += [New(n("gx"), rows_in, store), Drop(n("ga"), self.kept())]
        gx = n("gx")
        if a.dropout != 0:
            events += [New(n("gxd"), rows_in, store), Drop(gx, n("mask"))]
            gx = n("gxd")
        if self.cast:
            events += [New(n("gxc"), rows_in), Drop(gx)]
            gx = n("gxc")
        if not hand:
            return events, base_g, gx
        return [*events, HandGradient(gx), Drop(gx)], base_g, None


# A layer's program fine-tuned (attention's: archcalc/layers/attention.py) ----------------------------------------


def frozen_program(program: Program, weight_only: dict[str, str | None]) -> Program:
    """A program with its weights frozen: no parameter's gradient, and the tensors kept only for them (`weight_only`:
    name -> the tensor after whose making it is dropped instead; None: the row's input, no longer kept) not kept."""
    forward: list[Event] = []
    for e in program.forward:
        if isinstance(e, KeepInput) and e.name in weight_only and weight_only[e.name] is None:
            continue
        forward.append(e)
        made = {name for name, after in weight_only.items() if after is not None and isinstance(e, New) and e.name == after}
        forward += [Drop(name) for name in sorted(made) if any(isinstance(f, New) and f.name == name for f in program.forward)]
    backward: list[Event] = []
    for e in program.backward:
        if isinstance(e, New) and e.name.startswith("grad."):
            continue
        if isinstance(e, Drop):
            names = tuple(name for name in e.names if name not in weight_only)
            if names:
                backward.append(Drop(*names))
            continue
        backward.append(e)
    return Program(tuple(forward), tuple(backward))


def _find(events, name: str) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, New) and e.name == name)


def adapt_input(program: Program, lora: Lora, y: str, gy: str, grad: bool, gx: str = "gx") -> Program:
    """LoRA beside the projection whose output is `y` (made from the row's input): its base output y.base, then the
    adapter's; in backward the adapter's nodes on `gy` before the base's input gradient `gx` (the input's gradient
    from the adapter handed to its buffer first)."""
    forward = list(program.forward)
    i = _find(forward, y)
    base = forward[i]
    forward[i:i + 1] = [New(y + ".base", base.elements, base.storage, base.per_sample), *lora.forward("x", y + ".base", y, grad)]
    backward = list(program.backward)
    made = _find(backward, gy)
    at = next(j for j, e in enumerate(backward) if j > made and ((isinstance(e, New) and e.name == gx)
                                                                  or (isinstance(e, Drop) and gy in e.names)))
    events, base_g, _ = lora.backward(gy, grad)
    rest = []
    for e in backward[at:]:
        if isinstance(e, Drop):
            names = tuple(base_g if name == gy else name for name in e.names if name != gy or base_g is not None)
            e = Drop(*names) if names else None
        if e is not None:
            rest.append(e)
    return Program(tuple(forward), tuple(backward[:at] + events + rest))


def adapt_output(program: Program, lora: Lora, source: str, y: str, g: str, gx: str, width: Dim, inplace: bool) -> Program:
    """LoRA beside the projection that makes the row's output `y` from `source`: in backward the adapter's nodes on the
    output's gradient `g` first, then the base's gradient of its input `gx`, the two summed into one (in place
    without a dispatch mode, as InputBuffer adds them)."""
    forward = list(program.forward)
    i = _find(forward, y)
    base = forward[i]
    forward[i:i + 1] = [New(y + ".base", base.elements, base.storage, base.per_sample), *lora.forward(source, y + ".base", y, True)]
    backward = list(program.backward)
    start = _find(backward, gx)
    end = next(j for j, e in enumerate(backward) if j > start and isinstance(e, Drop) and g in e.names)
    events, base_g, lora_gx = lora.backward(g, True, hand=False)
    rows = num.normal(lora.tokens * width)
    events += [New(gx + ".base", rows), Drop(base_g)]
    if inplace:
        events += [Drop(gx + ".base"), Convert(gx, lora_gx, rows, "model", "model"), Drop(lora_gx)]
    else:
        events += [New(gx, rows), Drop(lora_gx, gx + ".base")]
    others = tuple(name for name in backward[end].names if name != g)
    return Program(tuple(forward), tuple(backward[:start] + events + ([Drop(*others)] if others else []) + backward[end + 1:]))
