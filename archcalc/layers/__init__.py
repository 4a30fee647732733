"""Every layer kind, registered in LAYERS by its `kind`: one small class per kind."""

from . import conv, dense, elementwise, norm, norms, pool, shape, transpose, upsample, adaptive, merge  # noqa: F401  (registers the kinds)
from . import attention, sequence  # noqa: F401
from .base import ACTIVATIONS, LAYERS, Layer, register

__all__ = ["ACTIVATIONS", "LAYERS", "Layer", "register"]
