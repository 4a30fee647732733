"""The table of predicted vs measured training memory on the H200 recordings (docs/memory-model.md), from the fixtures.

    PYTHONPATH=. python3 benchmarks/timeline_table.py [--precision fp32|bf16|fp16] [recordings.json ...]

Every run of the recordings (tests/fixtures/measurements/h200-training-memory.json by default) whose
network has a spec here (SPECS) and whose precision archcalc models (MODELLED) gets a row: the step's
peak predicted and measured (max_memory_allocated), then each phase's predicted / measured; the
others are listed below the table. A new recording, network or precision needs only an entry here.
"""

import json
import sys
from pathlib import Path

import archcalc

ROOT = Path(__file__).resolve().parent.parent
# recording's model -> (spec, name in the table)
SPECS = {"course-alexnet": ("alexnet.toml", "AlexNet (course)"), "lenet5": ("lenet5.toml", "LeNet-5"),
         "tv-resnet18": ("resnet18.toml", "ResNet-18"), "tv-resnet50": ("resnet50.toml", "ResNet-50"),
         "tv-vgg16_bn": ("vgg16_bn.toml", "VGG-16-BN"), "tv-vit_b_16": ("vit_b_16.toml", "ViT-B/16"),
         "gpt2-sdpa": ("gpt2.toml", "GPT-2 (SDPA)")}
VALUES = {"gpt2-sdpa": {"T": 1024}}  # the recording's sequences of 1024 tokens
# recording's dtype -> analyze()'s keyword arguments for it (bf16 and fp16: autocast, Lightning's bf16-mixed, 16-mixed)
MODELLED = {"fp32": {}, "bf16": {"autocast": "bfloat16"}, "fp16": {"autocast": "float16"}}
PHASES = {"forward": "forward_peak", "backward": "backward_peak", "optimizer": "step_peak"}
GiB = 2**30


def rows(runs):
    """(sort key, table row) for each run archcalc predicts, and the names of those it does not."""
    out, missing = [], []
    for run in runs:
        if run["model"] not in SPECS or run["dtype"] not in MODELLED:
            missing.append(f"{run['model']} {run['dtype']} {run['optimizer']} {run['batch']}")
            continue
        spec, name = SPECS[run["model"]]
        report = archcalc.analyze(archcalc.load(ROOT / "specs" / spec), batch=run["batch"], optimizer=run["optimizer"],
                                  device="cuda", **MODELLED[run["dtype"]], **VALUES.get(run["model"], {}))
        memory = report.memory
        ours = memory.training.at(run["batch"])
        ratios = " | ".join(f"{memory.phase(p).at(run['batch']) / run[key]:.3f}" for p, key in PHASES.items())
        row = (f"| {name} | {run['dtype']} | {run['optimizer']} | {run['batch']} | {memory.peak_phase()} "
               f"| {ours / GiB:.3f} GiB | {run['step_max'] / GiB:.3f} GiB | {ours / run['step_max']:.3f} | {ratios} |")
        out.append(((list(SPECS).index(run["model"]), run["dtype"], run["optimizer"], run["batch"]), row))
    return out, missing


def main(paths, precision=None) -> None:
    runs = [run for path in paths for run in json.loads(Path(path).read_text())["runs"]
            if precision is None or run["dtype"] == precision]
    table, missing = rows(runs)
    print("| network | precision | optimizer | batch | peak phase | predicted | measured | predicted / measured "
          "| forward | backward | optimizer |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for _, row in sorted(table):
        print(row)
    print()
    print("not predicted:", ", ".join(missing) or "none")


if __name__ == "__main__":
    args = sys.argv[1:]
    only = args[args.index("--precision") + 1] if "--precision" in args else None
    files = [a for a in args if a.endswith(".json")]
    main(files or [ROOT / "tests/fixtures/measurements/h200-training-memory.json"], only)
