"""How long `archcalc show` takes, beside torchinfo's `summary` of the same network, and how it scales with depth.

    python benchmarks/bench_show.py [--runs 7]

Every figure is the median wall time of whole processes (python start-up included, as a
user sees it), run one after the other on this machine. torchinfo is the reference: it
needs torch and a forward pass; archcalc needs neither. Needs `pip install torchinfo`
(and torch) for the reference column; without them that column says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TORCHINFO_ALEXNET = """
import torch.nn as nn
from torchinfo import summary
net = nn.Sequential(
    nn.Conv2d(3, 96, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
    nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
    nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
    nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
    nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    nn.Flatten(), nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
    nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
)
print(summary(net, input_size=(1, 3, 224, 224), verbose=0))
"""

LAYERS = [
    '[[layers]]\ntype = "conv"\nout_channels = 16\nkernel_size = 3\npadding = 1\nactivation = "relu"',
    '[[layers]]\ntype = "batchnorm"',
    '[[layers]]\ntype = "dropout"\np = 0.1',
    '[[layers]]\ntype = "pool"\nkernel_size = 3\nstride = 1\npadding = 1',
]
# Symbolic depth: strided layers change the formula every few layers (⌊(H − 1)/2⌋ + 1 ...), then "same" convs keep it.
SYMBOLIC_LAYERS = [
    '[[layers]]\ntype = "conv"\nout_channels = 16\nkernel_size = 3\nstride = 2\npadding = 1\nactivation = "relu"',
    '[[layers]]\ntype = "conv"\nout_channels = 16\nkernel_size = 3\npadding = "same"',
    '[[layers]]\ntype = "upsample"\nscale_factor = 2',
    '[[layers]]\ntype = "pool"\nop = "avg"\nkernel_size = 3\nstride = 1\npadding = 1\nceil_mode = true',
]


def deep_spec(depth: int, symbolic: bool) -> str:
    kinds = SYMBOLIC_LAYERS if symbolic else LAYERS
    head = ["[model]", f'name = "deep{depth}"', 'input = [16, "H", "W"]' if symbolic else "input = [16, 64, 64]"]
    return "\n".join(head + [kinds[i % len(kinds)] for i in range(depth)]) + "\n"


def timed(command: list[str], runs: int) -> float | None:
    """Median seconds of `command` over `runs` runs, or None if it fails."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env={**os.environ, "COLUMNS": "120"})
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(f"  ! {' '.join(command[:4])}... failed: {done.stderr.decode()[-300:]}", file=sys.stderr)
            return None
    return statistics.median(times)


def archcalc(*args: str) -> list[str]:
    return [sys.executable, "-m", "archcalc", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs

    print(f"median of {runs} runs, whole processes, on {os.cpu_count()} CPU(s)\n")
    ours = timed(archcalc("show", str(ROOT / "specs/alexnet.toml")), runs)
    theirs = timed([sys.executable, "-c", TORCHINFO_ALEXNET], runs)
    startup = timed([sys.executable, "-c", "pass"], runs)
    print(f"{'AlexNet':<34}{'archcalc show':>16}{'torchinfo summary':>20}{'ratio':>8}")
    ratio = f"{theirs / ours:.1f}x" if ours and theirs else "—"
    print(f"{'':<34}{ours:>15.3f}s{(f'{theirs:.3f}s' if theirs else 'not installed'):>20}{ratio:>8}")
    print(f"{'(python -c pass alone)':<34}{startup:>15.3f}s\n")

    print(f"{'depth':<34}{'layers':>8}{'seconds':>10}{'ms/layer':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for symbolic, depths in ((False, (250, 500, 1000, 2000)), (True, (125, 250, 500))):
            for depth in depths:
                path = Path(tmp) / f"deep{depth}{'s' * symbolic}.toml"
                path.write_text(deep_spec(depth, symbolic))
                seconds = timed(archcalc("show", str(path)), max(1, runs // 2))
                label = "symbolic (input 16×H×W)" if symbolic else "concrete (input 16×64×64)"
                print(f"{label:<34}{depth:>8}{seconds:>10.2f}{1000 * seconds / depth:>10.2f}")


if __name__ == "__main__":
    main()
