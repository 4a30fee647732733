"""How fast `show` is on GPT-2: symbolic in T and B, with T given, folded by --depth, beside AlexNet.

    python benchmarks/bench_transformer.py [--runs 5]

Whole processes (python start-up included, as a user sees them), one after the other, median of
--runs. On a machine that other jobs load, compare within a run (the AlexNet line is the yardstick).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("alexnet.toml (22 layers)", ["show", "specs/alexnet.toml"]),
    ("gpt2.toml symbolic T, B (102 layers)", ["show", "specs/gpt2.toml"]),
    ("gpt2.toml --set T=1024", ["show", "specs/gpt2.toml", "--set", "T=1024"]),
    ("gpt2.toml --depth 1 (symbolic)", ["show", "specs/gpt2.toml", "--depth", "1"]),
    ("gpt2.toml --depth 1 --set T=1024", ["show", "specs/gpt2.toml", "--depth", "1", "--set", "T=1024"]),
    ("gpt2.toml --format json (symbolic)", ["show", "specs/gpt2.toml", "--format", "json"]),
    ("python -c pass", None),
]


def run(args: list[str] | None) -> float:
    command = [sys.executable, "-c", "pass"] if args is None else [sys.executable, "-m", "archcalc", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"{'show':40s} seconds (median of {runs})")
    for label, args in CASES:
        print(f"{label:40s} {statistics.median(run(args) for _ in range(runs)):7.3f}")


if __name__ == "__main__":
    main()
