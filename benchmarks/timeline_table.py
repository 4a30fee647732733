"""The table of predicted vs measured training memory on the H200 recordings (README), from the fixtures.

    PYTHONPATH=. python3 benchmarks/timeline_table.py
"""

import json
from pathlib import Path

import archcalc

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"course-alexnet": "alexnet.toml", "lenet5": "lenet5.toml", "tv-resnet18": "resnet18.toml",
         "tv-resnet50": "resnet50.toml", "tv-vit_b_16": "vit_b_16.toml", "gpt2-sdpa": "gpt2.toml"}
VALUES = {"gpt2-sdpa": {"T": 1024}}  # the recording's sequences of 1024 tokens
PHASES = {"forward": "forward_peak", "backward": "backward_peak", "optimizer": "step_peak"}

runs = json.loads((ROOT / "tests/fixtures/measurements/h200-training-memory.json").read_text())["runs"]
print("| network | precision | optimizer | batch | peak phase | predicted | measured | predicted / measured |")
print("|---|---|---|---:|---|---:|---:|---:|")
missing = []
for run in runs:
    if run["model"] not in SPECS or run["dtype"] != "fp32":
        missing.append(f"{run['model']} {run['dtype']} {run['optimizer']} {run['batch']}")
        continue
    report = archcalc.analyze(archcalc.load(ROOT / "specs" / SPECS[run["model"]]), batch=run["batch"],
                              optimizer=run["optimizer"], device="cuda", **VALUES.get(run["model"], {}))
    ours = report.memory.training.at(run["batch"])
    phase = report.memory.peak_phase()
    print(f"| {run['model']} | fp32 | {run['optimizer']} | {run['batch']} | {phase} | {ours / 2**30:.3f} GiB "
          f"| {run['step_max'] / 2**30:.3f} GiB | {ours / run['step_max']:.3f} |")
print()
print("not predicted:", ", ".join(missing))
