"""The Layer base class and the registry of layer kinds.

A layer kind is one frozen dataclass with `@register`: its fields (declared with
the helpers of archcalc/core/fields.py) are the spec's fields, its constant facts class
attributes, and its methods give the output shape, weights, biases, multiply-accumulates
and kept tensors for an input shape `x` (one sample, no batch axis), in the order `Layer`
lists them. Every formula for a kind lives in its class, or in the base it shares with its
family: conv.Convolution (conv, conv_transpose), elementwise.ElementWise (activation,
dropout, gelu_new), norms.LastAxesNorm (layernorm, rmsnorm), batchnorm.ChannelAffine
(batchnorm, groupnorm, instancenorm), merge.Merge (add, mul, concat), recurrent.Recurrent
(lstm, gru). `register` refuses a kind already taken.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import ClassVar

from ..core import fmt, num
from ..core.errors import SpecError
from ..core.fields import choice
from ..core.num import Dim, Shape
from .events import Program
from .receptive_field import Field
from .tuning import Tuning, quantized_bytes
from .window import Window

LAYERS: dict[str, type[Layer]] = {}

class Tensor(StrEnum):
    """Which tensor a layer keeps for its backward pass (archcalc/memory/closed.py tells storages apart by it)."""

    input = "input"
    output = "output"
    pre = "pre"  # the layer's output before its activation (the activation's input)
    own = "own"  # one of its own: a mask, indices, statistics, a padded copy


class Storage(StrEnum):
    """The element type a kept tensor is stored in."""

    model = "model"  # the network's dtype
    int64 = "int64"
    float32 = "float32"  # whatever the model's dtype (attention's logsumexp)
    mask = "mask"  # a dropout mask: the model's dtype on CPU, 1 byte on CUDA
    opmath = "opmath"  # float32 at least (a float16/bfloat16 "input" or "output" so kept is an upcast copy)
    param = "param"  # the parameters' dtype (float32 under autocast, whatever the op computes in: batchnorm's statistics)


def storage_bytes(size: int, cuda: bool, param: int | None = None) -> dict[Storage, int]:
    """Bytes of an element of each Storage kind, for an op computing in a dtype of `size` bytes (`param`: the
    parameters' bytes where they differ from it, as under autocast; the memory timeline and its closed form)."""
    return {Storage.model: size, Storage.int64: 8, Storage.float32: 4, Storage.mask: 1 if cuda else size,
            Storage.opmath: max(size, 4), Storage.param: size if param is None else param}


@dataclass(frozen=True)
class Function:
    """An element-wise function: which tensor autograd keeps for its backward pass, and its torch module."""

    saves: Tensor  # output or input (measured with saved_tensors_hooks on CPU, torch 2.13)
    torch: str  # the torch.nn class
    dim: bool = False  # takes dim=1 (softmax over the channels / features)
    options: tuple[str, ...] = ()  # the `activation` layer's fields this function takes (torch's argument names)

    def __post_init__(self):
        object.__setattr__(self, "saves", Tensor(self.saves))


# The `activation` layer and the `activation` field of conv, dense and batchnorm.
ACTIVATIONS: dict[str, Function] = {
    "relu": Function(Tensor.output, "ReLU"),
    "sigmoid": Function(Tensor.output, "Sigmoid"),
    "tanh": Function(Tensor.output, "Tanh"),
    "softmax": Function(Tensor.output, "Softmax", dim=True, options=("dim",)),
    "log_softmax": Function(Tensor.output, "LogSoftmax", dim=True, options=("dim",)),
    "gelu": Function(Tensor.input, "GELU", options=("approximate",)),
    "silu": Function(Tensor.input, "SiLU"),
    "hardswish": Function(Tensor.input, "Hardswish"),
    "hardsigmoid": Function(Tensor.input, "Hardsigmoid"),
    "leaky_relu": Function(Tensor.input, "LeakyReLU", options=("negative_slope",)),
    "elu": Function(Tensor.input, "ELU", options=("alpha",)),
    "relu6": Function(Tensor.input, "ReLU6"),
    "hardtanh": Function(Tensor.input, "Hardtanh"),
    "softplus": Function(Tensor.input, "Softplus"),
    "mish": Function(Tensor.input, "Mish"),
}


def torch_activation(name: str, nn, **options):
    """The torch module for an activation function, from the torch.nn namespace `nn`; `options`: its
    arguments other than the defaults (negative_slope = 0.2, ...)."""
    function = ACTIVATIONS[name]
    if function.dim:
        options.setdefault("dim", 1)
    return getattr(nn, function.torch)(**options)


@dataclass(frozen=True)
class Kept:
    """A tensor autograd keeps for a layer's backward pass (see archcalc/memory/closed.py for how they add up)."""

    tensor: Tensor  # a name given as a string is read into a Tensor (and refused if it is none)
    elements: Dim  # per sample, or in all when not per_sample
    dtype: Storage = Storage.model
    per_sample: bool = True
    what: str = ""  # for --explain: "input", "max-pooling indices", ...
    arg: int = 0  # which input, for "input" of a layer with several (a merge layer)

    def __post_init__(self):
        object.__setattr__(self, "elements", num.normal(self.elements))
        object.__setattr__(self, "tensor", Tensor(self.tensor))
        object.__setattr__(self, "dtype", Storage(self.dtype))


def activation_keeps(activation: str | None, y: Shape) -> tuple[Kept, ...]:
    """What the activation applied to a layer's output keeps: that output, or its own input ("pre")."""
    if activation is None:
        return ()
    if ACTIVATIONS[activation].saves == Tensor.output:
        return (Kept(Tensor.output, num.mul(y), what=f"{activation} output"),)
    return (Kept(Tensor.pre, num.mul(y), what=f"{activation} input"),)


def split_keeps(activation: str | None, keeps: tuple[Kept, ...]) -> tuple[tuple[Kept, ...], tuple[Kept, ...]]:
    """A layer's kept tensors (Layer.keeps) as (its own op's, its activation's): `activation_keeps` puts the
    activation's one tensor last, and autograd records it on a node of its own."""
    keeps = tuple(keeps)
    return (keeps[:-1], keeps[-1:]) if activation and keeps else (keeps, ())


@dataclass(frozen=True)
class TorchTensor:
    """A tensor argument of a torch call read by `Layer.torch_call` (`archcalc import`): its rank (with the batch axis) where
    the capture knows it, and one sample's shape (no batch axis; sizes as spec values, formulas in the input's names)."""

    rank: int | None = None
    shape: tuple | None = None
    held: bool = False  # a parameter or buffer of the module (F.layer_norm's weight): `shape` is then its whole shape


@dataclass(frozen=True)
class TorchSize:
    """A size argument read from a tensor (x.size(0), x.shape[1]) rather than written: the batch size or another, its
    value as a spec value (a number, or a formula in the input's names) where the capture knows it."""

    batch: bool
    value: object = None


class Inexpressible(ValueError):
    """A torch call a layer kind cannot express: the message reads after the call's name ("with a constant")."""


def torch_float(value):
    """A torch call's number as a spec value: a whole float as an int (0.2 stays 0.2)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def torch_argument(args: tuple, kwargs: dict, index: int, name: str, default=None):
    """A torch call's argument by position or by name."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def register(cls: type[Layer]) -> type[Layer]:
    """Add a layer kind to LAYERS; a kind already there is refused (a second class would silently replace it)."""
    taken = LAYERS.get(cls.kind)
    if taken is not None:
        raise ValueError(f"layer kind {cls.kind!r} is already registered by {taken.__module__}.{taken.__qualname__}: "
                         f"cannot register {cls.__module__}.{cls.__qualname__} (choose another kind, or unregister it first)")
    LAYERS[cls.kind] = cls
    return cls


def unregister(cls: type[Layer]) -> None:
    """Remove a kind that `register` added (a test's temporary kind)."""
    if LAYERS.get(cls.kind) is not cls:
        raise ValueError(f"{cls.__qualname__} is not the registered class of kind {cls.kind!r}")
    del LAYERS[cls.kind]


def activation_field():
    return choice(*ACTIVATIONS, default=None)


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A layer kind: one frozen dataclass, added to LAYERS by `@register`; its fields (declared with the helpers
    of archcalc/core/fields.py) are the spec's fields. The defaults below fit a layer without parameters that keeps
    its input's shape; a kind overrides what differs, and nothing outside the layer classes tests a layer's kind.

    Every kind is written in the order of this class, so that any formula is found in the same place:
      1. what it is: `kind`, its constant facts (class attributes), then its spec fields;
      2. its four formulas, for an input shape `x` (one sample, no batch axis): output, weights and biases
         (weight_shape), macs (backward_macs), keeps; then the helpers they share (a conv's windows, in_channels);
      3. its explanation: summary, derive;
      4. its receptive field: receptive;
      5. its teaching hooks: mistaken, dense_equivalent_weights;
      6. its torch module: to_torch, torch_counts, torch_fields, torch_value;
      7. the memory timeline's hooks (archcalc/memory/), last.

    A formula may return a sympy number (a formula that simplified to one): the Row, the Kept, JSON
    and the text make every number normal (int or Fraction when concrete), so a formula need not."""

    # 1. What it is -------------------------------------------------------------------------------------------
    kind: ClassVar[str]
    merges: ClassVar[bool] = False  # reads several tensors: x is then the tuple of their shapes, grad one flag each
    broadcasts: ClassVar[bool] = False  # an element-wise merge (add, mul): it may read a tensor without a batch axis
    detached: ClassVar[bool] = False  # its output never requires grad: made from its input's shape only (rotary tables)
    one_for_the_batch: ClassVar[bool] = False  # its output has no batch axis in torch (T5's relative bias): `batchless`
    # Teaching: the kind-specific recognisers of archcalc/teaching/mistakes.py that apply to it (by function name),
    mistakes: ClassVar[frozenset[str]] = frozenset()
    # what a hint about an earlier layer's channels adds, for a kind that keeps its input's channels,
    channels_hint: ClassVar[str] = ""
    # and whether a quiz asks for its output shape (None: when the layer changes the shape).
    asks_shape: ClassVar[bool | None] = None
    # Drawing (archcalc draw): the colour of its box, whether it joins the box of the layer before instead
    # (where it keeps that box's shape and reads only it), and whether an arrow comes in from its input
    # (False: it reads the input for its size only, as a learned tensor does: no value flows along that edge).
    colour: ClassVar[str] = "#dddddd"
    joins_box_before: ClassVar[bool] = False
    draws_input: ClassVar[bool] = True
    # The torch.nn classes this kind is (`archcalc import`): their attributes of the spec's field names are its fields,
    # and those of `torch_attributes` ((torch's attribute, the spec field it gives) where the names differ:
    # timm's DropPath.drop_prob is stochastic_depth's p; dotted, an attribute's: LlamaAttention's
    # config.num_attention_heads); and the torch functions, tensor methods and ATen operations
    # it is, by name (F.relu, x.relu() and aten.relu share "relu"; in place, "relu_"), their arguments read by
    # `torch_call`. Kinds that list one name are tried in the order they are registered: the first that expresses the
    # call is it (x.view(B, -1): flatten, else reshape).
    # Of its functions, those that return several tensors (x.chunk(2, 1), x.unbind(1)) are `torch_several`: each element
    # read is a layer of its own, its fields read by `torch_item`.
    torch_modules: ClassVar[tuple[str, ...]] = ()
    torch_attributes: ClassVar[tuple[tuple[str, str], ...]] = ()
    torch_functions: ClassVar[tuple[str, ...]] = ()
    torch_several: ClassVar[tuple[str, ...]] = ()
    # and those whose tensors after the first are the layer's own parameters (F.layer_norm(x, shape, self.weight,
    # self.bias), F.linear): `torch_weighted`, the layer named by the module that holds them, as if it were called.
    torch_weighted: ClassVar[tuple[str, ...]] = ()
    # Checkpointing: the devices on which the tensors of its own that its op keeps exist before its output (dropout's
    # mask on the CPU, an input of the product that makes the output). Autograd saves an op's inputs before it runs,
    # its outputs after: where torch's checkpoint stops recomputing (archcalc/analysis/checkpoint.py).
    own_kept_before_output: ClassVar[tuple[str, ...]] = ()
    name: str
    # Attributes that some kinds declare as spec fields (after their own): not dataclass fields here, so that the
    # others do not accept them. `activation`: an element-wise function applied to the output; `tie`: the earlier
    # layer whose weight this one shares (its own weights then count 0); `token_ids`: how many token ids the layer
    # reads (its input is int64 ids below this: an embedding), None for values.
    activation = None
    tie = None
    token_ids = None
    # Fine-tuning ([finetune], archcalc/analysis/finetune.py; never a spec field): its own parameters frozen, a LoRA
    # adapter, its frozen weight quantized (archcalc/layers/tuning.py). None: trained as a whole.
    tuning: Tuning | None = None

    @classmethod
    def spec_fields(cls) -> dict[str, object]:
        """Field name -> its kind (how to read and bind it), for every field a spec may set."""
        return {f.name: f.metadata["kind"] for f in dataclasses.fields(cls) if "kind" in f.metadata}

    # 2. The four formulas ------------------------------------------------------------------------------------
    def output(self, x: Shape) -> Shape:
        raise NotImplementedError

    def weights(self, x: Shape) -> Dim:
        return 0

    def biases(self, x: Shape) -> Dim:
        return 0

    def weight_shape(self, x: Shape) -> Shape | None:
        """The shape of the layer's one weight tensor, for weight tying (None: it has no single weight)."""
        return None

    def macs(self, x: Shape) -> Dim:
        """Multiply-accumulates for one sample (FLOPs are twice this, as torch counts them)."""
        return 0

    def backward_macs(self, x: Shape, grad: bool) -> Dim:
        """MACs of the backward pass as FlopCounterMode counts them; `grad`: the input needs a gradient."""
        return 0

    def keeps(self, x: Shape, y: Shape, grad: bool) -> tuple[Kept, ...]:
        """The tensors autograd keeps for the backward pass; `grad`: the input requires grad
        (a layer with no parameters of its own keeps nothing when nothing before it has any)."""
        return ()

    def windows(self, x: Shape) -> tuple[Window, ...]:
        """The kernel sliding over each spatial axis, for a sliding-window layer (conv, pool); () for others.

        Made and checked once per layer and input shape (`make_windows`): the layer is frozen, so they cannot change.
        """
        return _windows(self, x) if type(self).make_windows is not Layer.make_windows else ()

    def make_windows(self, x: Shape) -> tuple[Window, ...]:
        """The windows of `windows`, expanded per axis from the fields and checked; a sliding-window kind overrides this."""
        return ()

    # 3. Its explanation --------------------------------------------------------------------------------------
    def summary(self, x: Shape) -> str:
        """The hyperparameters in short form, for the table: '11×11/4, p2, relu'."""
        return ""

    def derive(self, x: Shape) -> list[tuple[str, str]]:
        """How the numbers come out, as (quantity, text) lines for --explain."""
        return []

    # 4. Its receptive field ----------------------------------------------------------------------------------
    def receptive(self, x: Shape, field: Field) -> Field | None:
        """The receptive field and jump of the output, from the input's (see layers/receptive_field.py): through a
        sliding window's kernels (conv, pool); None: not known for this kind. The engine keeps a field that already
        sees the whole input as it is."""
        ws = self.windows(x)
        return field.window([w.k for w in ws], [w.d for w in ws], [w.s for w in ws]) if ws else None

    # 5. Its teaching hooks -----------------------------------------------------------------------------------
    def mistaken(self, x: Shape, quantity: str) -> tuple[tuple[object, str], ...]:
        """Typical wrong values of one of this layer's quantities ("params", "macs", "output"...) and what
        each one gets wrong, for `check`'s hints: ((2·T·d, "γ and β are shared by every token"), ...)."""
        return ()

    def dense_equivalent_weights(self, x: Shape) -> Dim | None:
        """The weights a dense layer between the same input and output would need (conv only: the course's 4.1)."""
        return None

    # 6. Its torch module -------------------------------------------------------------------------------------
    def to_torch(self, x: Shape, nn):
        """The torch module for this layer (without its `activation`), from the torch.nn namespace `nn`."""
        raise NotImplementedError(self.kind)

    def torch_counts(self, x: Shape, grad: bool) -> dict[str, tuple[Dim | None, str]]:
        """Where torch 2.13's FlopCounterMode on the CPU (or the CPU itself) differs from archcalc's convention:
        quantity ("flops", "training_flops", "saved_bytes") -> (what torch counts for one sample, or None when it
        cannot be compared on the CPU; why). `verify` accepts that count, and says why."""
        return {}

    @classmethod
    def torch_fields(cls, torch_name: str) -> dict:
        """The fields a torch class fixes by being that class (MaxPool2d: op = "max"), for `archcalc import`."""
        return {}

    @classmethod
    def torch_read(cls, module) -> dict:
        """Fields computed from a torch module rather than read from an attribute of theirs (`archcalc import`):
        rotary's head_dim, twice its inv_freq's length."""
        return {}

    @classmethod
    def torch_value(cls, field: str, value):
        """A torch module's attribute as this field's value (`archcalc import`): an axis number less one."""
        return value

    @classmethod
    def torch_call(cls, name: str, args: tuple, kwargs: dict) -> dict | None:
        """The fields of a call of one of `torch_functions` (`archcalc import`), from its arguments as written (each
        tensor a TorchTensor, each size read from a tensor a TorchSize), or None where the result is its first
        argument itself; Inexpressible where this kind cannot express the call."""
        return {}

    @classmethod
    def torch_item(cls, name: str, args: tuple, kwargs: dict, item: int) -> dict | None:
        """The fields of element `item` of a call of one of `torch_several` (`archcalc import`), as torch_call reads
        a call; Inexpressible where this kind cannot express it."""
        raise Inexpressible("returns several tensors: archcalc has no layer for its elements")

    # 7. The memory timeline's hooks (archcalc/memory/) -------------------------------------------------------
    # Its constant facts, overridden as class attributes:
    # - copies a permuted (non-contiguous) input and keeps that copy (nn.Linear, the norms),
    contiguous_input: ClassVar[bool] = False
    # - its output is laid out as its input (element-wise ops: a permuted input gives a permuted output),
    keeps_layout: ClassVar[bool] = False
    # - its output shares its input's storage (flatten, reshape, select: views; `is_view` where it depends),
    shares_storage: ClassVar[bool] = False
    # - in eval its output is its input, view or not in training (dropout),
    returns_input_in_eval: ClassVar[bool] = False
    # - for a view: its backward makes a new tensor of the input's size for the gradient (select: zeros, the
    #   selected entry copied in) rather than a view of the output's gradient,
    gradient_is_new: ClassVar[bool] = False
    # - whether it marks a transformers model's body (GPT2Model: positions looked up by `length`; LlamaModel: its
    #   rotary tables), whose Python variables hold tensors past their last reader: the token embeddings
    #   (inputs_embeds) until it returns, fine-tuned its decoder layers' too (layers/decoding.py's Frames),
    transformers_body: ClassVar[bool] = False
    # - how its backward hands the output's gradient to the inputs without a new tensor: "same" (add: the gradient
    #   itself, where no broadcasting reduces it), "slice" (concat: a view of it), "" (a new tensor per input),
    passes_gradient: ClassVar[str] = ""
    # - whether its output can be class scores (logits) for the step's loss, unless an activation ends it: not an
    #   element-wise function's (an image in tanh's range, a ReLU's values: the loss is then MSE),
    gives_scores: ClassVar[bool] = True
    # - how tensor parallelism splits it (archcalc/memory/timeline/tensor.py): "heads" (attention), "columns" (a dense
    #   layer: column-parallel, the dense layer it feeds row-parallel), "columnwise" (an element-wise op between them,
    #   run on the columns), "" (replicated),
    tensor_parallel: ClassVar[str] = ""
    # - the torch ops it runs, by the names of autocast's lists (archcalc/core/autocast.py; `autocast_ops`),
    autocast_op_names: ClassVar[tuple[str, ...]] = ()
    # - which of its parameter tensors its backward node keeps as autocast's copies (`autocast_kept_params`).
    autocast_kept: ClassVar[tuple[int, ...]] = ()

    def buffer_bytes(self, x: Shape, size: int) -> Dim:
        """Bytes of the layer's buffers (state that is not trained), for values of `size` bytes."""
        return 0

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True,
                amp: tuple[str, str] | None = None) -> Program | None:
        """The layer's step as the memory timeline runs it op by op: its forward and backward as events
        (archcalc/layers/events.py); None: the timeline's generic rule (keeps()). `inplace=False`: a dispatch mode
        is on (the CPU oracle), which makes some in-place ops out of place. `amp`: under torch.autocast,
        (autocast's dtype, the input's dtype): each op in the dtype autocast's policy gives it
        (archcalc/core/autocast.py), storages named by dtype; None where the layer has no such program."""
        return None

    def is_view(self) -> bool:
        """Whether the output shares its input's storage (flatten, reshape: views; dropout with p = 0)."""
        return self.shares_storage

    def batchless(self) -> bool:
        """Whether torch's output has no batch axis (a `parameter` with expand = false, broadcast as it is): the add or
        mul reading it sums its gradient to the parameter's shape (validate_outputs), which AccumulateGrad takes as
        the parameter's gradient (the memory timeline)."""
        return self.one_for_the_batch

    def is_parameter(self) -> bool:
        """Whether the output is a view of the layer's own parameter (`parameter`: a layer scale, a class token), so
        that a node keeping it keeps no activation (saved_tensors_hooks sees the parameter's storage)."""
        return False

    def param_tensors(self, x: Shape) -> tuple[Dim, ...]:
        """The element counts of the layer's parameter tensors as torch holds them (the memory timeline
        allocates, rounds and steps each one): weight and bias by default; a kind with more overrides it
        (LoRA's adapters last, `adapter_tensors`)."""
        return tuple(n for n in (self.weights(x), self.biases(x)) if n != 0)

    # Fine-tuning (archcalc/layers/tuning.py): what trains, how the parameters are stored
    @property
    def frozen(self) -> bool:
        """Whether its own parameters are frozen (no gradient, no optimizer state; LoRA's adapters train)."""
        return self.tuning is not None and self.tuning.frozen

    @property
    def adapter(self):
        return None if self.tuning is None else self.tuning.adapter

    takes_lora: ClassVar[bool] = False  # LoRA adapts the layer itself (a dense layer; attention: lora_projections)

    def lora_projections(self) -> tuple[tuple[str, ...], ...]:
        """The projections inside the layer that LoRA may adapt: (torch's name, its aliases...) each; () where the layer
        is one projection or none."""
        return ()

    def adapter_tensors(self, x: Shape) -> tuple[Dim, ...]:
        """The element counts of its LoRA adapters' weights (lora_A, lora_B per adapted projection), the last of
        param_tensors; () for a kind that takes none."""
        return ()

    def quantized_weights(self, x: Shape) -> tuple[tuple[int, Dim], ...]:
        """The weights bitsandbytes would quantize (a linear projection's), as (their index in param_tensors, their
        output features)."""
        return ()

    def trained_tensors(self, x: Shape) -> tuple[Dim, ...]:
        """The element counts of the parameter tensors that get a gradient and optimizer state."""
        tensors, adapters = self.param_tensors(x), self.adapter_tensors(x)
        own = tensors[:len(tensors) - len(adapters)]
        return (() if self.frozen else own) + adapters

    def trained_params(self, x: Shape) -> Dim:
        return num.add(self.trained_tensors(x))

    def stored_bytes(self, x: Shape, size: int) -> tuple[Dim, ...]:
        """The bytes of each storage its parameters take: `size` bytes per value, but a quantized weight's storages
        (bitsandbytes' layout) and float32 adapters beside a 16-bit base."""
        tensors, adapters = self.param_tensors(x), self.adapter_tensors(x)
        quantized = dict(self.quantized_weights(x)) if self.tuning is not None and self.tuning.quantized else {}
        out: list[Dim] = []
        for i, n in enumerate(tensors[:len(tensors) - len(adapters)]):
            out += quantized_bytes(self.tuning.quantized, n, quantized[i]) if i in quantized else [num.normal(n * size)]
        width = 4 if self.adapter is not None and self.adapter.dtype == "float32" else size
        return (*out, *(num.normal(n * width) for n in adapters))

    def forward_scratch(self, x: Shape) -> Dim:
        """Elements per sample, in the model's dtype, that the forward op allocates before its output, keeps
        for no node and frees when it returns: InstanceNorm's β repeated per sample."""
        return 0

    def backward_scratch(self, x: Shape, grad: bool) -> Dim:
        """Elements per sample, in the model's dtype, that the backward op allocates beside the input's gradient
        in place of the parameters' gradients, which it then sums out of them once its saved tensors are freed:
        InstanceNorm's γ and β gradients per sample. 0: none."""
        return 0

    def scores_axis(self, y: Shape) -> int:
        """The axis of the output that holds its features, the classes when it ends the network: the
        channels (0: scores per pixel), the last for a layer applied per token (dense on [T, d])."""
        return 0

    def padded_gradient(self, x: Shape) -> Dim:
        """Elements per sample of the gradient the backward op computes for a padded copy of the input (F.pad
        before a convolution), when the input needs one: the input's own gradient is cut from it once the
        node has freed what it consumed and kept (the pad's node). 0: no padded copy."""
        return 0

    def sums_scratch_first(self, grad: bool) -> bool:
        """With a backward_scratch: whether the parameters' gradients are summed out of it before the node frees
        the gradient it consumed and its saved tensors (PReLU, when its input needs a gradient)."""
        return False

    def autocast_ops(self, x: Shape) -> tuple[str, ...]:
        """The torch ops the layer runs, by the names of autocast's lists (archcalc/core/autocast.py): under mixed
        precision they decide the dtype it computes in; () runs in its input's dtype."""
        return self.autocast_op_names

    def autocast_kept_params(self, grad: bool) -> tuple[int, ...]:
        """Which of its parameter tensors (param_tensors' order) its backward node keeps as autocast's
        low-precision copies (a convolution keeps its weight; a linear layer only when its input needs a gradient)."""
        return self.autocast_kept

    def view(self, x: Shape, y: Shape, strides):
        """For a view: the output's layout (archcalc.layers.layout) from the input's, or layout.COPY
        when it must copy after all (a reshape of a permuted tensor)."""
        return strides

    def copies_input(self, x: Shape, strides) -> bool:
        """Whether it copies an input of this layout (archcalc.layers.layout; None: contiguous) and keeps the copy:
        by default, a kind that wants a contiguous input copies any other (nn.Linear refines it: dense.py)."""
        return strides is not None and self.contiguous_input

    def update_scratch(self, x: Shape) -> Dim:
        """Elements in all (not per sample), in the parameters' dtype, of a transient the forward op makes after its
        output and frees at once: InstanceNorm's running statistics updated from their repeats, a mean over the
        batch per statistic, one after the other. 0: none."""
        return 0

    def output_layout(self, x: Shape):
        """The output's layout (archcalc.layers.layout) where the layer makes it non-contiguous itself: `parameter`'s
        tensor expanded over the batch (stride 0). None: contiguous, or as the generic rules say."""
        return None

    def unfused_bias(self) -> bool:
        """Whether, on a copied (permuted) input, the layer adds its bias by an op of its own: the product before
        it is a transient of the output's size (nn.Linear through matmul: mm, then add)."""
        return False

    def param_shapes(self, x: Shape) -> tuple[Shape, ...]:
        """The shape of each parameter tensor, in param_tensors' order, as torch holds it (FSDP shards a tensor along
        its first axis, padded to a multiple of the ranks): one axis each by default (a bias, a norm's scale); a kind
        whose weight has more axes says so."""
        return tuple((n,) for n in self.param_tensors(x))


@lru_cache(maxsize=4096)  # bounded: a layer and its input, by value (equal layers share their windows)
def _windows(layer: Layer, x: Shape) -> tuple[Window, ...]:
    return layer.make_windows(x)


def spatial(x: Shape, kind: str) -> int:
    """The number of spatial axes of `x` = [C, *spatial], for layers that need 1 to 3 of them."""
    if not 2 <= len(x) <= 4:
        raise SpecError(
            f"{kind} needs an input [C, L], [C, H, W] or [C, D, H, W]; got {fmt.shape(x)}",
            "a flat input (after flatten or dense) has no spatial axes: use reshape to give it some"
            if len(x) == 1
            else None,
        )
    return len(x) - 1


def ints(values) -> tuple[int, ...]:
    """Sizes as the ints torch wants (a spec given to torch has no free symbols left)."""
    return tuple(int(v) for v in values)


def per_axis(value, n: int, field: str) -> tuple:
    """A field's value for each of `n` spatial axes: 3 -> (3, 3); [3, 5] stays (3, 5)."""
    if isinstance(value, tuple):
        if len(value) != n:
            raise SpecError(
                f"gives {len(value)} values, but the input has {n} spatial axes", "give one value, or one per axis", field
            )
        return value
    return (value,) * n


def with_activation(text: str, activation: str | None) -> str:
    return ", ".join(part for part in (text, activation) if part)


def setting(prefix: str, values: tuple, default) -> str:
    """', p2' (prefix and the values per axis) where a setting differs from its default on some axis, else ''."""
    return prefix + axes_text(values) if any(v != default for v in values) else ""


def axes_text(values: tuple) -> str:
    """(2, 2) -> '2'; (1, 2) -> '1×2'."""
    if len(set(map(str, values))) == 1:
        return fmt.group(values[0])
    return "×".join(map(fmt.term, values))
