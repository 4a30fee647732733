"""archcalc's PyTorch backend: build a spec's network, verify a report against it, export it, benchmark it.

Importing this module imports torch (or raises an ArchcalcError that says how to
install it); `import archcalc` never does.

>>> import archcalc, archcalc.torch
>>> net = archcalc.torch.build("specs/lenet5.toml")
>>> sum(p.numel() for p in net.parameters())
61706
>>> checks = archcalc.torch.verify(archcalc.analyze(archcalc.load("specs/lenet5.toml")))
>>> all(check.ok for check in checks)
True
"""

from .backends.bench import Options, Result, bench
from .backends.build import build, require
from .backends.export import source
from .backends.verify import Check, verify

require()

__all__ = ["Check", "Options", "Result", "bench", "build", "source", "verify"]
