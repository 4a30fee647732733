"""The GPU checks of the memory and backend issues, as one prepared run for a lent device.

    PYTHONPATH=. python3 benchmarks/gpu_session.py [--out DIR] [--quick]

On a CUDA machine, for the course's AlexNet:
  1. verify: every number of the report against torch (the CPU oracle, as in CI);
  2. bench at batch 128 in float32 and bfloat16 (autocast), without and with torch.compile;
  3. memory: training steps (pure float32, Adam) at two batch sizes; torch.cuda.max_memory_allocated()
     over the timed steps, after the warm-up, beside archcalc's predicted training bytes;
  4. the bench harness against a hand-written loop of the same steps (benchmarks/bench_harness.py).
It prints a summary for docs/performance.md and writes it, with every figure, to DIR/gpu_session.json
and DIR/gpu_session.md (DIR: $OUT where the device tool sets it). Expect a few minutes, most
of it torch.compile. --quick runs each step briefly (to try the script on a CPU).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import torch

import archcalc
from archcalc.backends.bench import Options, bench
from archcalc.backends.verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_harness

SPEC = "specs/alexnet.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps, batch, batches = (2, 4, (2, 4)) if args.quick else (50, 128, (64, 256))
    lines = [f"archcalc GPU session, {datetime.date.today()}: {_device_name(device)}, torch {torch.__version__}", ""]
    data: dict = {"device": _device_name(device), "torch": torch.__version__, "date": str(datetime.date.today())}

    checks = verify(archcalc.analyze(archcalc.load(SPEC), batch=2))
    wrong = [c for c in checks if not c.ok]
    data["verify"] = {"checks": len(checks), "wrong": [str(c) for c in wrong]}
    lines.append(f"verify {SPEC}: {len(checks) - len(wrong)}/{len(checks)} checks agree with torch")
    _flush(args.out, data, lines)

    report = archcalc.analyze(archcalc.load(SPEC))
    lines += ["", f"bench {SPEC}, batch {batch}, {steps} steps:", "",
              "| dtype | compile | train ms/step | images/s | TFLOP/s | of peak | inference ms/step | images/s |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    data["bench"] = []
    for dtype in ("float32", "bfloat16"):
        for compiled in (False, True):
            result = bench(report, Options(device=device, batch=batch, dtype=dtype, amp=True, compile=compiled, steps=steps))
            data["bench"].append(result.to_dict())
            share = result.share(result.train)
            lines.append(
                f"| {dtype} | {'yes' if compiled else 'no'} | {result.train.ms_per_step:.2f} | {result.train.images_per_s:,.0f} "
                f"| {result.train.tflops:.1f} | {'—' if share is None else f'{share:.0f}%'} "
                f"| {result.inference.ms_per_step:.2f} | {result.inference.images_per_s:,.0f} |"
            )
            _flush(args.out, data, lines)

    lines += ["", "training memory, float32, Adam (measured: torch.cuda.max_memory_allocated over the timed steps):", "",
              "| batch | predicted | measured | predicted / measured |", "|---:|---:|---:|---:|"]
    data["memory"] = []
    for b in batches:
        result = bench(report, Options(device=device, batch=b, optimizer="adam", steps=max(2, steps // 5)))
        predicted, measured = result.memory_predicted, result.memory_measured
        data["memory"].append({"batch": b, "predicted_bytes": predicted, "measured_bytes": measured})
        ratio = f"{predicted / measured:.3f}" if measured else "—"
        lines.append(f"| {b} | {_gib(predicted)} | {_gib(measured)} | {ratio} |")
        _flush(args.out, data, lines)

    hand = bench_harness.hand_written(SPEC, batch, steps, 5, device)
    ours = bench_harness.harness(SPEC, batch, steps, 5, device)
    data["harness"] = {"hand_written_ms": hand, "archcalc_bench_ms": ours}
    lines += ["", f"harness against a hand-written loop (float32, batch {batch}): train {ours[0]:.3f} vs {hand[0]:.3f} ms "
              f"({ours[0] / hand[0] - 1:+.1%}), inference {ours[1]:.3f} vs {hand[1]:.3f} ms ({ours[1] / hand[1] - 1:+.1%})"]
    _flush(args.out, data, lines)
    print("\n".join(lines))


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "CPU"


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.2f} GiB"


def _flush(out: str, data: dict, lines: list[str]) -> None:
    """Write what is known so far: a run cut short still leaves its figures."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gpu_session.json").write_text(json.dumps(data, indent=2, default=str))
    (Path(out) / "gpu_session.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
