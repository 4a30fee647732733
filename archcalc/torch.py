"""archcalc's PyTorch backend: `archcalc.torch.build(spec)`, `verify`, `export`, `bench`.

Importing this module imports torch; `import archcalc` does not.

>>> import archcalc.torch
>>> net = archcalc.torch.build("specs/lenet5.toml")
>>> sum(p.numel() for p in net.parameters())
61706
"""

from .backends.torch import build

__all__ = ["build"]
