"""What CUDA adds to a step: cuBLAS's and cuDNN's workspaces, and the caching allocator's blocks.

At a concrete batch the step's allocations and frees (the tape's events) are replayed through the caching
allocator (archcalc/memory/allocator.py, from c10/cuda/CUDACachingAllocator.cpp) over three steps, as the
recordings ran them: two warm-up steps (the first also makes the optimizer's state, in its optimizer phase),
then the step whose phase peaks are read. memory_allocated() counts blocks, not tensors: a large-pool block
that a cached block serves with at most 1 MiB to spare is handed out whole (should_split), so which tensors
carry slack depends on the blocks the earlier steps left. What the blocks hold beyond the tensors at a phase's
peak is the kind "block slack" (ViT-B/16 at batch 2: ~50 MB in the forward, its ~1.2 MB activations).
With B a symbol (and on the CPU) the peaks are the tensors' bytes, each block rounded up to 512 on CUDA.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from ...core import num
from .. import allocator
from .peaks import Peak

if TYPE_CHECKING:
    from ...analysis.network import Row
    from .tape import Tape

# CUDA's costs, from tests/fixtures/measurements/h200-training-memory.json (H200, torch 2.11):
CUBLAS_WORKSPACE = 32 * 2**20  # one per thread that runs matmuls, kept once allocated (fixed.after_free)
# Inside every phase's peak after a warm-up step: the forward thread's cuBLAS workspace, autograd's
# device thread's own, and 1 MiB more (LeNet-5: measured - simulated = 34,603,008 in every phase).
CUDA_WORKSPACE = 2 * CUBLAS_WORKSPACE + 2**20
CUDA_CONTEXT = 718077952  # driver and context, never in max_memory_allocated (fixed.device_used - fixed.reserved)
# cuDNN's workspace: each convolution's, during its op only (on top of what is alive then), as a share
# of that convolution's input bytes. Fitted on the recordings: AlexNet's last convolutions run when
# nearly every kept tensor is alive and set its forward and backward peaks (1.5 and 2.0 bring its
# cases within 0.2-1.6%); VGG-16-BN's and the ResNets' peaks fall where no convolution runs, and
# LeNet-5 stays exact (its workspaces come at its low points). A share of the largest convolution's
# input added on top of the phase's peak was 6% high on VGG-16-BN at batch 64.
CUDNN_WORKSPACE = {"forward": 1.5, "backward": 2.0}


def workspaces(tape: Tape) -> None:
    """Alive before the step: two cuBLAS workspaces and the rest (three blocks of the caching allocator)."""
    for part in (CUBLAS_WORKSPACE, CUBLAS_WORKSPACE, CUDA_WORKSPACE - 2 * CUBLAS_WORKSPACE):
        tape.new(tape.size(part, 0), "workspace", mark=False)


def cudnn_workspace(tape: Tape, row: Row, size: int, phase: str) -> None:
    """cuDNN's workspace for a convolution: allocated during its op, on top of what is alive then, and freed."""
    if tape.workspaces and row.macs != 0 and row.layer.windows(row.input):
        share = Fraction(CUDNN_WORKSPACE[phase]).limit_denominator(100)
        tape.transient(tape.size(0, share * num.mul(row.input) * size), "workspace")


def replayed(tape: Tape, phases: dict[str, Peak]) -> dict[str, Peak]:
    """Each phase's peak as memory_allocated() reads it in the third step (two warm-up steps first: the
    recordings' method), the step's allocations replayed through the caching allocator: a cached block too
    large by at most 1 MiB is handed out whole. What the blocks hold beyond the tensors at the peak is the
    kind "block slack" (beside the tensors alive at the timeline's own peak)."""
    if tape.events is None:
        return phases
    peaks = allocator.replay(tape.events)
    if peaks is None:  # no block of the large pool: the blocks are the tensors
        return phases
    out = {}
    for phase, peak in phases.items():
        best = max(peak.candidates, key=lambda c: c[0][0])
        slack = peaks[phase] - best[0][0]
        out[phase] = peak if slack <= 0 else Peak((((peaks[phase], 0), best[1] + (("block slack", (slack, 0)),)),))
    return out
