"""Did-you-mean for layer types and field names written the way PyTorch or Keras write them.

A student who knows `nn.Linear` writes `type = "linear"`; one who knows Keras writes `units = 10`.
The message then names archcalc's word, and where two of archcalc's kinds fit, both.

>>> type_hint("Linear", ["conv", "dense"])
"did you mean 'dense' (PyTorch's nn.Linear, Keras's Dense)?"
>>> field_hint("filters", ["out_channels", "kernel_size"])
"did you mean 'out_channels'? (Keras's filters)"
"""

from __future__ import annotations

import difflib
import re

from ..layers import ACTIVATIONS

# The written type, normalised (`_key`), to what archcalc writes; a second entry where two kinds fit.
_TYPES: dict[str, tuple[str, ...]] = {
    "linear": ("'dense' (PyTorch's nn.Linear, Keras's Dense)",),
    "fc": ("'dense' (a fully connected layer)",),
    "fullyconnected": ("'dense' (a fully connected layer)",),
    "convolution": ("'conv'",),
    "deconv": ("'conv_transpose'",),
    "deconvolution": ("'conv_transpose'",),
    "maxpool": ("'pool' with op = \"max\"",),
    "maxpooling": ("'pool' with op = \"max\"",),
    "avgpool": ("'adaptive_pool' with op = \"avg\" (torchvision's avgpool; output_size = 1 is global pooling)",
                "'pool' with op = \"avg\" (a fixed kernel_size)"),
    "averagepooling": ("'pool' with op = \"avg\"", "'adaptive_pool' with op = \"avg\" (a fixed output_size)"),
    "avgpooling": ("'pool' with op = \"avg\"", "'adaptive_pool' with op = \"avg\" (a fixed output_size)"),
    "meanpool": ("'pool' with op = \"avg\"", "'adaptive_pool' with op = \"avg\""),
    "pooling": ("'pool'",),
    "adaptiveavgpool": ("'adaptive_pool' with op = \"avg\"",),
    "adaptivemaxpool": ("'adaptive_pool' with op = \"max\"",),
    "globalaveragepooling": ("'adaptive_pool' with op = \"avg\" and output_size = 1",),
    "globalavgpool": ("'adaptive_pool' with op = \"avg\" and output_size = 1",),
    "globalmaxpooling": ("'adaptive_pool' with op = \"max\" and output_size = 1",),
    "globalmaxpool": ("'adaptive_pool' with op = \"max\" and output_size = 1",),
    "bn": ("'batchnorm'",),
    "batchnormalization": ("'batchnorm' (Keras's BatchNormalization)",),
    "ln": ("'layernorm'",),
    "layernormalization": ("'layernorm' (Keras's LayerNormalization)",),
    "groupnormalization": ("'groupnorm'",),
    "instancenormalization": ("'instancenorm'",),
    "localresponsenorm": ("'lrn'",),
    "localresponsenormalization": ("'lrn'",),
    "multiheadattention": ("'attention' (for torch's nn.MultiheadAttention, module = \"multihead\")",),
    "mha": ("'attention'",),
    "selfattention": ("'attention'",),
    "scaleddotproductattention": ("'attention'",),
    "upsampling": ("'upsample' (Keras's UpSampling2D)",),
    "interpolate": ("'upsample'",),
    "view": ("'reshape'",),
    "unflatten": ("'reshape'",),
    "transpose": ("'permute'",),
    "concatenate": ("'concat'",),
    "cat": ("'concat'",),
    "multiply": ("'mul'",),
    "residual": ("'add' with from = [...] (the residual's two tensors)",),
    "sequential": ("'block' (declare [blocks.NAME], then use it: type = \"block\", block = \"NAME\")",),
    "swish": ("'activation' with function = \"silu\"",),
    "input": ("no layer: the input is [model]'s input = [C, H, W]",),
    "inputlayer": ("no layer: the input is [model]'s input = [C, H, W]",),
    "zeropadding": ("no layer: padding is a field of conv and pool (padding = 1)",),
    "pad": ("no layer: padding is a field of conv and pool (padding = 1)",),
}
for _function in ACTIVATIONS:
    _TYPES.setdefault(re.sub(r"[^a-z0-9]", "", _function), (
        f"'activation' with function = \"{_function}\" (or activation = \"{_function}\" on the layer before)",))

# Field names as PyTorch or Keras write them, to archcalc's candidates (the first the layer has is named).
_FIELDS: dict[str, tuple[str, ...]] = {
    "kernel": ("kernel_size",),
    "filters": ("out_channels",),
    "numfilters": ("out_channels",),
    "channels": ("out_channels",),
    "units": ("out_features", "hidden_size"),
    "outputdim": ("out_features", "embedding_dim"),
    "outdim": ("out_features",),
    "features": ("out_features",),
    "poolsize": ("kernel_size",),
    "size": ("kernel_size",),
    "strides": ("stride",),
    "dilationrate": ("dilation",),
    "usebias": ("bias",),
    "rate": ("p",),
    "droprate": ("p",),
    "dropoutrate": ("p",),
    "dropprob": ("p",),
    "prob": ("p",),
    "axis": ("dim",),
    "targetshape": ("shape",),
    "scale": ("scale_factor",),
    "heads": ("num_heads",),
    "nheads": ("num_heads",),
    "nhead": ("num_heads",),
    "hidden": ("hidden_size",),
    "hiddendim": ("hidden_size",),
    "vocabsize": ("num_embeddings",),
    "inputdim": ("num_embeddings",),
    "embeddim": ("embedding_dim",),
    "groups": ("num_groups",),
    "epsilon": ("eps",),
    "fn": ("function",),
    "func": ("function",),
    "act": ("activation",),
    "activationfn": ("activation", "function"),
    "pooltype": ("op",),
    "method": ("op", "mode"),
    "operation": ("op",),
    "repeats": ("repeat",),
    "numlayers": ("repeat",),
}
# Fields PyTorch needs and archcalc takes from the input's shape.
_FROM_INPUT = {"inchannels": "in_channels", "infeatures": "in_features", "numfeatures": "num_features",
               "inputsize": "input_size", "inputshape": "input_shape", "inputdim": "input_dim", "embeddim": "embed_dim"}

_PREFIX = re.compile(r"^(?:torch\.nn\.|nn\.|tf\.keras\.layers\.|keras\.layers\.|layers\.)")


def _key(written: str) -> str:
    """'nn.MaxPool2d' -> 'maxpool'; 'Conv2DTranspose' -> 'convtranspose'; 'kernel-size' -> 'kernelsize'."""
    text = _PREFIX.sub("", written.strip()[:100]).lower()
    return re.sub(r"(?<=[a-z])[123]d", "", re.sub(r"[^a-z0-9]", "", text))


def type_hint(written: str, kinds) -> str | None:
    """What to write instead of an unknown layer type, or None when nothing comes close."""
    if not isinstance(written, str):
        return None
    key = _key(written)
    normal = {_key(kind): kind for kind in kinds}
    if key in normal:
        meant = (f"'{normal[key]}'",)
    elif key in _TYPES:
        meant = _TYPES[key]
    else:
        close = difflib.get_close_matches(written.lower()[:100], list(kinds), n=1)
        meant = (f"'{close[0]}'",) if close else ()
    if not meant:
        return None
    if meant[0].startswith("no layer"):
        return f"{written!r} is {meant[0]}"
    return "did you mean " + " or ".join(meant) + "?"


def field_hint(written: str, fields) -> str | None:
    """What to write instead of an unknown field of a layer whose fields are `fields`, or None."""
    key = _key(written)
    normal = {_key(field): field for field in fields}
    if key in normal:
        return f"did you mean {normal[key]!r}?"
    for candidate in _FIELDS.get(key, ()):
        if candidate in fields:
            return f"did you mean {candidate!r}?" + (f" (Keras's {written})" if key in _KERAS else "")
    if key in _FROM_INPUT:
        return f"archcalc takes {written} from the input's shape: leave it out"
    close = difflib.get_close_matches(written[:100], list(fields), n=1)
    return f"did you mean {close[0]!r}?" if close else None


_KERAS = {"filters", "units", "outputdim", "poolsize", "strides", "dilationrate", "usebias", "rate", "axis",
          "targetshape", "inputdim", "epsilon", "numfilters"}
