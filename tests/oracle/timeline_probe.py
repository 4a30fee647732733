"""The CPU oracle for the memory timeline: live tensor storages through a real training step.

A TorchDispatchMode sees every aten op (forward, autograd's backward ops, the optimizer's foreach
ops); each storage an op returns is counted once, by its identity, at its full `nbytes`, and a
weakref finalizer on the storage (whose Python object torch keeps alive exactly as long as the
storage itself) takes it off when it is freed. Storages alive before the step (parameters,
buffers, optimizer state, the batch, targets, last step's gradients) are counted at the start.
The high-water mark is read per phase, as `max_memory_allocated()` after
`reset_peak_memory_stats()` reads it on CUDA.

The step (archcalc/memory/timeline/ says the same): one warm-up step so that the optimizer's state
exists, then `zero_grad(set_to_none=True)`; forward and `cross_entropy(output, targets)` (phase
"forward"); `loss.backward()` ("backward"); `del loss`; `optimizer.step()` ("optimizer"), with
`foreach=True` (torch's default on CUDA; on the CPU torch would pick the for-loop version).
Only tests import this module.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

OPTIMIZERS = {
    "none": None,
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-5, foreach=True),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=1e-5, momentum=0.9, foreach=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-5, foreach=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-5, foreach=True),
}


class LiveStorages(TorchDispatchMode):
    """The bytes of live storages, and the highest total in each phase."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.total = 0
        self.phase = ""
        self.peaks: dict[str, int] = {}

    def track(self, t) -> None:
        if not isinstance(t, torch.Tensor):
            return
        s = t.untyped_storage()
        key = s._cdata
        if key in self.live:
            return
        self.live[key] = s.nbytes()
        self.total += s.nbytes()
        weakref.finalize(s, self._free, key)
        self._note("+", s.nbytes())

    def _free(self, key: int) -> None:
        size = self.live.pop(key)
        self.total -= size
        self._note("-", size)

    def _note(self, what: str, size: int) -> None:
        """Each change of the total ("+", "-" and its bytes): the phase's peak kept (a free never raises it)."""
        if self.phase:
            self.peaks[self.phase] = max(self.peaks[self.phase], self.total)

    def start(self, phase: str) -> None:
        self.phase = phase
        self.peaks[phase] = self.total

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.track(t)
        return out


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hugging Face's ForCausalLMLoss (transformers' loss_utils), labels = the input ids: the logits in float32,
    the labels padded by one ignore_index and shifted left (a contiguous copy), cross-entropy over [B·T, V]."""
    F = torch.nn.functional
    logits = logits.float()
    labels = F.pad(labels, (0, 1), value=-100)  # held, as transformers holds it, until the loss returns
    shifted = labels[..., 1:].contiguous()
    return F.cross_entropy(logits.view(-1, logits.size(-1)), shifted.view(-1), ignore_index=-100)


class SummedLosses:
    """Several outputs (a dict, [model] outputs): each one's loss against its target, added up, as archcalc's bench
    computes it (the outputs held until it returns)."""

    def __init__(self, function):
        self.function = function

    def __call__(self, ys: dict, targets: dict) -> torch.Tensor:
        parts = [self.function(y, targets[name]) for name, y in ys.items()]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total


def step_peaks(model: torch.nn.Module, x: torch.Tensor, optimizer: str = "sgd", seed: int = 0,
               autocast: torch.dtype | None = None, scaled: bool = False, loss: str = "classes",
               loss_of=None) -> dict[str, int]:
    """Each phase's peak of live storage bytes in the second training step of `model` on `x`; `autocast`:
    forward and loss under torch.autocast("cpu", dtype=autocast) (Lightning's bf16-mixed and 16-mixed); `scaled`:
    with float16, the step through torch.amp.GradScaler (scale(loss).backward(), scaler.step, scaler.update);
    `loss_of(model, x)`: the loss computed by the model itself (a language model's, labels = x), instead of
    `loss`, one of: "classes", cross-entropy against random classes on axis 1 (per pixel after it); "tokens", per
    token on the last axis of [B, T, V] (`cross_entropy(y.flatten(0, -2), t.flatten())`); "causal_lm",
    Hugging Face's causal LM loss on [B, T, V] with the input ids as labels (ForCausalLMLoss: padded by one
    ignore_index, shifted, a contiguous copy); "mse", the mean squared error against a random target of the
    output's shape."""
    torch.manual_seed(seed)
    model.train()
    criterion = None
    if loss_of is not None or loss == "causal_lm":
        targets = x
        criterion = causal_lm_loss
    else:
        with torch.no_grad():
            out = model(x)
        if isinstance(out, dict):  # several outputs: `loss` for each, summed
            function = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.cross_entropy
            targets = {name: torch.randn_like(y) if loss == "mse" else torch.randint(0, y.shape[1], (y.shape[0], *y.shape[2:]))
                       for name, y in out.items()}
            criterion = SummedLosses(function)
        elif loss == "mse":
            targets = torch.randn_like(out)
            criterion = torch.nn.functional.mse_loss
        elif loss == "tokens":
            targets = torch.randint(0, out.shape[-1], out.shape[:-1])
            criterion = lambda y, t: torch.nn.functional.cross_entropy(y.flatten(0, -2), t.flatten())
        else:
            targets = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]))
            criterion = torch.nn.functional.cross_entropy
        del out
    opt = OPTIMIZERS[optimizer](list(model.parameters())) if OPTIMIZERS[optimizer] else None

    # Lightning's 16-mixed: float16 autocast with a GradScaler (its scale and growth tracker made at the first step);
    # a scale of 1 here, so that no gradient overflows float16 and the step is never skipped (a skipped step, inf
    # found, makes no optimizer temporaries: not what is measured)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0) if scaled and autocast == torch.float16 and opt is not None else None

    def step(mode):
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            for p in model.parameters():
                p.grad = None
        mode.start("forward")
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            value = loss_of(model, x) if loss_of is not None else criterion(model(x), targets)
        mode.start("backward")
        (scaler.scale(value) if scaler else value).backward()
        del value
        mode.start("optimizer")
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        elif opt is not None:
            opt.step()
        mode.phase = ""

    step(LiveStorages())  # warm-up: the optimizer's state
    mode = LiveStorages()
    with mode:
        before = [*model.parameters(), *model.buffers(), x, *(targets.values() if isinstance(targets, dict) else [targets])]
        before += [p.grad for p in model.parameters() if p.grad is not None]
        if opt is not None:
            before += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        if scaler is not None:
            before += [scaler._scale, scaler._growth_tracker]
        for t in before:
            mode.track(t)
        del before, t  # no reference may outlive zero_grad
        step(mode)
    return dict(mode.peaks)


def inference_peak(model: torch.nn.Module, x: torch.Tensor, autocast: torch.dtype | None = None) -> int:
    """The peak of live storage bytes in one forward in eval mode under torch.inference_mode() (and
    torch.autocast("cpu", dtype=autocast), as bench runs it)."""
    model.eval()
    mode = LiveStorages()
    with mode:
        for t in [*model.parameters(), *model.buffers(), x]:
            mode.track(t)
        del t
        mode.start("inference")
        with torch.inference_mode(), torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out = model(x)
        del out
    return mode.peaks["inference"]
