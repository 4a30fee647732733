"""Record a training step's memory phase by phase, and one inference forward, on a CUDA GPU.

The method of tests/fixtures/measurements/h200-training-memory.json (two warm-up steps, then one step
measured: reset_peak_memory_stats() before each phase, max_memory_allocated() after it), for the
specs here (graphs and modern layers included) and for inference (eval, inference_mode), which no
recording has yet. It writes a NEW file (never overwrite a recording):

    PYTHONPATH=. python3 benchmarks/gpu_timeline.py specs/resnet18.toml:64 specs/unet.toml:8 -o h200-timeline-DATE.json

Not run on a GPU yet. Each record holds archcalc's prediction beside
the measurement, so the table of docs/memory-model.md can be extended from the file.
"""

import argparse
import json
import sys

import torch

import archcalc
from archcalc.backends.build import build

OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=1e-5), "momentum": lambda p: torch.optim.SGD(p, lr=1e-5, momentum=0.9),
              "adam": lambda p: torch.optim.Adam(p, lr=1e-5), "adamw": lambda p: torch.optim.AdamW(p, lr=1e-5)}


def record(path: str, batch: int, optimizer: str) -> dict:
    cuda = torch.cuda
    spec = archcalc.load(path)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, device="cuda")
    model = build(spec).cuda().train()
    x = torch.randn(batch, *map(int, report.input), device="cuda")
    with torch.no_grad():
        out = model(x)
    targets = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]), device="cuda")
    del out
    opt = OPTIMIZERS[optimizer](model.parameters())
    run = {"spec": path, "batch": batch, "optimizer": optimizer, "dtype": "fp32"}
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        cuda.synchronize()
        cuda.reset_peak_memory_stats()
        loss = torch.nn.functional.cross_entropy(model(x), targets)
        cuda.synchronize()
        forward = cuda.max_memory_allocated()
        cuda.reset_peak_memory_stats()
        loss.backward()
        cuda.synchronize()
        backward = cuda.max_memory_allocated()
        del loss
        cuda.reset_peak_memory_stats()
        opt.step()
        cuda.synchronize()
        if step == 2:
            run |= {"forward_peak": forward, "backward_peak": backward, "step_peak": cuda.max_memory_allocated()}
    del opt
    for p in model.parameters():
        p.grad = None
    model.eval()
    cuda.synchronize()
    base = cuda.memory_allocated()
    cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(x)
    cuda.synchronize()
    run |= {"inference_peak": cuda.max_memory_allocated(), "inference_start": base}
    memory = report.memory
    run["predicted"] = {phase: memory.phase(phase).at(batch) for phase in ("forward", "backward", "optimizer")}
    run["predicted"]["inference"] = memory.inference_peak.at(batch)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", metavar="SPEC:BATCH")
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    runs = []
    for case in args.cases:
        path, batch = case.rsplit(":", 1)
        runs.append(record(path, int(batch), args.optimizer))
        print(json.dumps(runs[-1]), flush=True)
    data = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "runs": runs,
            "method": "benchmarks/gpu_timeline.py: two warm-up steps, then one measured phase by phase; inference: "
                      "eval, inference_mode, one forward, peak minus nothing (inference_start is what was allocated before)"}
    with open(args.output, "x") as f:
        json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
