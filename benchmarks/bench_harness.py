"""Does `archcalc bench` add overhead? Its harness against a hand-written loop of the same steps, same process.

    python benchmarks/bench_harness.py [SPEC] [--batch 64] [--steps 50] [--rounds 5] [--device cpu]

Both run the same network (archcalc.torch.build), batch, loss (cross-entropy on random
classes), optimizer (plain SGD) and number of warm-up and timed steps. The harness runs
with a live progress bar on stderr, as the command line does. Rounds alternate between
the two, and which goes first, so that drifts in the machine's speed hit both; the medians
and the minimums (the least disturbed round) are compared.
Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.progress import Progress

import archcalc
import archcalc.torch
from archcalc.backends.bench import Options, bench


def hand_written(spec: str, batch: int, steps: int, warmup: int, device: str) -> tuple[float, float]:
    """ms per training step and per inference step, the way one would write the loop by hand."""
    torch.manual_seed(0)
    model = archcalc.torch.build(spec).to(device)
    report = archcalc.analyze(archcalc.load(spec))
    x = torch.randn(batch, *report.input, device=device)
    target = torch.randint(int(report.output[0]), (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    out = []
    for step, mode in ((train, True), (infer, False)):
        model.train(mode)
        for _ in range(warmup):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        out.append(1000 * (time.perf_counter() - start) / steps)
    return out[0], out[1]


def harness(spec: str, batch: int, steps: int, warmup: int, device: str) -> tuple[float, float]:
    report = archcalc.analyze(archcalc.load(spec))
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bench", total=None)
        result = bench(report, Options(device=device, batch=batch, steps=steps, warmup=warmup),
                       lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total))
    return result.train.ms_per_step, result.inference.ms_per_step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="specs/lenet5.toml")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"archcalc bench": [], "hand-written": []}
    contenders = {"hand-written": hand_written, "archcalc bench": harness}
    for i in range(args.rounds):
        for name in sorted(contenders, reverse=bool(i % 2)):
            runs[name].append(contenders[name](args.spec, args.batch, args.steps, args.warmup, args.device))
    print(f"{args.spec}: batch {args.batch}, {args.steps} steps after {args.warmup} warm-up, {args.rounds} rounds, "
          f"{args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'ms per step':<16}{'train':>18}{'inference':>18}")
    print(f"{'':<16}{'median':>9}{'min':>9}{'median':>9}{'min':>9}   every round (train)")
    best = {}
    for name, values in runs.items():
        best[name] = [f(v[i] for v in values) for i in (0, 1) for f in (statistics.median, min)]
        rounds = " ".join(f"{v[0]:.2f}" for v in values)
        print(f"{name:<16}" + "".join(f"{x:>9.3f}" for x in best[name]) + f"   {rounds}")
    ratio = [best["archcalc bench"][i] / best["hand-written"][i] - 1 for i in range(4)]
    print(f"{'harness / hand':<16}" + "".join(f"{r:>+9.1%}" for r in ratio))


if __name__ == "__main__":
    main()
