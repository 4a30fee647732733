"""One rank's training step under a layout (archcalc/core/parallel.py): the network it holds, its step, and what it
sends. Every rank of a tensor-parallel group holds and runs the same shards (heads and columns split evenly), so one
timeline stands for all of them; a data-parallel group's ranks run the same step on other samples.

A strategy is one entry of STEPS: a function from the network and its layout to the network one rank runs with
Step (archcalc/memory/timeline/step.py), the per-rank policies of the data-parallel strategies to come beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...core import num
from ...core.errors import SpecError
from ...core.parallel import Layout, Strategy
from .parameters import Trained, reaching
from .step import Step
from .tensor import all_reduce_bytes, shard

if TYPE_CHECKING:
    from ...analysis.network import Network
    from ...core.num import Value
    from .peaks import Timeline


def _tensor_parallel(net: Network, layout: Layout) -> Network:
    return shard(net, layout.tp) if layout.tp > 1 else net


# strategy -> the network one rank runs (tensor parallelism within its group, if any; the groups replicated)
STEPS: dict[Strategy, Callable[[Network, Layout], Network]] = {
    Strategy.replicated: _tensor_parallel,
    Strategy.tp: _tensor_parallel,
}


def rank_network(net: Network) -> Network:
    """The network one rank holds and runs (the network itself without a layout)."""
    layout = net.parallel
    if layout is None:
        return net
    if layout.strategy not in STEPS:
        raise SpecError(f"the memory per rank under --strategy {layout.strategy} is not modelled yet",
                        f"one of: {', '.join(str(s) for s in STEPS)}", where="--strategy", path=net.path)
    return STEPS[layout.strategy](net, layout)


def simulate(report: Network, batch: Value | None = None, inplace_sums: bool = True) -> Timeline:
    """The timeline of one training step of `report`'s network, of one rank's under its layout (step.simulate)."""
    return Step(rank_network(report), batch, inplace_sums).run()


def communication(net: Network) -> dict[str, tuple]:
    """The bytes one rank hands to each collective in a step, by collective, (fixed, per sample): the all-reduces of its
    tensor-parallel group (activations forward, input gradients backward) and of its data-parallel group (its
    parameters' gradients, in place, where the groups are replicated)."""
    layout = net.parallel
    if layout is None:
        return {}
    fixed, per_sample = all_reduce_bytes(net, layout.tp)
    if layout.dp > 1 and layout.strategy in (Strategy.replicated, Strategy.tp):
        rank = rank_network(net)
        size = rank.dtype.bytes
        trained = Trained(reaching(rank))  # the gradients a step makes
        fixed = num.normal(fixed + num.add(n for row in rank.rows for n in trained.tensors(row)) * size)
    return {"all_reduce": (fixed, per_sample)}
