"""Every layer kind, registered in LAYERS by its `kind`: one small class per kind."""

# the order of registration is the order kinds are listed in messages: the course's first
from . import conv, dense, elementwise, batchnorm, pool, shape, upsample, adaptive, merge  # noqa: F401, I001
from . import transpose, norms, recurrent, attention, sequence  # noqa: F401  (issue 10's kinds)
from . import hf  # noqa: F401  (Hugging Face's gelu_new)
from . import reduce, window_attention, relative  # noqa: F401  (issue 18's kinds of real models)
from .base import ACTIVATIONS, LAYERS, Layer, register, unregister

__all__ = ["ACTIVATIONS", "LAYERS", "Layer", "register", "unregister"]
