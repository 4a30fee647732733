"""A training step's memory as a timeline: every tensor allocated and freed as PyTorch does it.

The step is the one `bench` times and the tests run on the CPU (tests/oracle/timeline_probe.py):

    optimizer.zero_grad(set_to_none=True)      # the previous step's gradients are freed
    loss = cross_entropy(model(x), targets)    # phase "forward" (the loss is part of it; see Loss)
    loss.backward()                            # phase "backward"
    del loss
    optimizer.step()                           # phase "optimizer": torch's foreach implementation

`x` (the batch) and `targets` (int64 classes, one per sample) are alive throughout, as are the
parameters, buffers and the optimizer's state. Each phase's peak is the highest total of live
storages (each storage counted once, whatever views share it), what the CPU oracle measures
through a TorchDispatchMode and what `torch.cuda.max_memory_allocated()` reads on CUDA after
`reset_peak_memory_stats()` before the phase. Liveness is by reference counts in execution order,
so it works on any DAG of rows.

The package, by what each module knows:
- step.py       Step: the training step as one object, a method per phase; `simulate`
- forward.py    the forward rule (a row's op, its own tensors, what its nodes keep), shared by every pass
- backward.py   the backward rule, and the gradient buffers (Gradients)
- rerun.py      activation checkpointing: its edges in forward, its rerun in backward (the forward rule again)
- inference.py  one forward in eval (the pass generation would extend)
- program.py    the interpreter of a layer's own ops (archcalc/layers/events.py)
- loss.py, optimizer.py, parameters.py   the step's policies: its loss, its optimizer, which parameters train
- amp.py        mixed precision (torch.autocast) along the timeline
- cuda.py       what CUDA adds: cuBLAS's and cuDNN's workspaces, the caching allocator's blocks
- tape.py, peaks.py   live storages and their running totals; the peaks they give
- ranks.py      each rank's step under a parallel layout (DDP, ZeRO-1, FSDP2, tp): a Step per rank; `simulate`
- tensor.py     tensor parallelism (Megatron's style): the network one rank of a tensor-parallel group runs

Where the next features go (none is built yet):
- fine-tuning: Step's `trained` policy (parameters.Trained: a frozen layer trains no tensor, LoRA only its
  adapters; the optimizer's state and the gradients follow it), and Pass._transients for what an op makes and
  frees around itself (a quantized base's dequantized weight; Backward._op_backward again for the input's gradient);
- generation: inference.Inference, the forward-only pass (prefill), a KV cache held across it, decode steps as
  a phase of their own on its tape;
- tensor parallelism within data-parallel strategies other than plain replication (tp × fsdp): tensor.shard's
  network under ranks.py's RankStep.
"""

from .amp import cast_weights
from .cuda import CUBLAS_WORKSPACE, CUDA_CONTEXT, CUDA_WORKSPACE, CUDNN_WORKSPACE
from .loss import Loss, loss_of
from .parameters import param_tensors
from .peaks import PHASES, Peak, Timeline
from .ranks import simulate
from .rerun import region_inputs
from .step import Step
from .tape import CUDA_BLOCK, KINDS

_cast_weights = cast_weights  # archcalc/memory/closed.py's name for it

__all__ = ["CUBLAS_WORKSPACE", "CUDA_BLOCK", "CUDA_CONTEXT", "CUDA_WORKSPACE", "CUDNN_WORKSPACE", "KINDS", "PHASES",
           "Loss", "Peak", "Step", "Timeline", "cast_weights", "loss_of", "param_tensors", "region_inputs", "simulate"]
