"""Fine-tuning applied to a network's layers: each layer's `tuning` (archcalc/layers/tuning.py) from [finetune].

- `freeze` patterns freeze the layers whose path matches (fnmatch, `*` across dots; a pattern also freezes what
  is under it: "h.0" freezes h.0.attn). A layer tied to another's weight (GPT-2's lm_head) follows its owner.
- LoRA freezes the whole base, as peft's get_peft_model does (`freeze` then adds nothing), and puts an adapter
  beside each target: a dense layer, or an attention layer's projection (its torch name: in_proj, out_proj, or
  GPT-2's c_attn and c_proj for the same two; q_proj, k_proj, v_proj, o_proj in Llama's). A target matches as
  peft's target_modules do (the path itself, or its last segments: "c_attn" matches "h.0.attn.c_attn") or as a glob.
- base_dtype: bfloat16 and float16 are the model's dtype (parameters and compute: a base loaded in that dtype);
  float32 adapters beside them (peft's autocast_adapter_dtype). int8, nf4, fp4 quantize the frozen dense layers'
  and projections' weights (bitsandbytes), but a tied layer's and the model's output layer's, which transformers
  leaves in the model's dtype.
"""

from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase

from ..core import num
from ..core.dtypes import DType
from ..core.errors import SpecError
from ..layers import Layer
from ..layers.tuning import QUANTIZED, Adapter, Tuning
from ..spec.finetune import Finetune


def matches(path: str, pattern: str) -> bool:
    """A freeze pattern: the path, or what is under it, as a glob."""
    return fnmatchcase(path, pattern) or fnmatchcase(path, pattern + ".*")


def targets(path: str, target: str) -> bool:
    """A LoRA target, as peft matches target_modules (the whole name or its last dotted segments), or as a glob."""
    return path == target or path.endswith("." + target) or fnmatchcase(path, target)


class Plan:
    """[finetune] for one network: each layer adapted as it is made (`adapt`), then `check` that every pattern
    found a layer."""

    def __init__(self, finetune: Finetune, dtype: DType, outputs: tuple[str, ...], path: str | None):
        self.finetune, self.dtype, self.outputs, self.path = finetune, dtype, set(outputs), path
        self.frozen: set[str] = set()  # the layers whose own parameters are frozen
        self.used: set[str] = set()  # the patterns and targets that matched
        lora = finetune.lora
        sixteen = dtype in (DType.bfloat16, DType.float16)
        self.adapter = None if lora is None else Adapter(lora.rank, lora.alpha, lora.dropout,
                                                         "float32" if sixteen else "model")
        self.quantized = finetune.base_dtype if finetune.base_dtype in QUANTIZED else None

    def adapt(self, name: str, layer: Layer, x) -> Layer:
        """The layer as fine-tuned (itself where nothing changes)."""
        owner = layer.tie
        if owner is not None:  # one weight: frozen with its owner, whatever the patterns say of this layer
            frozen = owner in self.frozen
        elif self.adapter is not None:
            frozen = layer.param_tensors(x) != ()
        else:
            hits = [p for p in self.finetune.freeze if matches(name, p)]
            self.used.update(hits)
            frozen = bool(hits) and layer.param_tensors(x) != ()
        adapter = self._adapter(name, layer, x)
        if not frozen and adapter is None:
            return layer
        self.frozen.add(name)
        quantized = self.quantized if layer.quantized_weights(x) and owner is None and name not in self.outputs else None
        return _replace(layer, Tuning(True, adapter, quantized))

    def _adapter(self, name: str, layer: Layer, x) -> Adapter | None:
        if self.adapter is None:
            return None
        names = layer.lora_projections()
        if not names:  # a dense layer: its own path
            hits = [t for t in self.finetune.lora.targets if targets(name, t)]
            if hits and not layer.takes_lora:
                raise SpecError(f"LoRA's target {hits[0]!r} matches {name!r}, a {layer.kind} layer",
                                "LoRA adapts dense layers and attention's projections", "lora", where="[finetune]",
                                path=self.path)
            if hits and layer.tie is not None:
                raise SpecError(f"LoRA's target {hits[0]!r} matches {name!r}, whose weight is tied to {layer.tie!r}",
                                "adapt untied layers", "lora", where="[finetune]", path=self.path)
            self.used.update(hits)
            return self.adapter if hits else None
        chosen = []
        for torch_name, *aliases in names:
            hits = [t for t in self.finetune.lora.targets for n in (torch_name, *aliases) if targets(f"{name}.{n}", t)]
            self.used.update(hits)
            if hits:
                chosen.append(torch_name)
        return self.adapter._replace(projections=tuple(chosen)) if chosen else None

    def check(self) -> None:
        """Every freeze pattern and LoRA target matched a layer (a typo would silently train everything)."""
        lora = self.finetune.lora
        for pattern in (*(() if lora else self.finetune.freeze), *(lora.targets if lora else ())):
            if pattern not in self.used:
                what = "LoRA's target" if lora else "freeze pattern"
                raise SpecError(f"the {what} {pattern!r} matches no layer",
                                "patterns match layer paths (h.0.attn, h.*); LoRA's targets also their last segments "
                                "(c_attn) and attention's projections (in_proj, out_proj; GPT-2's c_attn, c_proj)",
                                "lora" if lora else "freeze", where="[finetune]", path=self.path)


def _replace(layer: Layer, tuning: Tuning) -> Layer:
    return dataclasses.replace(layer, tuning=tuning)


def dtype_of(finetune: Finetune | None, dtype: DType, given: str | None) -> DType:
    """The model's dtype under a 16-bit base_dtype (a base loaded in bfloat16 or float16): that dtype, unless --dtype
    says another."""
    base = finetune.base_dtype if finetune is not None else None
    if base not in ("bfloat16", "float16"):
        return dtype
    if given is not None and DType(given) != DType(base):
        raise SpecError(f"base_dtype {base} stores the model in {base}, but --dtype is {given}",
                        "give one of them", where="--base-dtype")
    return DType(base)


def trains(net) -> str:
    """What trains, in a line: LoRA's adapters (rank, alpha, dropout, where), the layers frozen, the base's storage."""
    finetune = net.finetune
    lora = finetune.lora
    frozen = [row for row in net.rows if row.layer.frozen and row.layer.tie is None]
    adapted = [row for row in net.rows if row.layer.adapter is not None]
    if lora is not None:
        where = ", ".join(dict.fromkeys(lora.targets))
        text = (f"LoRA r={lora.rank}, alpha {num.text(lora.alpha)}" + (f", dropout {num.text(lora.dropout)}" if lora.dropout else "")
                + f" on {where} ({len(adapted)} layer{'s' if len(adapted) != 1 else ''}); the base frozen")
    else:
        text = f"{len(frozen)} layer{'s' if len(frozen) != 1 else ''} frozen ({', '.join(finetune.freeze)})"
    base = finetune.base_dtype
    if base in QUANTIZED:
        text += f", stored as {base} (bitsandbytes)"
    elif base not in (None, "float32"):
        text += f", in {base}"
    return text
