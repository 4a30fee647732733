"""Recognisers of typical mistakes: each small function redoes the computation the wrong way and,
when the wrong claim matches that result, says what went wrong.

A recogniser takes the claimed value and a Context, and returns a hint or None. `recognise`
tries them in the order of MISTAKES and gives the first hint: the nearest likely mistake.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from ..analysis import receptive
from ..core import fmt, num
from ..core.dtypes import DType, Optimizer
from ..core.errors import SpecError
from ..report import Report, Row, analyze
from ..spec.read import Spec
from .claim_keys import AXES, Key
from .claim_values import Claimed, Dims, Tolerance, equal
from .truth import value


@dataclass(frozen=True)
class Context:
    report: Report  # at the claim's qualifiers (batch, dtype, optimizer, device)
    key: Key
    actual: object
    env: dict
    within: Tolerance | None = None  # the instructor's tolerance: a wrong way's result is matched as the answer is
    spec: Spec | None = None  # the spec analysed, for a mistake that redoes the whole network (another input size)

    @property
    def row(self) -> Row | None:
        return self.key.rows(self.report)[0] if self.key.scope == "layer" else None

    def rows(self) -> list[Row]:
        return list(self.key.rows(self.report))

    def total(self, quantity: str):
        return num.add(getattr(row, quantity) for row in self.rows())


def _holds(claim: Claimed, value, context: Context) -> bool:
    """Whether the claim matches `value`, a wrong way's result (made normal here: the recognisers need not)."""
    value = num.shape(value) if isinstance(value, tuple) else num.normal(value)
    try:
        return claim.holds(value, context.env, context.within) is True
    except (SpecError, TypeError, ValueError):
        return False


def _applies(row: Row, recogniser) -> bool:
    """Whether a recogniser of one kind's formula applies to this row: its layer class lists it in `mistakes`."""
    return recogniser.__name__ in row.layer.mistakes


def _is(context: Context, quantities: tuple[str, ...], scopes=("layer", "type", "total")) -> bool:
    return context.key.scope in scopes and context.key.quantity in quantities


# Shapes --------------------------------------------------------------------------------------------

def batch_axis(claim, context):
    """[32, 96, 55, 55] for [96, 55, 55]: the batch axis written in."""
    if isinstance(claim, Dims) and isinstance(context.actual, tuple) and len(claim.dims) == len(context.actual) + 1:
        rest = dataclasses.replace(claim, dims=claim.dims[1:])
        if rest.holds(context.actual, context.env, context.within):
            return "the batch axis is written in: archcalc's shapes are one sample's, [C, H, W] without B"
    return None


def axes_permuted(claim, context):
    """[27, 96, 27] for [96, 27, 27]: the right sizes in an order that is neither channels first nor channels last
    (those two are read as right), or "27²×96"-style claims whose channels sit among the spatial sizes."""
    actual = context.actual
    if not (isinstance(claim, Dims) and isinstance(actual, tuple) and 1 < len(actual) <= 4):
        return None
    for order in itertools.permutations(range(len(actual))):
        wrong = tuple(actual[i] for i in order)
        if wrong != actual and _holds(claim, wrong, context):
            return (f"the right sizes in another order: archcalc writes a shape channels first, [C, H, W] as PyTorch does "
                    f"({fmt.shape(actual)}), and reads channels last ([H, W, C]) too")
    return None


def input_channels(claim, context):
    """A conv's output with its input's channels: conv2 as 27²×96 instead of 27²×256."""
    row = context.row
    if _is(context, ("output",)) and _applies(row, input_channels) and row.input[0] != row.output[0]:
        if _holds(claim, (row.input[0], *row.output[1:]), context):
            return (f"the output channels taken for the input's: {fmt.group(row.input[0])} channels go into {row.name}, "
                    f"out_channels = {fmt.group(row.output[0])} come out (one per filter)")
    return None


def stale_channels(claim, context):
    """The right spatial size with the channels of an earlier layer: pool2 as 13²×96 instead of 13²×256."""
    row = context.row
    if not _is(context, ("output",)) or len(row.output) < 2:
        return None
    for earlier in reversed(context.report.rows[:row.index - 1]):
        channels = earlier.output[0] if len(earlier.output) > 1 else None
        if channels == row.input[0] and _applies(row, input_channels):
            continue  # the layer's own input channels: input_channels names that
        if channels is not None and channels != row.output[0] and _holds(claim, (channels, *row.output[1:]), context):
            keeps = f" ({row.layer.channels_hint})" if row.layer.channels_hint else ""
            return (f"{fmt.group(channels)} channels is {earlier.name}'s output: {row.name} outputs "
                    f"{fmt.group(row.output[0])} channels{keeps}")
    return None


def not_flattened(claim, context):
    """[16, 5, 5] for flatten's [400]: the values are right, the axes are one."""
    actual = context.actual
    if isinstance(claim, Dims) and isinstance(actual, tuple) and len(actual) == 1 and len(claim.dims) > 1:
        if equal(num.mul(claim.evaluate(context.env)), actual[0]):
            return f"the same {fmt.group(actual[0])} values, but in one axis: the output is flat, [{fmt.group(actual[0])}]"
    return None


def _wrong_window(claim, context, applies, change, hint):
    """A sliding layer's output with every axis's window computed the wrong way (`change(window) -> size`)."""
    if not _is(context, ("output",)):
        return None
    row = context.row
    ws = row.layer.windows(row.input)  # () for a layer without a sliding window
    if any(w.same for w in ws) or not any(applies(w) for w in ws):
        return None
    try:
        wrong = (row.output[0], *(change(w) for w in ws))
    except SpecError:  # the wrong way leaves no room for the kernel
        return None
    if wrong != row.output and _holds(claim, wrong, context):
        return hint(ws[0])
    return None


def plus_one_forgotten(claim, context):
    """⌊(n + 2p − k)/s⌋ without its + 1: the first position of the window not counted."""
    return _wrong_window(
        claim, context, lambda w: True, lambda w: w.out() - 1,
        lambda w: ("the + 1 forgotten: the output size is ⌊(n + 2p − k)/s⌋ + 1, the first position of the window "
                   f"counts too: {w.formula()}"),
    )


def padding_once(claim, context):
    """⌊(n + p − k)/s⌋ + 1: the padding added on one side only (the notes print 27+2^2-5 for 27 + 2·2 − 5)."""
    return _wrong_window(
        claim, context, lambda w: w.p != 0, lambda w: dataclasses.replace(w, n=w.n - w.p).out(),
        lambda w: f"padding counted once: it is added on both sides, n + 2p = {fmt.group(w.n)} + 2·{fmt.group(w.p)}",
    )


def padding_forgotten(claim, context):
    return _wrong_window(
        claim, context, lambda w: w.p != 0, lambda w: dataclasses.replace(w, p=0).out(),
        lambda w: f"padding forgotten: the input is padded by {fmt.group(w.p)} on each side before the kernel slides",
    )


def stride_forgotten(claim, context):
    return _wrong_window(
        claim, context, lambda w: w.s != 1, lambda w: dataclasses.replace(w, s=1).out(),
        lambda w: f"stride forgotten: the kernel moves {fmt.group(w.s)} at a time, so divide by the stride",
    )


def rounded_up(claim, context):
    """⌈·⌉ where the rule rounds down (or the reverse, with ceil_mode)."""
    def change(w):
        return num.floordiv(w.room, w.s) + 1 if w.ceil_mode else num.ceildiv(w.room, w.s) + 1

    return _wrong_window(
        claim, context, lambda w: num.is_concrete(w.room) and w.room % w.s != 0, change,
        lambda w: ("rounded down, but ceil_mode rounds up" if w.ceil_mode
                   else "rounded up: the output size rounds down, ⌊(n + 2p − k)/s⌋ + 1 (PyTorch's floor)"),
    )


# Parameters ----------------------------------------------------------------------------------------

def biases_forgotten(claim, context):
    if _is(context, ("params",)) and context.total("biases") != 0 and _holds(claim, context.total("weights"), context):
        return f"the weights only: the {fmt.group(context.total('biases'))} biases are missing (params = weights + biases)"
    return None


def biases_added(claim, context):
    if _is(context, ("weights",)) and context.total("biases") != 0 and _holds(claim, context.total("params"), context):
        return f"the {fmt.group(context.total('biases'))} biases are counted too: weights leave them out"
    return None


def bias_per_input(claim, context):
    """A dense layer with one bias per input feature: 9,216 biases for fc1 instead of 4,096."""
    row = context.row
    if not (_is(context, ("biases", "params"), ("layer",)) and _applies(row, bias_per_input) and row.biases != 0):
        return None
    wrong = row.input[0] if context.key.quantity == "biases" else row.weights + row.input[0]
    if row.input[0] != row.output[0] and _holds(claim, wrong, context):
        return f"one bias per output (out_features = {fmt.group(row.output[0])}), not per input ({fmt.group(row.input[0])})"
    return None


def input_channels_forgotten(claim, context):
    """C_out·k² instead of C_out·C_in·k²: a filter spans every input channel."""
    row = context.row
    if not (_is(context, ("weights", "params"), ("layer",)) and _applies(row, input_channels_forgotten)) or row.input[0] == 1:
        return None
    wrong = row.output[0] * num.mul(row.layer.kernel(row.input))
    if context.key.quantity == "params":
        wrong = wrong + row.biases
    if _holds(claim, wrong, context):
        return (f"the input channels are missing: each filter spans all C_in = {fmt.group(row.input[0])} input channels, "
                "weights = C_out·C_in·kernel")
    return None


def kernel_not_squared(claim, context):
    """C_out·C_in·k instead of C_out·C_in·k²."""
    row = context.row
    if not (_is(context, ("weights", "params"), ("layer",)) and _applies(row, kernel_not_squared)):
        return None
    kernel = row.layer.kernel(row.input)
    if len(kernel) < 2 or kernel[0] == 1:
        return None
    wrong = num.div(row.weights, num.mul(kernel[1:]))
    if context.key.quantity == "params":
        wrong = wrong + row.biases
    if _holds(claim, wrong, context):
        return f"the kernel is {fmt.kernel(kernel)} = {fmt.group(num.mul(kernel))} weights per input channel, not {fmt.group(kernel[0])}"
    return None


def layer_left_out(claim, context):
    """A sum (a total, a layer type's) with one layer missing."""
    quantity = context.key.quantity
    if context.key.scope not in ("total", "type") or quantity == "share":
        return None
    for row in context.rows():
        part = getattr(row, quantity)
        if part != 0 and _holds(claim, context.actual - part, context):
            return f"{row.name}'s {fmt.group(part)} {quantity} are missing from the sum"
    return None


def share_as_fraction(claim, context):
    if context.key.quantity == "share" and num.is_concrete(context.actual) and _holds(claim, context.actual / 100, context):
        return f"a fraction, not a percentage: {float(context.actual) / 100:.3f} is {float(context.actual):.1f}%"
    return None


# FLOPs ---------------------------------------------------------------------------------------------

def macs_for_flops(claim, context):
    if _is(context, ("flops",)) and context.total("macs") != 0 and _holds(claim, context.total("macs"), context):
        return "that is the number of multiply-accumulates: FLOPs = 2 × MACs (a multiply and an add)"
    return None


def flops_for_macs(claim, context):
    if _is(context, ("macs",)) and context.total("macs") != 0 and _holds(claim, context.total("flops"), context):
        return "that is the number of FLOPs: MACs = FLOPs / 2 (each multiply-accumulate is 2 FLOPs)"
    return None


def forward_only(claim, context):
    if _is(context, ("training_flops",)) and context.total("macs") != 0 and _holds(claim, context.total("flops"), context):
        return "the forward FLOPs only: a training step adds the backward pass (gradients of the weights and of the input)"
    return None


# Batch and memory ----------------------------------------------------------------------------------

def whole_batch(claim, context):
    """A per-sample quantity multiplied by the batch size (when B is known)."""
    batch = context.report.batch
    if context.key.scope == "memory" or batch is None or not num.is_concrete(batch) or batch == 1:
        return None
    if context.key.quantity in ("share", *AXES) or isinstance(claim, Dims):
        return None
    actual = num.mul(context.actual) if isinstance(context.actual, tuple) else context.actual
    if _holds(claim, actual * batch, context):
        return f"counted for the whole batch of {fmt.group(batch)}: {context.key.quantity} is per sample"
    return None


def _memory(context: Context, **changes):
    return dataclasses.replace(context.report, **changes).memory.value(context.key.quantity)


def one_sample(claim, context):
    batch = context.report.batch
    if context.key.scope != "memory" or batch is None or batch == 1:
        return None
    if _memory(context, batch=1) != context.actual and _holds(claim, _memory(context, batch=1), context):
        return f"for one sample: the batch of {fmt.group(batch)} multiplies everything kept per sample"
    return None


def bits_for_bytes(claim, context):
    if context.key.scope == "memory" and context.actual != 0 and _holds(claim, 8 * context.actual, context):
        size = context.report.dtype.bytes
        return f"bits, not bytes: a {context.report.dtype} value is {size} bytes = {8 * size} bits"
    return None


def dtype_size(claim, context):
    if context.key.scope != "memory":
        return None
    for dtype in DType:
        if dtype.bytes != context.report.dtype.bytes and _holds(claim, _memory(context, dtype=dtype), context):
            return (f"counted at {dtype} ({dtype.bytes} bytes a value), not {context.report.dtype} "
                    f"({context.report.dtype.bytes} bytes)")
    return None


def optimizer_state(claim, context):
    if context.key.scope != "memory" or context.key.quantity not in ("optimizer_bytes", "training_bytes"):
        return None
    mine = context.report.optimizer
    for other in Optimizer:
        if other.states != mine.states and _holds(claim, _memory(context, optimizer=other), context):
            return (f"the state of {other} ({other.states} per parameter) counted, "
                    f"but {mine} keeps {mine.states} per parameter")
    return None


def backward_as_forward(claim, context):
    """The notes' erratum: backward memory written as the forward formula M + B·m·L."""
    if context.key.scope == "memory" and context.key.quantity == "course.backward_bytes":
        if _holds(claim, context.report.memory.value("course.forward_bytes"), context):
            return ("the forward formula repeated (as the notes print it): backward also holds a gradient for every "
                    "parameter (+M) and the gradients of the activations (+B·m·L)")
    return None


# Receptive fields ----------------------------------------------------------------------------------

def _field_row(context):
    return context.key.scope == "layer" and context.key.quantity == "receptive_field"


def jumps_forgotten(claim, context):
    """1 + Σ(k − 1)·d: each window's growth not multiplied by the jump (the strides before it)."""
    if _field_row(context):
        naive = receptive.fields(context.report, jumps=False)[context.row.index - 1]
        if naive is not None and naive.size != context.actual and _holds(claim, naive.size, context):
            return ("each layer's (k − 1)·d added as input pixels: a window at this depth moves by the jump "
                    "(the product of the strides before it), so it grows the field by (k − 1)·d·jump_in")
    return None


def field_start_forgotten(claim, context):
    """Σ(k − 1)·d·jump without the 1 the field starts from (one input pixel sees itself)."""
    if _field_row(context) and _holds(claim, tuple(num.normal(r - 1) for r in context.actual), context):
        return "one short: the field starts at 1 (an input pixel sees itself) before each window adds (k − 1)·d·jump_in"
    return None


def _dense_row(context):
    return context.key.scope == "layer" and context.key.quantity == "dense_equivalent_weights"


def dense_as_conv(claim, context):
    """The conv's own weights given for the dense layer that would replace it."""
    row = context.row
    if _dense_row(context) and _holds(claim, row.weights, context):
        return (f"that is the conv's own {fmt.group(row.weights)} weights: a dense layer links every input value "
                "(W·H·C_in) to every output value (W_out·H_out·C_out)")
    return None


def dense_without_channels(claim, context):
    """(W·H)·(W_out·H_out): the pixels connected, the channels left out."""
    row = context.row
    if _dense_row(context) and _holds(claim, num.normal(num.mul(row.input[1:]) * num.mul(row.output[1:])), context):
        return f"the channels are missing: (W·H·C_in)·(W_out·H_out·C_out) has C_in = {fmt.group(row.input[0])} and " \
               f"C_out = {fmt.group(row.output[0])} in it"
    return None


AXIS_SIZES = {224: 227, 227: 224}  # AlexNet's two famous input sizes: the paper says 224, its arithmetic needs 227


def input_size(claim, context):
    """A number worked out for a 227×227 input where the network's is 224×224 (or the other way round): the
    AlexNet paper's 224, whose first layer's arithmetic only works for 227 ((227 − 11)/4 + 1 = 55, no padding)."""
    spec, report, key = context.spec, context.report, context.key
    if spec is None or key.scope == "memory" or len(report.input) < 3:
        return None
    sizes = set(report.input[1:])
    if len(sizes) != 1 or not sizes <= set(AXIS_SIZES):
        return None
    size = next(iter(sizes))
    other = AXIS_SIZES[size]
    try:
        changed, values = _with_input(spec, report, other)
        again = analyze(changed, batch=report.batch, dtype=report.dtype, optimizer=report.optimizer,
                        device=report.device, **values)
        wrong = value(again, key)
    except (SpecError, KeyError, ValueError, TypeError):
        return None
    if wrong == context.actual or not _holds(claim, wrong, context):
        return None
    if other == 227:
        return (f"worked out for a 227×227 input: this network's is {size}×{size}. The AlexNet paper says 224, but its "
                "first layer's arithmetic needs 227, (227 − 11)/4 + 1 = 55 without padding; the course keeps 224 and "
                "pads by 2: (224 + 2·2 − 11)/4 + 1 = 55")
    return (f"worked out for a 224×224 input, the size the AlexNet paper states: this network's is {size}×{size}, the "
            "size its arithmetic needs without padding, (227 − 11)/4 + 1 = 55")


def _with_input(spec: Spec, report: Report, size: int) -> tuple[Spec, dict]:
    """The spec with every spatial axis of its input at `size` (a number written in, or a name given a value)."""
    values = dict(report.values)
    shape = list(spec.input)
    for i, written in enumerate(shape[1:], start=1):
        if isinstance(written, int):
            shape[i] = size
        elif isinstance(written, str) and written in values:
            values[written] = size
        else:
            raise ValueError("an input size written as a formula")
    given = {name: v for name, v in values.items() if name not in dict(spec.vars)}
    return dataclasses.replace(spec, input=tuple(shape)), given


def kind_mistake(claim, context):
    """A wrong value the layer's own class knows students give (Layer.mistaken): LayerNorm's γ and β per token."""
    row = context.row
    if context.key.scope != "layer" or row is None:
        return None
    hints = [hint for wrong, hint in row.layer.mistaken(row.input, context.key.quantity)
             if wrong != context.actual and _holds(claim, wrong, context)]
    return hints or None  # every one the layer knows that gives this value


MISTAKES = (
    kind_mistake, jumps_forgotten, field_start_forgotten, dense_as_conv, dense_without_channels,
    batch_axis, axes_permuted, not_flattened, input_channels, stale_channels,
    plus_one_forgotten, padding_once, padding_forgotten, stride_forgotten, rounded_up, input_size,
    biases_forgotten, biases_added, bias_per_input, input_channels_forgotten, kernel_not_squared,
    layer_left_out, share_as_fraction,
    macs_for_flops, flops_for_macs, forward_only,
    whole_batch, backward_as_forward, one_sample, bits_for_bytes, optimizer_state, dtype_size,
)


def recognise(claim: Claimed, context: Context) -> str | None:
    """Every recognised mistake that gives the wrong claim's value (most likely first), or None."""
    found = [recogniser(claim, context) for recogniser in MISTAKES]
    hints = list(dict.fromkeys(h for hint in found if hint for h in ([hint] if isinstance(hint, str) else hint)))
    if len(hints) <= 1:
        return hints[0] if hints else None
    return f"{len(hints)} mistakes give this value: " + "; or ".join(hints)
