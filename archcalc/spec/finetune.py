"""The `[finetune]` table (and its flags): which layers train, LoRA's adapters, the frozen base's storage.

    [finetune]
    freeze = ["h.*"]                 # glob on layer paths ("*" freezes all); a pattern also freezes what is under it
    lora = { rank = 8, alpha = 16, dropout = 0.05, targets = ["c_attn"] }
    base_dtype = "nf4"               # float32 | bfloat16 | float16 | int8 | nf4 | fp4

Read here (types, names, ranges); applied to the layers by archcalc/analysis/finetune.py.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from fractions import Fraction

from ..core import untrusted
from ..core.errors import SpecError

KEYS = ("freeze", "lora", "base_dtype")
LORA_KEYS = ("rank", "alpha", "dropout", "targets")
BASE_DTYPES = ("float32", "bfloat16", "float16", "int8", "nf4", "fp4")
MAX_PATTERNS = 1000


@dataclass(frozen=True)
class Lora:
    """LoRA as peft's LoraConfig names it: r (rank), lora_alpha (scaling = alpha/rank), lora_dropout,
    target_modules (a target matches a layer path equal to it or ending in "." + it, as peft matches module names,
    or as a glob)."""

    rank: int
    alpha: int | Fraction = 8  # peft's default lora_alpha
    dropout: int | Fraction = 0
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finetune:
    """What trains: layers frozen by pattern, LoRA adapters (the whole base frozen, as peft freezes it), and the
    dtype the frozen base is stored in (None: the model's)."""

    freeze: tuple[str, ...] = ()
    lora: Lora | None = None
    base_dtype: str | None = None

    def __bool__(self) -> bool:
        return bool(self.freeze) or self.lora is not None or self.base_dtype not in (None, "float32")


def read(table: object, lines: dict[str, int] | None = None) -> Finetune:
    """The [finetune] table, read (an empty table: nothing frozen)."""
    lines = lines or {}
    if not isinstance(table, dict):
        raise SpecError(f"expected a table, got {_show(table)}", "write [finetune] on a line of its own", where="[finetune]")
    for key in table:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            raise SpecError(f"unknown key {_show(key)}", (f"did you mean {close[0]!r}? " if close else "") + f"valid: {', '.join(KEYS)}",
                            where="[finetune]", line=lines.get(key))
    place = {"where": "[finetune]"}
    freeze = _located(patterns, table.get("freeze", []), "freeze", lines, **place)
    lora = _located(read_lora, table["lora"], "lora", lines, **place) if "lora" in table else None
    base = _located(base_dtype, table["base_dtype"], "base_dtype", lines, **place) if "base_dtype" in table else None
    return Finetune(freeze, lora, base)


def patterns(raw: object) -> tuple[str, ...]:
    """A list of layer-path patterns (one string stands for a list of one)."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise SpecError(f"expected a list of layer-path patterns, got {_show(raw)}", 'for example ["h.*", "wte"]')
    if len(items) > MAX_PATTERNS:
        raise SpecError(f"{len(items):,} patterns: more than archcalc reads ({MAX_PATTERNS:,})")
    for item in items:
        if styled := untrusted.styled_problem(item):
            raise SpecError(f"{_show(item)} is not a pattern: {styled}")
        if untrusted.visible(item) != item or len(item) > 500:
            raise SpecError(f"{_show(item)} is not a pattern: printable text of at most 500 characters")
    return tuple(untrusted.name(item) for item in items)


def read_lora(raw: object) -> Lora:
    """lora = { rank = 8, alpha = 16, dropout = 0.05, targets = ["c_attn"] }."""
    if not isinstance(raw, dict):
        raise SpecError(f"expected a table, got {_show(raw)}", 'lora = { rank = 8, targets = ["c_attn"] }')
    for key in raw:
        if key not in LORA_KEYS:
            close = difflib.get_close_matches(str(key), LORA_KEYS, n=1)
            raise SpecError(f"lora has no key {_show(key)}", (f"did you mean {close[0]!r}? " if close else "")
                            + f"its keys: {', '.join(LORA_KEYS)}")
    if "rank" not in raw or "targets" not in raw:
        raise SpecError("lora needs a rank and targets", 'lora = { rank = 8, targets = ["c_attn"] } (peft\'s r and target_modules)')
    return lora(raw["rank"], raw.get("alpha", 8), raw.get("dropout", 0), raw["targets"])


def lora(rank: object, alpha: object = 8, dropout: object = 0, targets: object = ()) -> Lora:
    """A LoRA from its four values, checked (the flags' and the table's)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 1 << 20:
        raise SpecError(f"rank: expected a whole number of at least 1, got {_show(rank)}", "lora's rank, peft's r: 8 or 16")
    return Lora(rank, _number(alpha, "alpha", 0, None), _number(dropout, "dropout", 0, 1), patterns(targets) or _no_targets())


def _no_targets():
    raise SpecError("lora's targets are empty", 'name the layers to adapt: targets = ["c_attn"] (peft\'s target_modules)')


def _number(raw: object, name: str, low, high) -> int | Fraction:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw or raw in (float("inf"), float("-inf")):
        raise SpecError(f"{name}: expected a number, got {_show(raw)}")
    value = Fraction(repr(raw)) if isinstance(raw, float) else Fraction(raw)
    if value < low or (high is not None and value >= high):
        raise SpecError(f"{name}: must be " + (f"in [{low}, {high})" if high is not None else f"at least {low}") + f", got {raw}")
    return value.numerator if value.denominator == 1 else value


def base_dtype(raw: object) -> str:
    if not isinstance(raw, str) or raw not in BASE_DTYPES:
        close = difflib.get_close_matches(str(raw), BASE_DTYPES, n=1) if isinstance(raw, str) else []
        raise SpecError(f"unknown base_dtype {_show(raw)}; expected one of {', '.join(BASE_DTYPES)}",
                        f"did you mean {close[0]!r}?" if close else None)
    return raw


def merged(spec: Finetune | None, *, freeze=None, lora_rank=None, lora_alpha=None, lora_dropout=None, lora_targets=None,
           base_dtype_=None) -> Finetune | None:
    """The spec's [finetune] with what the flags (analyze's keywords) give instead; None where neither asks anything.
    A flag of LoRA's without a rank (or targets) takes the table's."""
    out = spec or Finetune()
    if freeze is not None:
        out = replace(out, freeze=_located(patterns, list(freeze) if not isinstance(freeze, str) else freeze, "--freeze"))
    given = dict(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, targets=lora_targets)  # LoRA's fields
    if any(value is not None for value in given.values()):
        base = out.lora
        values = dict(rank=base.rank if base else None, alpha=base.alpha if base else 8,
                      dropout=base.dropout if base else 0, targets=list(base.targets) if base else None)
        values |= {key: value for key, value in given.items() if value is not None}
        if isinstance(values["targets"], str):
            values["targets"] = [t for t in values["targets"].split(",") if t]
        elif isinstance(values["targets"], tuple):
            values["targets"] = list(values["targets"])
        if values["rank"] is None or values["targets"] is None:
            raise SpecError("LoRA needs a rank and targets", "give --lora-rank 8 --lora-targets c_attn (or [finetune] lora)",
                            where="--lora-rank" if values["rank"] is None else "--lora-targets")
        out = replace(out, lora=_located(lambda v: lora(**v), values, "--lora-rank"))
    if base_dtype_ is not None:
        out = replace(out, base_dtype=_located(base_dtype, base_dtype_, "--base-dtype"))
    return out if out or spec is not None else None


def _located(read, value, field: str, lines: dict | None = None, **place):
    try:
        return read(value)
    except SpecError as error:
        if field.startswith("--"):
            raise error.at(where=field) from None
        raise error.at(field=field, line=(lines or {}).get(field), **place) from None


def _show(raw: object) -> str:
    return untrusted.one_line(repr(raw)[:80])
