"""Generation with a KV cache in bytes: the prefill's and the decode steps' peaks (the timeline's,
archcalc/memory/timeline/generate.py), the cache's closed form, and the largest batch or prompt a budget holds.

The cache, at the end of the generation, per attention layer: keys and values of kv_heads·head_dim values per token
and sample, for every token once every new token went through the model,

    2 × layers × B × kv_heads × head_dim × (prompt + new_tokens) × bytes,

a static cache from the first update on; a sliding window of w keeps at most w of them (a dynamic cache's
concatenation holds w once the window is full: the last w − 1 and the new one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import num
from ..core.errors import SpecError
from ..core.num import Dim, Value
from ..layers import decoding
from .perbatch import PerBatch
from .timeline.generate import Generation as Simulated
from .timeline.peaks import hull

if TYPE_CHECKING:
    from ..analysis.network import Network
    from ..spec.generate import Generate
    from .timeline.generate import Generated
    from .timeline.peaks import Peak


@dataclass(frozen=True)
class Peaks:
    """A peak of the generation (a phase's, or the higher of the two: `phases`): the largest of affine functions of B."""

    phases: tuple[Peak, ...]

    def at(self, batch: Value | None) -> Value:
        if batch is None:
            b = num.symbol("B")
            return num.maximum(*(num.normal(p.fixed + p.per_sample * b) for p in self.pieces))
        return num.maximum(*(peak.at(batch) for peak in self.phases))

    @property
    def pieces(self) -> tuple[PerBatch, ...]:
        """The affine functions of B whose largest is the peak (those highest somewhere on B >= 1)."""
        pairs = list(dict.fromkeys(pair for peak in self.phases for pair in peak.pairs))
        lines = [(a, ()) for a in pairs if not any(b != a and _above(b, a) for b in pairs)]
        hull(lines)
        return tuple(PerBatch(f, p) for (f, p), _ in lines)

    def alive(self, batch: Value) -> dict[str, Value]:
        """What is alive at the peak for a concrete batch, by kind."""
        return max(self.phases, key=lambda peak: peak.at(batch)).alive(batch)


@dataclass(frozen=True)
class Generation:
    """A generation's memory: its settings, its phases' peaks (formulas in B until B is given), the cache's bytes."""

    settings: Generate
    timeline: Generated
    kv_cache: PerBatch
    window: Dim | None = None  # the attention layers' sliding window, where they have one: the tokens the cache keeps

    @property
    def prefill(self) -> Peaks:
        return Peaks((self.timeline.prefill,))

    @property
    def decode(self) -> Peaks:
        return Peaks((self.timeline.decode,))

    @property
    def peak(self) -> Peaks:
        return Peaks((self.timeline.prefill, self.timeline.decode))

    def phase(self, batch: Value) -> str | None:
        """The phase that sets the peak at a concrete batch (the prefill on a tie); None while sizes are formulas."""
        prefill, decode = self.prefill.at(batch), self.decode.at(batch)
        if not (num.is_concrete(prefill) and num.is_concrete(decode)):
            return None
        return "prefill" if prefill >= decode else "decode"

    def to_dict(self, batch: Value | None) -> dict:
        """memory.generation in JSON (docs/design.md section 11), and the settings it was asked with."""
        return {
            "prefill_peak_bytes": num.to_json(self.prefill.at(batch)),
            "decode_peak_bytes": num.to_json(self.decode.at(batch)),
            "kv_cache_bytes": num.to_json(self.kv_cache.at(batch)),
            "peak_bytes": num.to_json(self.peak.at(batch)),
            "peak_phase": None if batch is None else self.phase(batch),
            **self.settings.to_dict(),
        }


def _above(a: tuple, b: tuple) -> bool:
    """Whether the line a is at least as high as b for every B >= 1 (as far as numbers tell)."""
    return all(num.is_concrete(x) for x in (*a, *b)) and a[0] >= b[0] and a[1] >= b[1]


def caches(net: Network) -> list[decoding.KV]:
    """What each layer keeps in the cache, for those that keep some."""
    return [kv for kv in (decoding.cache(row.layer, row.input) for row in net.rows) if kv is not None]


def kv_cache(net: Network, settings: Generate) -> PerBatch:
    """The cache's bytes once the generation ends (see the module's docstring)."""
    total: Dim = 0
    for kv in caches(net):
        tokens = settings.tokens if kv.window is None else min(settings.tokens, kv.window)
        total += 2 * kv.width * tokens
    return PerBatch(per_sample=num.normal(total * net.dtype.bytes))


def measure(prefill: Network, decode: Network, settings: Generate) -> Generation:
    """The memory of generating with `settings` from the network at T = the prompt (`prefill`) and at T = 1."""
    usable(prefill, settings)
    window = next((kv.window for kv in caches(prefill)), None)  # one for all, or none (usable checks)
    return Generation(settings, Simulated(prefill, decode, settings, None).run(), kv_cache(prefill, settings), window)


def usable(net: Network, settings: Generate) -> None:
    """Refuse what the generation timeline does not model, saying what."""
    kvs = caches(net)
    if not kvs or not all(kv.causal for kv in kvs):
        raise SpecError("generation needs causal attention layers: each new token attends to the cache of those before",
                        "a decoder: attention with causal = true", where="[generate]", path=net.path)
    if any(kv.module == "multihead" for kv in kvs):
        raise SpecError("module = \"multihead\" (nn.MultiheadAttention) keeps no cache",
                        "transformers' attention: module = \"split\" (GPT-2) or \"llama\"", where="[generate]", path=net.path)
    if any(kv.window is not None for kv in kvs) and settings.cache == "static":
        raise SpecError("a static cache with a sliding window (its roll once full) is not modelled", "--cache dynamic",
                        where="[generate]", path=net.path)
    if len({kv.window for kv in kvs}) > 1:
        raise SpecError("attention layers with different windows (or some without) are not modelled",
                        "one window for every attention layer, or none", where="[generate]", path=net.path)
    if net.autocast is not None:
        raise SpecError("generation under autocast is not modelled", "a dtype: --dtype bfloat16", where="[generate]", path=net.path)
    if len(net.output_rows) != 1:
        raise SpecError("generation reads one output, the logits", where="[generate]", path=net.path)


@dataclass(frozen=True)
class Fit:
    """The largest batch, or prompt (`solving`), whose generation fits a budget; `value` None: not even 1 fits."""

    solving: str  # "batch" or "prompt"
    value: Value | None
    budget: int
    usable: int  # the budget less the CUDA context, for a card's memory
    report: Network  # at the answer (at 1 where nothing fits): its batch is the batch the generation runs at


def largest_batch(generation: Generation, budget: int) -> Value | None:
    """The largest whole B whose generation peak fits `budget` bytes (None: not even 1), min_i ⌊(budget − fixed_i) / per_sample_i⌋."""
    pieces = generation.peak.pieces
    bounds = [num.floordiv(budget - p.fixed, p.per_sample) for p in pieces if p.per_sample != 0]
    if any(p.per_sample == 0 and num.is_concrete(p.fixed) and p.fixed > budget for p in pieces):
        return None
    if not bounds:
        raise SpecError("the generation's memory does not grow with the batch: every batch fits or none does", where="--budget")
    batch = num.minimum(*bounds, evaluate=False)
    if num.is_concrete(batch) and batch < 1:
        return None
    return batch


def largest_prompt(measure_at, budget: int, limit: int = 2**24) -> tuple[int | None, object]:
    """The largest prompt whose generation at the batch fits `budget`: doubling then bisection on `measure_at(P)`,
    (the peak at P, anything to keep; a peak of None: that prompt cannot run); (None, None) when not even 1 fits.
    The peak grows with the prompt."""
    def fits(prompt: int):
        peak, kept = measure_at(prompt)
        return kept if peak is not None and peak <= budget else None
    best = fits(1)
    if best is None:
        return None, None
    low, high = 1, 2
    while high <= limit and (found := fits(high)) is not None:
        low, best, high = high, found, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        found = fits(middle)
        if found is not None:
            low, best = middle, found
        else:
            high = middle
    return low, best
