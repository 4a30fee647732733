"""Greedy generation with a KV cache as one object: the prefill and the decode steps on one tape.

    Generation(prefill, decode, settings, batch).run() -> Generated

The loop is tests/oracle/generation_probe.py's, transformers' greedy search written out: in eval under
inference_mode, one forward over the prompt fills the cache (phase "prefill"), then `new_tokens` forwards of one
token each (phase "decode"); after each forward the last position's logits are copied in float32, their argmax is
the next token. The prefill's outputs are deleted; a decode step's stay bound to the loop's `out` until the next
step's forward returns (its logits, [B, 1, V], alive through that forward). `prefill` and `decode` are the network
at T = the prompt and at T = 1.

Each forward runs the rows by the forward rule (forward.py) in eval, or by a kind's own ops (archcalc/layers/
decoding.py: attention and its cache update, Llama's rotary tables and RMSNorm, GPT-2's gelu_new and positions),
with transformers' Python variables for lifetimes (`Frames`). The cache is one storage per layer for the keys and
one for the values: a dynamic cache grows by torch.cat (the grown copy made while the old one is alive: the decode
step's moment of a layer's cache twice), a static one is preallocated at the first update.

The decode phase's peak is the larger of its first step's and its last step's: every tensor a step makes grows
with the cache or stays, but a sliding window's first step, which still holds the prefill's whole keys while it
makes the window's. The steps between are not run: the cache is set to the length the last step starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...layers import decoding
from ...layers.decoding import Cached, Frames, Mask
from .forward import EVAL, Frame, Pass, readers
from .parameters import param_tensors
from .program import Interpreter

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from ...core.num import Value
    from ...spec.generate import Generate
    from .peaks import Peak
    from .tape import Allocation


@dataclass(frozen=True)
class Generated:
    """The peaks of a generation: its prefill's and its decode steps'."""

    prefill: Peak
    decode: Peak


@dataclass
class Slot:
    """One attention layer's cache: its keys' and values' storages, the tokens they hold (`stored`), and the tokens
    the cache keeps seeing (`visible`: fewer with a sliding window, whose keys are a view of the last ones)."""

    keys: Allocation | None = None
    values: Allocation | None = None
    stored: int = 0
    visible: int = 0
    width: object = 0  # bytes per token and sample (of the keys, as of the values)
    window: int | None = None


class Decoding(Interpreter):
    """The interpreter of layers/decoding.py's programs: layers/events.py's events, and the cache's."""

    def __init__(self, tape, bytes_of, kind, cache, mask, **others):
        super().__init__(tape, bytes_of, kind, **others)
        self.handlers[Cached] = lambda e: cache(e, self.live)
        self.handlers[Mask] = lambda e: mask()


class Generation(Pass):
    """Greedy generation of a network with a KV cache (see the module's docstring): the state its forwards share."""

    def __init__(self, prefill: Network, decode: Network, settings: Generate, batch: Value | None):
        super().__init__(prefill, batch)
        self.decode_net, self.settings = decode, settings
        self.static = settings.cache == "static"
        self.tape.events = None  # no allocator replay
        self.slots: dict[str, Slot] = {}
        self.held: list[Allocation] = []  # what the model's body holds until it returns (before its output layer)
        self.token: Allocation | None = None  # the next token, [B, 1] int64
        self.out: Allocation | None = None  # the last decode step's logits, bound to the loop's `out`
        self.tokens = 0  # the new tokens of the forward running
        self.past = 0  # the tokens before them
        self.masked = False  # whether this forward built its causal mask
        windows = {kv.window for kv in (decoding.cache(row.layer, row.input) for row in prefill.rows) if kv is not None}
        self.window = next(iter(windows)) if len(windows) == 1 else None  # one window for all (generation.py checks)

    def run(self) -> Generated:
        tape, s = self.tape, self.settings
        self.before()
        tape.start("prefill")
        self.forward(self.net, s.prompt, 0)
        tape.start("decode")
        self.forward(self.decode_net, 1, s.prompt)
        if s.new_tokens > 1:
            self.skip(s.new_tokens - 2)
            self.forward(self.decode_net, 1, s.tokens - 1)
        return Generated(tape.peak("prefill"), tape.peak("decode"))

    def before(self) -> None:
        """Alive before the prefill: the parameters, the buffers, the prompt; a static cache's position counters."""
        tape, size = self.tape, self.size
        for row in self.rows:
            for n in param_tensors(row):
                tape.new(tape.size(n * size, 0), "parameters", mark=False)
            buffers = row.layer.buffer_bytes(row.input, size)
            if buffers != 0:
                tape.new(tape.size(buffers, 0), "buffers", mark=False)
        self.prompt = self.token = tape.new(tape.size(0, self.settings.prompt * 8), "batch", mark=False)  # the caller's
        for row in self.rows:  # StaticLayer.cumulative_length, tensor(0); a sliding window's, tensor(window)
            kv = decoding.cache(row.layer, row.input)
            if kv is not None and (self.static or kv.window is not None):
                tape.new(tape.size(8, 0), "kv cache", mark=False)

    def forward(self, net: Network, tokens: int, past: int) -> None:
        """One forward of `tokens` new tokens, then the loop's next token: the previous step's outputs let go as
        `out` is rebound, the last position's logits copied in float32, their argmax, the previous token let go.
        The prefill's outputs are deleted; a decode step's kept until the next forward returns."""
        tape, rows = self.tape, net.rows
        self.tokens, self.past, self.masked = tokens, past, False
        count = readers(rows, net.output_rows)
        x = self.token
        x.refs += count.get("input", 0)
        frame = self.frame = Frame(tape, {"input": x}, count)
        frames = Frames.of(net.rows, net.uses)
        first_use = min((use.first for use in net.uses), default=None)
        for row in rows:
            if row is rows[-1]:
                for s in self.held:
                    tape.release(s)
                self.held = []
            if row.index - 1 == first_use and not self.masked:
                self.mask()
            for name in frames.before.get(row.index, ()):
                frame.storage[name].refs += 1
            self.row(net, row)
            for name in frames.after.get(row.index, ()):
                frame.storage[name].refs += 1
            if row.layer.token_ids is not None:  # the embeddings: the model's local until its body returns
                frame.storage[row.name].refs += 1
                self.held.append(frame.storage[row.name])
            for name in frames.release.get(row.index, ()):
                tape.release(frame.storage[name])
        frame.drop_dead()
        logits = frame.storage[net.output_rows[0].name]
        if self.out is not None:  # `out = model(...)`: the previous step's outputs go once the forward returns
            tape.release(self.out)
        copy = tape.new(tape.size(0, net.output_rows[0].output[-1] * 4), "temporaries")
        token = tape.new(tape.size(0, 8), "batch")
        tape.release(copy)
        if self.token is not self.prompt:  # the loop's variable moves to the new token (the prompt stays the caller's)
            tape.release(self.token)
        if net is self.net:  # `del out` after the prefill
            tape.release(logits)
        self.out, self.token = (None if net is self.net else logits), token

    def row(self, net: Network, row: Row) -> None:
        frame, tape = self.frame, self.tape
        if row.layer.returns_input_in_eval or row.layer.is_view():
            self.view_row(row, frame)
            return
        if row in net.output_rows and self.settings.logits == "last" and len(row.output) == 2:
            ins = frame.inputs(row)  # the last position's hidden state, a view: its logits only
            out = tape.new(tape.size(0, row.output[-1] * self.size), "activations")
            frame.drop_dead()
            for s in ins:
                tape.release(s)
            frame.bind(row.name, out)
            return
        events = decoding.program(row.layer, row.input, self.tokens)
        if events is None:
            self.op_row(row, frame, EVAL, recorded=False)
            return
        ins = frame.inputs(row)
        run = Decoding(tape, self.bytes_of, "activations", lambda e, live: self.cached(row, e, live), self.mask,
                       x=ins[0], dead=frame.dead, held=self.held, others={f"x{i}": s for i, s in enumerate(ins[1:], 1)})
        live = run.run(events, {})
        frame.dead = None
        out = live.pop("out")
        for s in ins:
            tape.release(s)
        frame.bind(row.name, out)

    def cached(self, row: Row, e: Cached, live: dict) -> None:
        """Cache.update for `row`'s layer: a static cache's tensors made at the first update, the new positions
        written through an index (arange + the offset, freed as it returns); a dynamic cache's keys, then values,
        grown by torch.cat, the old storage freed once the new exists. A sliding window keeps a view of its last
        window − 1 tokens: its storage is the whole concatenation."""
        tape, slot = self.tape, self.slots.setdefault(row.name, Slot())
        slot.width = width = e.width * self.size
        slot.window = window = decoding.cache(row.layer, row.input).window
        if self.static:
            if slot.keys is None:
                length = self.settings.tokens if window is None else min(window, self.settings.tokens)
                slot.keys = tape.new(tape.size(0, length * width), "kv cache")
                slot.values = tape.new(tape.size(0, length * width), "kv cache")
            positions = [tape.new(tape.size(8 * self.tokens, 0), "temporaries") for _ in range(2)]
            for s in positions:
                tape.release(s)
        else:
            grown, old = slot.visible + self.tokens, (slot.keys, slot.values)
            if window is None:  # DynamicLayer: keys = cat(keys, new), then values
                for which, before in zip(("keys", "values"), old):
                    setattr(slot, which, tape.new(tape.size(0, grown * width), "kv cache"))
                    tape.release(before)
            else:  # DynamicSlidingWindowLayer: both concatenations, then the views of their last window − 1 kept
                slot.keys, slot.values = (tape.new(tape.size(0, grown * width), "kv cache") for _ in old)
                for before in old:
                    tape.release(before)
            slot.stored, slot.visible = grown, grown if window is None else min(grown, window - 1)
        for name in e.drop:
            tape.release(live.pop(name))

    def mask(self) -> None:
        """The causal mask, where SDPA cannot take is_causal instead (masking_utils' sdpa_mask): a static cache's
        decode step (its keys are the whole preallocated length), and a sliding window's forward once the keys it
        sees reach the window (a prefill of at least `window` tokens, a decode step once the cache holds window − 1).
        Its ops: the batch's and the heads' positions, the queries' (arange + the offset) and the keys', then the
        comparison kv ≤ q [1, 1, q, kv] (bool; a window's: (kv > q − window) & (kv ≤ q), through a bool scalar and
        q − window), held until the body returns."""
        self.masked = True
        tape, q, window = self.tape, self.tokens, self.window
        if self.static:
            kv, needed = self.settings.tokens, q == 1
        elif window is not None:
            kv = window - 1 + q if self.past >= window else self.past + q
            needed = kv >= window
        else:
            needed = False
        if not needed:
            return
        batch, heads = tape.new(tape.size(0, 8), "temporaries"), tape.new(tape.size(8, 0), "temporaries")
        arange = tape.new(tape.size(8 * q, 0), "temporaries")
        queries = tape.new(tape.size(8 * q, 0), "temporaries")
        tape.release(arange)
        arange = tape.new(tape.size(8 * kv, 0), "temporaries")
        keys = tape.new(tape.size(8 * kv, 0), "temporaries")
        tape.release(arange)
        square = tape.size(q * kv, 0)
        if window is None:
            mask = tape.new(square, "activations")
        else:
            one, shifted = tape.new(tape.size(1, 0), "temporaries"), tape.new(tape.size(8 * q, 0), "temporaries")
            after = tape.new(square, "temporaries")
            tape.release(shifted)
            inside = tape.new(square, "temporaries")
            tape.release(after)
            tape.release(one)
            before = tape.new(square, "temporaries")
            mask = tape.new(square, "activations")
            tape.release(before)
            tape.release(inside)
        self.held.append(mask)
        for s in (batch, heads, queries, keys):
            tape.release(s)

    def skip(self, steps: int) -> None:
        """The cache as `steps` more decode steps leave it (each one token longer; a window's view capped), set
        without running them: the storages remade at their lengths, no moment of it a candidate for the peak."""
        if self.static:
            return
        tape = self.tape
        for slot in self.slots.values():
            for _ in range(steps):
                slot.stored = slot.visible + 1
                slot.visible = slot.stored if slot.window is None else min(slot.stored, slot.window - 1)
            for which in ("keys", "values"):
                old = getattr(slot, which)
                setattr(slot, which, tape.new(tape.size(0, slot.stored * slot.width), "kv cache", mark=False))
                tape.release(old)
