"""Fine-tuning in the built module: peft's LoRA layer, and a frozen layer's own parameters without gradients.

`LoraLinear` is peft's `lora.Linear` (peft 0.21, tuners/lora/layer.py) as a plain module: the frozen projection as
`base_layer`, the adapters as `lora_A.default` and `lora_B.default` (ModuleDicts keyed by peft's adapter name), the
dropout as `lora_dropout.default`; so that the state_dict of a peft model, its `base_model.model.` prefix taken off
(`peft_model.get_base_model().state_dict()`), loads into `archcalc.torch.build` strictly. Its forward is peft's:
the base's output plus lora_B(lora_A(dropout(x))) · alpha/rank, the input cast to the adapters' dtype and the sum
back to the base's.
"""

from __future__ import annotations

from torch import nn


class LoraLinear(nn.Module):
    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.ModuleDict({"default": nn.Dropout(dropout) if dropout > 0 else nn.Identity()})
        self.lora_A = nn.ModuleDict({"default": nn.Linear(base_layer.in_features, rank, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(rank, base_layer.out_features, bias=False)})
        nn.init.zeros_(self.lora_B["default"].weight)  # peft's: the adapted layer starts as the base
        self.rank, self.alpha, self.dropout, self.scaling = rank, alpha, dropout, alpha / rank
        base_layer.requires_grad_(False)

    def forward(self, x):
        result = self.base_layer(x)
        dtype = result.dtype
        lora_a = self.lora_A["default"]
        x = x.to(lora_a.weight.dtype)
        result = result + self.lora_B["default"](lora_a(self.lora_dropout["default"](x))) * self.scaling
        return result.to(dtype)

    def extra_repr(self) -> str:
        return f"rank={self.lora_A['default'].out_features}, scaling={self.scaling}"


def frozen(module: nn.Module, layer) -> nn.Module:
    """The module of a layer whose own parameters are frozen (fine-tuning): none of them requires grad; LoRA's
    adapters still do."""
    if layer.frozen:
        for name, parameter in module.named_parameters():
            if ".lora_A." not in f".{name}" and ".lora_B." not in f".{name}":
                parameter.requires_grad_(False)
    return module
