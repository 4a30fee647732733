"""`archcalc show --format json` of a 500-layer stack in C×H×W with H, W free: whole processes, median of 5.

    python benchmarks/deep_stack.py [--runs 5] [--depth 500] [--profile]

The stack is bench_show.py's symbolic one (input 16×H×W: strided convs, "same" convs, upsampling, ceil-mode
pooling), so every byte count is a formula. Wall time is what a user waits; CPU time (the child's user +
system) is what to compare on a shared machine, where the load average (printed) inflates wall time.
--profile runs the command once in this process under cProfile and prints where the time goes, the
memory timeline's share (archcalc/memory/timeline/) apart.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_show import deep_spec  # noqa: E402  (the same stack as bench_show's symbolic depth)

# bench_show.py's figure for `show` as a table before the memory timeline existed, and `show --format json` with the
# timeline's first version (docs/performance.md)
REFERENCE = {"show, before the memory timeline": 0.74, "show --format json, the timeline's first version": 2.27}
TARGET = 1.0


def run(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, cwd=HERE.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr.decode()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def profile(path: Path) -> None:
    sys.path.insert(0, str(HERE.parent))  # this checkout's archcalc, as `python -m archcalc` from its root finds it
    os.environ.setdefault("SYMPY_CACHE_SIZE", "10000")  # as the command sets it (archcalc.cli.main.run)
    from archcalc.cli.main import main

    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        profiler.runcall(main, ["show", str(path), "--format", "json"])
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    timeline = next((v[3] for k, v in stats.stats.items() if k[0].endswith(os.path.join("timeline", "step.py")) and k[2] == "simulate"), 0.0)
    print(f"\nprofiled in process (cProfile slows sympy down, shares are what to read): {total:.2f} s")
    print(f"  the timeline's share (timeline.simulate, cumulative): {timeline:.2f} s = {100 * timeline / total:.0f}%")
    stats.sort_stats("cumulative").print_stats(r"archcalc", 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--depth", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"deep{options.depth}.toml"
        path.write_text(deep_spec(options.depth, symbolic=True))
        command = [sys.executable, "-m", "archcalc", "show", str(path), "--format", "json"]
        run(command)  # bytecode caches written, files in the page cache
        times = [run(command) for _ in range(options.runs)]
        wall, cpu = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(f"{options.depth}-layer stack in 16×H×W, show --format json, median of {options.runs} whole processes")
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPU(s)")
        print(f"  {'wall':<48}{wall:>7.3f} s   (target under {TARGET} s)")
        print(f"  {'CPU (user + system)':<48}{cpu:>7.3f} s")
        for label, seconds in REFERENCE.items():
            print(f"  {'reference: ' + label:<48}{seconds:>7.3f} s")
        if options.profile:
            profile(path)


if __name__ == "__main__":
    main()
