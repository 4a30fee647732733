"""How fast `show` is on GPT-2: symbolic in T and B, with T given, folded by --depth, beside AlexNet.

    python benchmarks/bench_transformer.py [--runs 5]

Whole processes (python start-up included, as a user sees them), one after the other, median of
--runs: the wall time, the CPU time (user + system) the process used, which other jobs on the
machine disturb less, and the fastest wall time (the nearest to a quiet machine). Python's bytecode caches are used, as an installed package has them (a
machine that sets PYTHONDONTWRITEBYTECODE would otherwise compile archcalc's sources in every run):
they are written once to a folder under the system's temporary directory, before the timed runs.
On a machine that other jobs load, compare within a run (the AlexNet line is the yardstick), and
read the load average printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "PYTHONPATH": str(ROOT), "COLUMNS": "200", "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "archcalc-bench-pycache")}


def run(args: list[str] | None) -> tuple[float, float]:
    """One whole process: (wall seconds, CPU seconds)."""
    command = [sys.executable, "-c", "pass"] if args is None else [sys.executable, "-m", "archcalc", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    for _, args in CASES:
        run(args)  # writes the bytecode caches; not timed
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'show':40s} {'wall s':>7s} {'CPU s':>7s} {'best':>7s}  (medians of {runs} processes; best: the fastest wall)")
    for label, args in CASES:
        times = [run(args) for _ in range(runs)]
        walls = [t[0] for t in times]
        print(f"{label:40s} {statistics.median(walls):7.3f} {statistics.median(t[1] for t in times):7.3f} {min(walls):7.3f}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
