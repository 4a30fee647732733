"""How much of torchvision, timm and Hugging Face `archcalc import` writes exactly: a table per family.

For each model (random weights, built from its constructor or config; nothing downloaded): import it,
then compare the spec with torch by the probes the tests use (tests/oracle/torch_probe.py):
parameters, FLOPs at batch 1 (FlopCounterMode), bytes autograd keeps at batch 2 in training
(saved_tensors_hooks; an attention with dropout read on the math kernel, the CPU's fallback), and the output's
shape. A model is exact when all four agree; refused when
the import exits with its list of causes (the first cause is counted).

Run by hand, not in CI (minutes on two cores; vit_h_14 and regnet_y_128gf peak at 4.7 GB), from the repository root:
    python benchmarks/import_coverage.py [--only torchvision|segmentation|video|detection|timm|hf] [--models a,b,...] [--jsonl out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (torchvision's ops beside CPU torch; HF offline)
from archcalc.backends import importer  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes, torch_counts  # noqa: E402

HF_FIXTURES = ROOT / "tests" / "fixtures" / "hf"
NATIVE = {"inception_v3": [3, 299, 299],  # its auxiliary head needs 299×299 (at 224 its 5×5 conv meets a 3×3 map)
          "s3d": [3, 16, 224, 224]}  # its last pool is 2×7×7: at 112×112 the map is 3×3, too small (torch refuses it too)
TIMM = ["resnet50", "efficientnet_b0", "vit_small_patch16_224", "convnext_nano", "mobilenetv3_small_100"]


def family(name: str) -> str:
    if name.startswith("wide_resnet"):
        return "wide_resnet"
    return re.sub(r"\d.*$", "", name.split("_")[0]) or name


def torchvision_models(kind: str) -> list[tuple[str, str, object, list]]:
    """(source, family, constructor, input shape) of every torchvision model of a kind."""
    import torchvision

    modules = {"classification": torchvision.models, "segmentation": torchvision.models.segmentation,
               "video": torchvision.models.video, "detection": torchvision.models.detection}
    shape = [3, 16, 112, 112] if kind == "video" else [3, 224, 224]
    out = []
    for name in torchvision.models.list_models(module=modules[kind]):
        size = NATIVE.get(name, shape)
        def build(name=name):
            extra = {"weights_backbone": None} if kind in ("segmentation", "detection") else {}  # else they download
            return torchvision.models.get_model(name, weights=None, **extra)
        source = "torchvision" if kind == "classification" else f"torchvision {kind}"
        out.append((source, family(name), name, build, size))
    return out


def timm_models() -> list:
    import timm

    return [("timm", family(name), name, (lambda name=name: timm.create_model(name, pretrained=False)), [3, 224, 224])
            for name in TIMM]


def hf_models() -> list:
    from archcalc.backends.importer import hf

    out = []
    for folder in sorted(p for p in HF_FIXTURES.iterdir() if (p / "config.json").is_file()):
        def build(folder=folder):
            config = hf.config(str(folder))
            return getattr(hf.transformers(), config.architectures[0])(config)
        out.append(("hf", folder.name, folder.name, build, None))
    return out


def _sample(report, batch: int):
    from archcalc.backends.build import sample as build_sample

    return build_sample(report, batch, torch.float32)


def on_the_cpu(text: str) -> str:
    """The spec as torch runs it on the CPU: an attention with dropout on SDPA's math fallback (no fused CPU kernel
    takes dropout), which archcalc's kernel = "math" models; as imported, the fused kernel (CUDA's, with dropout)."""
    parts = re.split(r"(?m)^(?=\[)", text)
    return "".join(part.replace('type = "attention"\n', 'type = "attention"\nkernel = "math"\n', 1)
                   if 'type = "attention"' in part and "\ndropout = " in part and "\nkernel = " not in part else part
                   for part in parts)


def flops_of_one(module, x1, x2) -> int:
    """FLOPs at batch 1; half batch 2's where torch refuses one sample in training (a batch norm of one value per channel)."""
    try:
        return flops(module, x1)
    except ValueError as error:
        if "Expected more than 1 value per channel" not in str(error):
            raise
        return flops(module, x2) // 2


def measure(source: str, name: str, build, shape) -> dict:
    torch.manual_seed(0)
    row = {"source": source, "model": name}
    try:
        module = build()
    except Exception as error:
        return row | {"status": "skipped", "cause": f"cannot build: {type(error).__name__}: {error}"[:200]}
    target = module
    if source == "hf":
        from archcalc.backends.importer import hf

        target = importer.load_target(f"hf:{HF_FIXTURES / name}")  # on the meta device, as the CLI does
        shape = hf.default_input(target)
    start = time.perf_counter()
    try:
        text = importer.import_module(target, shape)
    except importer.ImportFailed as error:
        cause, _ = error.causes()[0]
        return row | {"status": "refused", "cause": cause, "causes": len(error.causes()), "operations": len(error.problems),
                      "all_causes": [c for c, _ in error.causes()], "seconds": time.perf_counter() - start, "capture": error.capture}
    except archcalc.ArchcalcError as error:
        return row | {"status": "refused", "cause": str(error).splitlines()[0][:300], "seconds": time.perf_counter() - start}
    row["seconds"] = time.perf_counter() - start
    try:
        spec = archcalc.loads(text)
        values = {name: 16 for name in shape if isinstance(name, str)}  # T = 16 tokens for a text model
        one, two = archcalc.analyze(spec, B=1, **values), archcalc.analyze(spec, B=2, **values)
        checks = {}
        checks["params"] = (sum(p.numel() for p in module.parameters() if p.requires_grad), int(one.totals["params"]))
        x1, x2 = _sample(one, 1), _sample(two, 2)
        if source == "hf":  # attention forced to the math kernel: FlopCounterMode counts QKᵀ and AV, as archcalc does
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                checks["flops"] = (flops(module, x1), int(one.totals["flops"]))
        else:
            checks["flops"] = (flops_of_one(module, x1, x2), int(torch_counts(one, "flops")))
        cpu = two if on_the_cpu(text) == text else archcalc.analyze(archcalc.loads(on_the_cpu(text)), B=2, **values)
        checks["saved"] = (saved_bytes(module, x2), int(cpu.memory.value("saved_for_backward_bytes")))
        if cpu is not two:
            row["saved_as_imported"] = int(two.memory.value("saved_for_backward_bytes"))
        with torch.no_grad():  # in training, as imported: googlenet's auxiliary heads are outputs then
            out = module.train()(x2)
        items = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]
        checks["output"] = ([list(t.shape[1:]) for t in items], [[int(d) for d in row.output] for row in one.output_rows])
    except Exception as error:
        return row | {"status": "error", "cause": f"{type(error).__name__}: {error}"[:300], "trace": traceback.format_exc()[-800:]}
    wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
    return row | {"status": "exact" if not wrong else "inexact", "checks": checks, "wrong": sorted(wrong)}


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[(row["source"], family(row["model"]) if row["source"] != "hf" else row["model"])].append(row)
    lines = ["| source | family | tried | exact | inexact | refused | causes of refusal | import s (max) |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for (source, fam), items in groups.items():
        count = defaultdict(int)
        for row in items:
            count[row["status"]] += 1
        causes = defaultdict(int)
        for row in items:
            if row["status"] in ("refused", "error", "inexact"):
                causes[row.get("cause") or "wrong " + ", ".join(row.get("wrong", []))] += 1
        why = "; ".join(f"{n}× {c[:90]}" for c, n in sorted(causes.items(), key=lambda kv: -kv[1]))
        seconds = max((row.get("seconds", 0) for row in items), default=0)
        lines.append(f"| {source} | {fam} | {len(items)} | {count['exact']} | {count['inexact'] + count['error']} | {count['refused']} "
                     f"| {why} | {seconds:.1f} |")
    total = defaultdict(int)
    for row in rows:
        total[row["status"]] += 1
    lines.append(f"| all | | {len(rows)} | {total['exact']} | {total['inexact'] + total['error']} | {total['refused']} | | |")
    return "\n".join(lines)


def causes(rows: list[dict]) -> str:
    """Each cause of refusal: the models it refuses, and those it alone refuses (what a new kind for it would unlock)."""
    refused = [row for row in rows if row["status"] == "refused"]
    counts: dict[str, list] = defaultdict(list)
    for row in refused:
        for cause in row.get("all_causes", [row.get("cause", "")]):
            counts[cause].append(row)
    lines = ["| cause | models refused | refused for it alone |", "|---|---:|---|"]
    for cause, items in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        alone = [row["model"] for row in items if len(row.get("all_causes", [cause])) == 1]
        lines.append(f"| {cause[:100]} | {len(items)} | {len(alone)} {', '.join(alone[:6])}{'...' if len(alone) > 6 else ''} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["torchvision", "segmentation", "video", "detection", "timm", "hf"])
    parser.add_argument("--models", help="comma-separated model names")
    parser.add_argument("--jsonl", help="append one JSON line per model here")
    parser.add_argument("--skip", help="comma-separated model names not to try (too slow here)")
    parser.add_argument("--from-jsonl", help="print the tables of an earlier run's --jsonl, importing nothing")
    args = parser.parse_args()
    if args.from_jsonl:
        with open(args.from_jsonl, encoding="utf-8") as found:
            rows = [json.loads(line) for line in found]
        print(table(rows))
        print()
        print(causes(rows))
        return 0
    torch.set_num_threads(2)
    candidates = []
    if args.only in (None, "torchvision"):
        candidates += torchvision_models("classification")
    if args.only in (None, "segmentation"):
        candidates += torchvision_models("segmentation")
    if args.only in (None, "video"):
        candidates += torchvision_models("video")
    if args.only in (None, "detection"):  # refused before any capture: the refusal's message is the result
        candidates += torchvision_models("detection")
    if args.only in (None, "timm"):
        candidates += timm_models()
    if args.only in (None, "hf"):
        candidates += hf_models()
    wanted = set(args.models.split(",")) if args.models else None
    skipped = set(args.skip.split(",")) if args.skip else set()
    rows = []
    for source, _, name, build, shape in candidates:
        if (wanted and name not in wanted) or name in skipped:
            continue
        row = measure(source, name, build, shape)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")
    print(table(rows))
    print()
    print(causes(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
