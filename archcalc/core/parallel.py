"""Many GPUs: how a training step is laid out over processes (docs/design.md section 11: --gpus, --strategy, --tp).

A layout is `world` ranks, `tp` of which split each layer between them (tensor parallelism, Megatron's style), the
`world / tp` groups of those (`dp`) training on different samples under a data-parallel `strategy`. Here, in core,
because a Network carries its layout (analysis) and the memory model reads it (memory): one rank's step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import SpecError


class Strategy(StrEnum):
    """How the ranks share the work. `replicated`: every rank runs the whole step on its own samples, its gradients
    all-reduced in place (plain data parallelism: one process's memory per rank); `tp`: tensor parallelism within
    groups of `tp` ranks, the groups replicated; the others shard what the data-parallel groups hold."""

    replicated = "replicated"
    ddp = "ddp"
    zero1 = "zero1"
    fsdp = "fsdp"
    fsdp_no_reshard = "fsdp-no-reshard"
    tp = "tp"


@dataclass(frozen=True)
class Layout:
    """`world` ranks; `tp` of them split each layer; `strategy` across the `dp = world / tp` groups."""

    world: int
    strategy: Strategy
    tp: int = 1

    def __post_init__(self):
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        for name in ("world", "tp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"must be a whole number of GPUs, at least 1, got {value!r}"[:200], where=f"--{_flag(name)}")
        if self.world % self.tp:
            raise SpecError(f"--tp {self.tp} does not divide --gpus {self.world}",
                            "the ranks form groups of tp, the groups share the data: tp must divide the world size",
                            where="--tp")
        if self.strategy == Strategy.tp and self.tp == 1:
            raise SpecError("--strategy tp with --tp 1 splits no layer", "give --tp K (K >= 2), or --strategy replicated "
                            "for data parallelism alone", where="--tp")

    @property
    def dp(self) -> int:
        """The data-parallel groups: world / tp."""
        return self.world // self.tp

    @classmethod
    def of(cls, gpus: int | None = None, strategy: str | None = None, tp: int | None = None) -> Layout | None:
        """The layout the flags ask for, None for one process. `--strategy tp` without `--tp` splits over every GPU;
        `--tp K` without a strategy is `tp`; `--gpus N` alone is no layout yet (memory --budget lists those that fit)."""
        if strategy is None and tp is None:
            if gpus is not None:
                raise SpecError(f"--gpus {gpus} needs a layout: --strategy (and --tp)",
                                "memory --budget SIZE --gpus N lists the layouts that fit", where="--gpus")
            return None
        if strategy is not None and strategy not in Strategy.__members__.values():
            raise SpecError(f"unknown strategy {strategy!r}"[:200], f"one of {', '.join(Strategy)}", where="--strategy")
        strategy = Strategy(strategy or Strategy.tp)
        world = gpus if gpus is not None else tp if tp is not None else None
        if world is None:
            raise SpecError(f"--strategy {strategy} needs --gpus N (the world size)", where="--gpus")
        if tp is None:
            tp = world if strategy == Strategy.tp else 1
        return cls(world, strategy, tp)

    def to_dict(self) -> dict:
        """memory.parallel in JSON."""
        return {"gpus": self.world, "strategy": str(self.strategy), "tp": self.tp, "dp": self.dp}

    def __str__(self) -> str:
        parts = [str(self.strategy)] + ([f"tp {self.tp}"] if self.tp > 1 else []) + [f"dp {self.dp}"]
        return f"{', '.join(parts)} ({self.world} GPU{'s' if self.world > 1 else ''})"


def _flag(name: str) -> str:
    return "gpus" if name == "world" else name
