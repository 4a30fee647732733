"""Generation with a KV cache, as asked: a spec's [generate] table, or the flags --prompt, --new-tokens, --cache.

    [generate]
    prompt = 128          # tokens in the prompt: one forward over them fills the cache (the prefill)
    new_tokens = 64       # then one token at a time, each through the model once: the cache ends at prompt + new_tokens
    cache = "dynamic"     # transformers' DynamicCache (grown by torch.cat) or "static" (StaticCache, preallocated)
    logits = "last"       # the last position's logits only, as generate computes them; "all": every position's

The batch is the analysis's (--batch). What is computed from it: archcalc/memory/generation.py.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from ..core import untrusted
from ..core.errors import SpecError

CACHES = ("dynamic", "static")
LOGITS = ("last", "all")
KEYS = ("prompt", "new_tokens", "cache", "logits")
MOST = 2**24  # tokens: a prompt or a count of new tokens above this is a typo, not a context


@dataclass(frozen=True)
class Generate:
    """Greedy generation: a prompt of `prompt` tokens, then `new_tokens` decode steps of one token each."""

    prompt: int
    new_tokens: int
    cache: str = "dynamic"
    logits: str = "last"

    def __post_init__(self):
        for key in ("prompt", "new_tokens"):
            object.__setattr__(self, key, _tokens(getattr(self, key), key))
        for key, allowed in (("cache", CACHES), ("logits", LOGITS)):
            if getattr(self, key) not in allowed:
                raise SpecError(f"expected one of {', '.join(map(repr, allowed))}, got {untrusted.one_line(repr(getattr(self, key)))[:60]}",
                                None, key, "[generate]")

    @property
    def tokens(self) -> int:
        """The cache's length once every new token went through the model."""
        return self.prompt + self.new_tokens

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _tokens(raw: object, key: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(f"expected a whole number of tokens, got {untrusted.one_line(repr(raw))[:60]}", None, key, "[generate]")
    if not 1 <= raw <= MOST:
        raise SpecError(f"expected 1 to {MOST:,} tokens, got {raw:,}" if raw < MOST * 1000 else "expected at most 16,777,216 tokens",
                        "the prefill needs a token, and so does a decode step", key, "[generate]")
    return raw


def read(table: object, lines: dict | None = None) -> Generate:
    """A spec's [generate] table, as read by TOML."""
    lines = lines or {}
    if not isinstance(table, dict):
        raise SpecError("expected a table", "[generate] with prompt = 128 and new_tokens = 64", where="[generate]")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], KEYS, n=1)
        raise SpecError(f"unknown key {untrusted.one_line(repr(unknown[0]))[:60]}",
                        f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(KEYS)}",
                        where="[generate]", line=lines.get(unknown[0]))
    for key in ("prompt", "new_tokens"):
        if key not in table:
            raise SpecError(f"missing {key!r}", "[generate] needs prompt (tokens) and new_tokens (decode steps)", key, "[generate]")
    try:
        return Generate(**table)
    except SpecError as error:
        raise error.at(line=lines.get(error.field)) from None


def merged(stored: Generate | None, prompt: int | None = None, new_tokens: int | None = None,
           cache: str | None = None, logits: str | None = None) -> Generate | None:
    """The spec's [generate] table (`stored`) with what the command line gives over it; None when neither asks."""
    given = {k: v for k, v in (("prompt", prompt), ("new_tokens", new_tokens), ("cache", cache), ("logits", logits)) if v is not None}
    if stored is not None:
        return dataclasses.replace(stored, **given)
    if not given:
        return None
    missing = [flag for key, flag in (("prompt", "--prompt N"), ("new_tokens", "--new-tokens M")) if key not in given]
    if missing:
        raise SpecError(f"generation needs {' and '.join(missing)}", "--prompt 128 --new-tokens 64 (or a [generate] table)",
                        where="--prompt" if "prompt" not in given else "--new-tokens")
    return Generate(**given)
