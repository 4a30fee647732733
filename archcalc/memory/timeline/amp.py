"""Mixed precision (report.autocast: Lightning's bf16-mixed, 16-mixed) along the timeline.

The forward and the loss run under torch.autocast, each row in the dtype archcalc/core/autocast.py gives its
ops, with autocast's copies of inputs and weights, and their ToCopyBackward in backward; 16-mixed adds the
GradScaler's scalars. A layer with its own program (Layer.program: attention, gelu_new, parameter) runs it op
by op in autocast's dtypes (each op's name looked up in archcalc/core/autocast.py; its weight copies cached as
the generic rule's are); attention on CUDA is then SDPA's flash kernel (Attention._autocast_program).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core import autocast, num
from ...core.dtypes import DType
from ...layers.base import storage_bytes
from ...layers.events import Convert, New, Program
from .parameters import param_tensors
from .tape import Allocation, Tape

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from .peaks import Pair


def cast_weights(row: Row) -> tuple:
    """The element counts of the weights autocast copies for a row: its parameter tensors, and first the weight
    it shares with an earlier layer (GPT-2's lm_head casts the embedding's table)."""
    if row.layer.tie is None:
        return param_tensors(row)
    return (num.mul(row.layer.weight_shape(row.input)), *param_tensors(row))


@dataclass
class Cast:
    """What autocast does around one row's op in the forward pass (nothing without autocast)."""

    inputs: list  # per input: autocast's copy of it (an Allocation), or None
    kept: list  # low-precision weight copies the row's node keeps
    bytes_of: dict | None  # the bytes of each Storage kind, in the dtype the op computes in
    size: int  # bytes of an output element (0: the model's dtype)
    activation_size: Pair | None  # the activation's output, where it computes in another dtype


@dataclass
class RowCast:
    """How a row ran under autocast, for its backward."""

    compute: str  # the dtype the op computes in
    rule: str | None  # autocast's policy for it
    casts: tuple[bool, ...]  # per input: autocast copies it first
    inputs: tuple[str, ...]  # the inputs' dtypes
    low: int  # bytes of autocast's dtype
    size: int  # bytes of `compute`


class MixedPrecision:
    """Dtypes along the timeline under torch.autocast (archcalc/core/autocast.py); without it, every call is a no-op.

    Forward: an op of the "lower" or "float32" lists copies each input of another dtype first (the copy is
    kept if the node keeps that input, else freed when the op returns); a "lower" op copies its weights into
    autocast's cache (alive until the context exits after the loss, or until backward where the node keeps
    them). Backward: the node's gradients come in the dtype it computed in; each copy's ToCopyBackward then
    makes the gradient of the original (input copies first, then weight, then bias: the reverse of the order
    the copies were made), so the parameters' gradients end up float32."""

    def __init__(self, report: Network, tape: Tape, cuda: bool):
        self.low = str(report.autocast) if report.autocast is not None else None
        self.device = "cuda" if cuda else "cpu"
        self.tape, self.cuda = tape, cuda
        self.dtype: dict[str, str] = {"input": str(report.dtype)}
        self.rows: dict[int, RowCast] = {}  # by row index, the rows that ran by the generic rule under autocast
        self.cached: list[Allocation] = []
        self.passing: list[Allocation] = []  # weight copies not cached: freed when their op returns
        self.replayed: list[Allocation] = []  # weight copies made again by a checkpointed region's recomputation
        self.scaler = False

    def forward(self, row: Row, recorded: bool, cache: bool = True, replay: bool = False) -> Cast:
        """`cache`: the weight copies stay in autocast's cache (with gradients on; in inference_mode, measured, each
        is gone when its op returns, with the input copies). `replay`: a checkpointed row run again in backward
        (its dtypes known already; its weight copies cached until the recomputation ends)."""
        names = row.inputs
        if self.low is None:
            if not replay:
                self.dtype[row.name] = self.dtype["input"]
            return Cast([None] * len(names), [], None, 0, None)
        layer, tape = row.layer, self.tape
        dtypes = tuple(self.dtype[n] for n in names)
        compute, rule = autocast.compute_dtype(self.device, layer.autocast_ops(row.input), dtypes, self.low)
        flags = autocast.casts(rule, compute, dtypes)
        low, nbytes = DType(self.low).bytes, DType(compute).bytes
        kept = self._weight_copies(row, recorded, low, self.replayed if replay else self.cached if cache else self.passing) \
            if rule == autocast.LOWER else []
        copies = [tape.new(tape.size(0, num.mul(shape) * nbytes), "activations", mark=False) if flag else None
                  for flag, shape in zip(flags, row.shapes)]
        out, activation_size = compute, None
        if layer.activation:
            out, _ = autocast.compute_dtype(self.device, (layer.activation,), (compute,), self.low)
            activation_size = tape.size(0, num.mul(row.output) * DType(out).bytes)
        if not replay:
            self.dtype[row.name] = out
            self.rows[row.index] = RowCast(compute, rule, flags, dtypes, low, nbytes)
        bytes_of = storage_bytes(nbytes, self.cuda, DType(self.dtype["input"]).bytes)
        return Cast(copies, kept, bytes_of, nbytes, activation_size)

    def _weight_copies(self, row: Row, recorded: bool, low: int, into: list) -> list:
        """A "lower" op's copies of its weights, into autocast's cache (`into`); those its node keeps, returned."""
        keep = set(row.layer.autocast_kept_params(row.requires_grad)) if recorded else set()
        kept = []
        for i, n in enumerate(cast_weights(row)):
            copy = self.tape.new(self.tape.size(n * low, 0), "weight copies", mark=False)
            into.append(copy)
            if i in keep:
                copy.refs += 1
                kept.append(copy)
        return kept

    def view(self, row: Row) -> None:
        """A view is in its input's dtype."""
        self.dtype[row.name] = self.dtype[row.inputs[0]]

    def program(self, row: Row, inplace: bool) -> Program | None:
        """The row's Layer.program; under autocast the one it writes for autocast's dtypes (amp = (autocast's dtype,
        its input's dtype)), None where it has none (the generic rule runs). Sets the row's output dtype."""
        names = row.inputs
        if self.low is None:
            program = row.layer.program(row.input, row.requires_grad, self.device, inplace)
            if program is not None:
                self.forward(row, False)  # its dtype bookkeeping only
            return program
        program = row.layer.program(row.input, row.requires_grad, self.device, inplace, amp=(self.low, self.dtype[names[0]]))
        if program is not None:
            out = next(e for e in program.forward if isinstance(e, (New, Convert)) and e.name == "out")
            dtype = out.new if isinstance(out, Convert) else out.storage
            self.dtype[row.name] = self.dtype["input"] if dtype in ("model", "param") else dtype
        return program

    # Lightning's 16-mixed: float16 autocast with torch.amp.GradScaler (scale(loss).backward(), scaler.step(opt),
    # scaler.update()). Its float32 scalars, measured on the CPU oracle (tests/oracle/timeline_probe.py): the scale and the
    # growth tracker, alive from the first step (8 bytes in every phase); the scaled loss through backward (4); in
    # the step, 16 bytes of unscale_'s scalars (inverse scale, found-inf flags), 4 of them alive through opt.step().
    def scaler_state(self, report: Network) -> None:
        self.scaler = self.low == "float16" and str(report.optimizer) != "none"
        if self.scaler:
            for _ in range(2):
                self.tape.new(self.tape.size(4, 0), "optimizer state", mark=False)

    def scale(self) -> Allocation | None:
        return self.tape.new(self.tape.size(4, 0), "temporaries", mark=False) if self.scaler else None

    def unscale(self) -> Allocation | None:
        if not self.scaler:
            return None
        tape = self.tape
        found_inf = tape.new(tape.size(4, 0), "temporaries", mark=False)
        scalars = [tape.new(tape.size(4, 0), "temporaries", mark=False) for _ in range(3)]
        tape.mark()
        for s in scalars:
            tape.release(s)
        return found_inf

    def bytes(self, name: str, default: int) -> int:
        """Bytes of an element of the tensor `name` (and of its gradient)."""
        return DType(self.dtype[name]).bytes if self.low is not None and name in self.dtype else default

    def exit(self) -> None:
        for copy in self.cached:
            self.tape.release(copy)

    def end_replay(self) -> None:
        """A recomputation's autocast context ends: its weight copies go, but those a node keeps."""
        for s in self.replayed:
            self.tape.release(s)
        self.replayed.clear()

    def end_op(self) -> None:
        """An op returns in inference_mode: the weight copies it made without caching them go."""
        for s in self.passing:
            self.tape.release(s)
        self.passing.clear()

    def loss_input(self, output, name: str) -> Allocation | None:
        """cross_entropy under autocast (on autocast's float32 list): a float32 copy of low-precision logits."""
        if self.low is None or self.dtype[name] == "float32":
            return None
        return self.tape.new(self.tape.size(0, num.mul(output) * 4), "activations", mark=False)

    def loss_gradient(self, g: Allocation, output, name: str) -> Allocation:
        if self.low is None or self.dtype[name] == "float32":
            return g
        return self.convert(g, self.tape.size(0, num.mul(output) * DType(self.dtype[name]).bytes), "activation gradients")

    def convert(self, g: Allocation, size: Pair, kind: str) -> Allocation:
        """A copy of `g` in another dtype (ToCopyBackward, or the engine matching an input's dtype); `g` is dropped."""
        out = self.tape.new(size, kind)
        self.tape.release(g)
        return out

    def weight_grads(self, row: Row, info: RowCast | None) -> list | None:
        """The low-precision gradients of the weight copies a "lower" op made (None: its gradients are float32 already)."""
        if info is None or info.rule != autocast.LOWER:
            return None
        tape = self.tape
        return [(tape.new(tape.size(n * info.low, 0), "gradients", mark=False), n) for n in cast_weights(row)]

    def weights_to_float32(self, grads: list | None) -> None:
        """Each weight copy's ToCopyBackward, weight then bias: the float32 gradient, then the 16-bit one goes."""
        for g, n in grads or ():
            self.tape.new(self.tape.size(n * 4, 0), "gradients")
            self.tape.release(g)

    def promoted(self, info: RowCast, i: int, shape, entry: tuple) -> tuple:
        """An input of another dtype that the op took without a copy (type promotion): the engine casts its gradient."""
        name, g_in = entry[:2]
        if info.casts[i] or info.inputs[i] == info.compute:
            return entry
        size = self.tape.size(0, num.mul(shape) * DType(info.inputs[i]).bytes)
        return (name, self.convert(g_in, size, "activation gradients"), False, size)

    def copied(self, info: RowCast | None, row: Row, flags) -> dict:
        """The inputs whose gradient goes through a copy's ToCopyBackward: name -> its shape."""
        if info is None:
            return {}
        return {n: s for n, c, f, s in zip(row.inputs, info.casts, flags, row.shapes) if c and f}
