"""How fast graphs are: ResNet-50 beside AlexNet, a 10,000-layer graph of repeated blocks, ResNet-18 in symbolic H, W.

    python benchmarks/bench_graph.py [--runs 5]

Whole processes (python start-up included, as a user sees them), run one after the other, median
of --runs. The deep graphs repeat a ResNet basic block (5 or 7 layers a use, a projection every
50th) in stages of up to 1,000 uses; `show --depth 1` folds each stage into one row, so the
figure is the analysis (shapes, parameters, FLOPs, memory) and not the terminal drawing 10,000 rows
(`--format json` writes every row).
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
sys.path.insert(0, str(ROOT))
import archcalc  # noqa: E402  (the row counts, in this process)

BLOCK = """[blocks.basic]
[[blocks.basic.layers]]
name = "conv1"
type = "conv"
out_channels = "planes"
kernel_size = 3
stride = "stride"
padding = 1
bias = false
[[blocks.basic.layers]]
name = "bn1"
type = "batchnorm"
activation = "relu"
[[blocks.basic.layers]]
name = "conv2"
type = "conv"
out_channels = "planes"
kernel_size = 3
padding = 1
bias = false
[[blocks.basic.layers]]
name = "bn2"
type = "batchnorm"
[[blocks.basic.layers]]
name = "downsample.0"
type = "conv"
from = "input"
when = "downsample"
out_channels = "planes"
kernel_size = 1
stride = "stride"
bias = false
[[blocks.basic.layers]]
name = "downsample.1"
type = "batchnorm"
when = "downsample"
[[blocks.basic.layers]]
name = "add"
type = "add"
from = ["bn2", "downsample.1"]
activation = "relu"
"""


def deep_graph(uses: int) -> str:
    """A graph of `uses` basic blocks (about 5.1 layers each), in stages of at most 1,000 uses."""
    stages = []
    for stage in range((uses + 999) // 1000):
        stages.append(f'[[layers]]\nname = "stage{stage}"\ntype = "block"\nblock = "basic"\n'
                      f"repeat = {min(1000, uses - 1000 * stage)}\nplanes = 64\nstride = 1\n"
                      'downsample = "index % 50 == 0"\n')
    return '[model]\nname = "deep"\ninput = [64, 32, 32]\n\n' + BLOCK + "\n".join(stages)


def timed(command: list[str], runs: int) -> float:
    times = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def show(path: str | Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "archcalc", "show", str(path), *flags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    specs = ROOT / "specs"

    alexnet, resnet50 = timed(show(specs / "alexnet.toml"), runs), timed(show(specs / "resnet50.toml"), runs)
    print(f"{'show':34} {'seconds':>8}")
    print(f"{'alexnet.toml (22 layers)':34} {alexnet:8.3f}")
    print(f"{'resnet50.toml (176 layers)':34} {resnet50:8.3f}   {resnet50 / alexnet:.2f}x AlexNet (target <= 1.5x)")
    reference = timed(show(specs / "alexnet_symbolic.toml"), runs)
    print(f"{'alexnet_symbolic.toml (H, W)':34} {reference:8.3f}")
    symbolic = timed(show(specs / "resnet18_symbolic.toml"), runs)
    print(f"{'resnet18_symbolic.toml (H, W)':34} {symbolic:8.3f}   {symbolic / reference:.2f}x AlexNet's (target < 1 s)")
    print()
    print(f"{'repeated blocks':20} {'layers':>7} {'--depth 1':>10} {'ms/layer':>9} {'--format json':>14} {'ms/layer':>9}"
          f" {'in-process':>11} {'ms/layer':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for uses in (200, 400, 1000, 2000):
            path = Path(folder) / f"deep{uses}.toml"
            path.write_text(deep_graph(uses))
            inner = []
            for _ in range(runs):  # load, analyze, memory and totals, without python's start-up and imports
                start = time.perf_counter()
                report = archcalc.analyze(archcalc.load(path))
                report.memory, report.totals  # noqa: B018
                inner.append(time.perf_counter() - start)
            layers, inner = len(report.rows), statistics.median(inner)
            folded = timed(show(path, "--depth", "1"), runs)
            json = timed(show(path, "--format", "json"), runs)
            print(f"{'basic block':20} {layers:7,} {folded:10.3f} {1000 * folded / layers:9.3f} {json:14.3f} {1000 * json / layers:9.3f}"
                  f" {inner:11.3f} {1000 * inner / layers:9.3f}")


if __name__ == "__main__":
    main()
