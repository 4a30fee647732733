"""Measure a torch network the way docs/design.md section 3 defines the numbers: the oracle for the tests.

Only tests import this module (and only after pytest.importorskip("torch")).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# The tests run tiny tensors: one thread does each op in microseconds, where a pool of threads on a
# busy machine (CI, or helpers sharing two cores) took 70 ms per conv forward.
torch.set_num_threads(1)

# Each activation function of a spec as its torch module, written out here and not taken from
# archcalc's own table (archcalc.layers.ACTIVATIONS), so that the oracle stays independent of it.
ACTIVATIONS = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "relu6": nn.ReLU6, "hardtanh": nn.Hardtanh,
    "softplus": nn.Softplus, "mish": nn.Mish, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid,
    "softmax": lambda: nn.Softmax(dim=1), "log_softmax": lambda: nn.LogSoftmax(dim=1),
}


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps in a training forward, parameters and buffers excluded."""
    excluded = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    kept: dict[int, int] = {}
    alive = []  # keep every saved tensor alive so that no address is reused while we count

    def pack(t: torch.Tensor) -> None:
        alive.append(t)
        storage = t.untyped_storage()
        if storage.data_ptr() not in excluded:
            kept[storage.data_ptr()] = storage.nbytes()

    def unpack(_):
        raise AssertionError("saved_bytes runs no backward")

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = model(x)
    del out
    # Autograd's graph holds what pack returns and the hooks themselves: were pack to return the tensor (a ReLU
    # saves its own output), or `alive` to outlive this call, the graph would hold itself in a cycle through C++
    # that Python's collector cannot see, and leak with the model's parameters (1 GB per call on vgg16_bn).
    alive.clear()
    return sum(kept.values())


def flops(model: torch.nn.Module, x: torch.Tensor, backward: bool = False) -> int:
    """FlopCounterMode's total for a forward pass (and the backward of out.sum(), if asked)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops()


def torch_counts(report, quantity: str) -> int:
    """The total as FlopCounterMode counts it: archcalc's, but where a layer declares a known miscount of
    torch's (a grouped conv's weight gradient, counted `groups` times), that count."""
    total = 0
    for row in report.rows:
        quirk = row.layer.torch_counts(row.input, row.requires_grad).get(quantity)
        total += getattr(row, quantity) if quirk is None or quirk[0] is None else quirk[0]  # None: not comparable
    return total


class Permute(nn.Module):
    """x.permute(*dims) as a module (torch has no nn.Permute), for the oracle tests' chains."""

    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)
