"""torchvision's own models against the shipped specs: state_dict keys, strict load, outputs, params, FLOPs.

Not in CI: torchvision's PyPI wheel does not import beside the CPU torch that CI installs.
Run it in a separate environment that has torchvision (on this project's machines:
`python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 sympy rich click`),
from the repository root: `/tmp/tv/bin/python benchmarks/check_torchvision.py`.
"""

import sys
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import archcalc
import archcalc.torch

MODELS = {  # spec -> (torchvision constructor, image side)
    "resnet18": ("resnet18", 224),
    "resnet50": ("resnet50", 224),
    "mobilenet_v2": ("mobilenet_v2", 224),
    "densenet121": ("densenet121", 224),
    "vit_b_16": ("vit_b_16", 224),
    "alexnet_torchvision": ("alexnet", 224),
    "vgg16_bn": ("vgg16_bn", 224),
}


def main() -> int:
    torch.set_num_threads(1)
    failed = 0
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    for spec, (name, side) in MODELS.items():
        path = Path("specs") / f"{spec}.toml"
        if not path.exists():
            print(f"{spec:20} no spec")
            continue
        report = archcalc.analyze(archcalc.load(path))
        reference = getattr(torchvision.models, name)(weights=None).eval()
        built = archcalc.torch.build(report).eval()
        keys = list(reference.state_dict()) == list(built.state_dict())
        built.load_state_dict(reference.state_dict(), strict=True)
        x = torch.randn(1, 3, side, side)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            expected = reference(x)
        with torch.no_grad():
            same = torch.allclose(expected, built(x), rtol=1e-4, atol=1e-5)
        params = sum(p.numel() for p in reference.parameters())
        ok = keys and same and params == report.totals["params"] and counter.get_total_flops() == report.totals["flops"]
        failed += not ok
        print(f"{spec:20} keys equal {keys}, strict load ok, same outputs {same}, "
              f"params {params:,} vs {report.totals['params']:,}, FLOPs {counter.get_total_flops():,} vs {report.totals['flops']:,}"
              f"{'' if ok else '  MISMATCH'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
