"""A parallel layout: how one training step is spread over GPUs (docs/design.md section 11, Parallelism).

    Layout(gpus=8, strategy=Strategy.fsdp)       # FSDP2 over 8 ranks, fully_shard per block, then the model
    Layout(gpus=8, strategy=Strategy.tp, tp=2)   # tensor parallel within pairs, the 4 pairs data parallel

`gpus` is the world size; `tp` the tensor-parallel degree inside one data-parallel group, so the data-parallel
degree is `dp = gpus // tp`. A strategy's own knobs are fields here too, named as torch names them, each with
torch's default: what a layout is, the memory timeline (archcalc/memory/timeline/ranks.py) turns into each rank's
step and JSON echoes as `memory.parallel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import SpecError

MiB = 2**20


class Strategy(StrEnum):
    """The `--strategy` names."""

    ddp = "ddp"  # DistributedDataParallel: every rank holds the whole model; gradients all-reduced in buckets
    zero1 = "zero1"  # DDP and torch's ZeroRedundancyOptimizer: the optimizer's state sharded across ranks
    fsdp = "fsdp"  # FSDP2 (fully_shard): parameters, gradients and state sharded; a unit gathered around its use
    fsdp_no_reshard = "fsdp-no-reshard"  # FSDP2 with reshard_after_forward=False: gathered from forward into backward
    tp = "tp"  # tensor parallel (Megatron's column- and row-parallel layers) within groups of `tp` ranks

    @property
    def data_parallel(self) -> str:
        """How the data-parallel groups keep the model: "replicated" (ddp, tp), "optimizer" (zero1), "sharded"."""
        return {"zero1": "optimizer", "fsdp": "sharded", "fsdp-no-reshard": "sharded"}.get(self.value, "replicated")


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A parallel layout (see the module). Checked once, when made: `Layout.of` makes one from the flags."""

    gpus: int = 1  # the world size
    strategy: Strategy = Strategy.ddp
    tp: int = 1  # tensor-parallel degree within a data-parallel group
    # DistributedDataParallel (ddp, zero1): bucket_cap_mb (25 MiB), the first bucket's cap (dist._DEFAULT_FIRST_BUCKET_BYTES),
    # gradient_as_bucket_view
    bucket_bytes: int = 25 * MiB
    first_bucket_bytes: int = MiB
    bucket_view: bool = False
    # FSDP2: the modules fully_shard wraps before the model (the root), as glob patterns on layer paths ("h.*"); None:
    # each use of the spec's blocks (the outermost, one per repetition: GPT-2's h.0, h.1, ...)
    units: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("gpus", "tp", "bucket_bytes", "first_bucket_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"must be a whole number of at least 1, got {value!r}", where=f"--{name.replace('_', '-')}")
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        if self.gpus % self.tp:
            raise SpecError(f"--tp {self.tp} does not divide --gpus {self.gpus}",
                            "the data-parallel degree is gpus / tp: give a tp that divides it", where="--tp")
        if self.strategy == Strategy.tp and self.tp == 1:
            object.__setattr__(self, "tp", self.gpus)  # --strategy tp alone: every rank in one tensor-parallel group
        if self.units is not None:
            object.__setattr__(self, "units", tuple(self.units))

    @classmethod
    def of(cls, gpus: int | None = None, strategy: str | None = None, tp: int | None = None, **knobs) -> Layout | None:
        """The layout the flags `--gpus N --strategy S [--tp K]` ask for; None without a strategy (one process)."""
        if strategy is None:
            if tp not in (None, 1):
                raise SpecError("--tp needs --strategy", "--strategy tp --tp 2, or a data-parallel strategy with it",
                                where="--tp")
            return None
        try:
            strategy = Strategy(strategy)
        except ValueError:
            raise SpecError(f"no strategy is named {strategy!r}", f"one of {', '.join(s.value for s in Strategy)}",
                            where="--strategy") from None
        return cls(gpus=1 if gpus is None else gpus, strategy=strategy, tp=1 if tp is None else tp, **knobs)

    @property
    def dp(self) -> int:
        """The data-parallel degree: how many replicas (or shards) of the model the batch is split over."""
        return self.gpus // self.tp

    @property
    def reshard_after_forward(self) -> bool:
        """FSDP2's reshard_after_forward for the units (the root's stays torch's: not resharded, as for training)."""
        return self.strategy == Strategy.fsdp

    def to_dict(self) -> dict:
        """`memory.parallel`: the layout, echoed (its strategy's knobs only)."""
        out: dict = {"gpus": self.gpus, "strategy": self.strategy.value, "tp": self.tp, "dp": self.dp}
        if self.strategy in (Strategy.ddp, Strategy.zero1):  # tp: its data-parallel groups all-reduce in place
            out |= {"bucket_bytes": self.bucket_bytes, "first_bucket_bytes": self.first_bucket_bytes,
                    "bucket_view": self.bucket_view}
        if self.strategy in (Strategy.fsdp, Strategy.fsdp_no_reshard):
            out |= {"units": None if self.units is None else list(self.units),
                    "reshard_after_forward": self.reshard_after_forward}
        return out
