"""The memory timeline's numbers, case by case: a digest to compare before and after a refactoring.

    PYTHONPATH=. python3 benchmarks/timeline_identity.py -o /tmp/identity-main.jsonl
    PYTHONPATH=. python3 benchmarks/timeline_identity.py -o /tmp/identity-new.jsonl --compare /tmp/identity-main.jsonl

Every spec in specs/ (at the values its tests use where sizes are free, and with them free), × dtype float32,
bfloat16 × optimizer sgd, momentum, adam × device cpu, cuda × autocast off, bfloat16, at batch 2 and with B a
symbol; resnet18 with every block checkpointed; then networks drawn by the oracle tests' strategies (plain stacks,
graphs, the newer kinds, checkpointed blocks, token networks, GPT-2), each under a few of those settings; then
what main added after the package's branch point (`added`: the kinds real models need, tiny Llamas, broadcast
parameters, ConvNeXt's block, ViT's bare parameters, two outputs, Llama-3-8B). Per case:
each phase's candidates (the lines of its peak and the bytes alive by kind), the inference peak, the step's peak,
both ways of summing gradients (in place, and out of place as under the CPU oracle), the CUDA allocator replay's
event trace (its length and a hash), and `Report.memory.to_dict()`. The drawn specs are saved beside the output
(`.cases.json`) the first time and read back after, so that every run compares the same networks.
Needs torch (the strategies build torch modules); prints one digest of everything.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import archcalc  # noqa: E402
from archcalc.memory import allocator  # noqa: E402

TEST_VALUES = {"alexnet_symbolic": {"H": 67, "W": 67, "classes": 10}, "resnet18_symbolic": {"H": 40, "W": 40},
               "gpt2": {"T": 64}, "lstm_lm": {"T": 8}, "resnet50": {"checkpointing": 1}}
COMBOS = list(itertools.product(["float32", "bfloat16"], ["sgd", "momentum", "adam"], ["cpu", "cuda"], [None, "bfloat16"]))

TRACE: list = []


def _recording(replay):
    def wrapped(events):
        ids: dict = {}
        trace = [(op, None if s is None else s if isinstance(s, str) else (ids.setdefault(id(s), len(ids)), str(s.size)))
                 for op, s in events]
        TRACE.append((len(events), hashlib.sha256(repr(trace).encode()).hexdigest()[:16]))
        return replay(events)
    return wrapped


allocator.replay = _recording(allocator.replay)


def _peak(peak) -> list:
    return [[str(f), str(p), [[k, str(a), str(b)] for k, (a, b) in kinds]] for (f, p), kinds in peak.candidates]


def _safe(f):
    try:
        return f()
    except Exception as e:  # a failure is a result too: it must stay the same
        return {"raises": f"{type(e).__name__}: {e}"}


def record(text: str, batch, dtype: str, optimizer: str, device: str, amp, values: dict) -> dict:
    from archcalc.memory.timeline import simulate

    spec = archcalc.loads(text)
    out: dict = {}
    try:
        report = archcalc.analyze(spec, dtype=dtype, optimizer=optimizer, device=device, autocast=amp, **values)
    except archcalc.ArchcalcError as e:
        return {"error": str(e)}
    for inplace in (True, False):
        TRACE.clear()
        try:
            line = simulate(report, batch, inplace_sums=inplace)
        except Exception as e:  # a failure is a result too: it must stay the same
            out[f"inplace={inplace}"] = {"raises": f"{type(e).__name__}: {e}"}
            continue
        case = {"phases": {name: _peak(p) for name, p in line.phases.items()}, "inference": _peak(line.inference),
                "peak": str(line.peak(batch)), "pairs": [[str(f), str(p)] for f, p in line.pairs], "trace": list(TRACE)}
        if batch is not None:
            case["peak_phase"] = _safe(lambda line=line: line.peak_phase(batch))
            case["alive"] = {name: _safe(lambda p=p: {k: str(v) for k, v in p.alive(batch).items()})
                             for name, p in line.phases.items()}
        out[f"inplace={inplace}"] = case
    try:
        full = archcalc.analyze(spec, batch=batch, dtype=dtype, optimizer=optimizer, device=device, autocast=amp, **values)
        out["memory"] = json.loads(json.dumps(full.to_dict()["memory"], default=str))
    except Exception as e:
        out["memory"] = {"raises": f"{type(e).__name__}: {e}"}
    return out


def shipped() -> list[dict]:
    cases = []
    for path in sorted((ROOT / "specs").glob("*.toml")):
        text = path.read_text()
        sets = [{}] + ([TEST_VALUES[path.stem]] if path.stem in TEST_VALUES else [])
        for values, batch, combo in itertools.product(sets, (2, None), COMBOS):
            cases.append(dict(name=path.stem, text=text, values=values, batch=batch, combo=combo))
    resnet = (ROOT / "specs" / "resnet18_symbolic.toml").read_text()
    checkpointed = resnet.replace('block = "basic"\n', 'block = "basic"\ncheckpoint = true\n')
    for batch, combo in itertools.product((2, None), COMBOS):
        cases.append(dict(name="resnet18_checkpointed", text=checkpointed, values={"H": 40, "W": 40}, batch=batch,
                          combo=combo))
    return cases


def drawn(n: int) -> list[dict]:
    """Specs drawn by the oracle tests' strategies (deterministically: derandomize), each under two settings."""
    from hypothesis import strategies as st

    from tests.layers.test_layers_oracle import spec
    from tests.memory.test_timeline_attention import token_networks
    from tests.memory.test_timeline_gpt2 import small_spec
    from tests.memory.test_timeline_oracle import checkpointed_graphs, graphs, networks, newer_stacks

    def gpt2s(draw):
        heads, head = draw(st.sampled_from([2, 3])), draw(st.integers(2, 3))
        return small_spec(11, 8, heads * head, heads, draw(st.integers(1, 2)), draw(st.sampled_from([0.0, 0.1]))), \
            {"T": draw(st.integers(2, 6))}

    def newer(draw):
        case = draw(newer_stacks())
        return None if case is None else spec(case[0], case[1])

    sources = {"networks": (lambda draw: draw(networks()).spec(), n // 4), "graphs": (lambda draw: draw(graphs()), n // 5),
               "newer": (newer, n // 5), "checkpointed": (lambda draw: draw(checkpointed_graphs()), n // 5),
               "tokens": (lambda draw: draw(token_networks()).spec(), n // 10), "gpt2": (gpt2s, n // 20)}
    out = []
    for name, (make, count) in sources.items():
        found = _collect(make, count)
        for i, text in enumerate(found):
            text, values = text if isinstance(text, tuple) else (text, {})
            for k, combo in enumerate((COMBOS[(7 * i) % len(COMBOS)], COMBOS[(7 * i + 11) % len(COMBOS)])):
                batch = None if (i + k) % 5 == 0 else 1 + (i + k) % 3
                out.append(dict(name=f"{name}-{i}", text=text, values=values, batch=batch, combo=list(combo)))
    return out


def added(n: int) -> list[dict]:
    """What main added to the timeline after the package's branch point (issue 17's merge): the new kinds drawn
    (identity, stochastic depth, mean, narrow, upsample, Llama's RMSNorm), tiny Llamas and Mistrals (rotary tables
    read as a second input, tied or untied heads, Hugging Face's causal LM loss, 16-bit logits upcast), parameters
    broadcast by add and mul (batchless gradients), ConvNeXt's block (layer scale, stochastic depth), torchvision's
    ViT with bare positions, two outputs, docs/spec.md's Llama-3-8B; each under settings chosen to reach the rules."""
    from hypothesis import strategies as st

    from tests.analysis.test_outputs import SPEC as OUTPUTS
    from tests.layers.test_layers_oracle import spec
    from tests.layers.test_llama_oracle import configs, llama_spec
    from tests.layers.test_real_kinds_oracle import LAYER_SCALE, cases, cn_block, stacks

    def kinds(draw):
        case = draw(stacks())
        return None if case is None else spec(case[0], case[1])

    def llamas(draw):
        return llama_spec(draw(configs())), {"T": draw(st.integers(1, 6))}

    out = []
    sources = {"kinds": (kinds, n // 4), "kind": (lambda draw: spec(*draw(cases())[:2]), n // 8),
               "broadcast": (_broadcast, n // 4), "llama": (llamas, n // 8)}
    for name, (make, count) in sources.items():
        for i, text in enumerate(_collect(make, count)):
            text, values = text if isinstance(text, tuple) else (text, {})
            combos = [COMBOS[(7 * i) % len(COMBOS)], COMBOS[(7 * i + 11) % len(COMBOS)]]
            if name == "llama":  # a 16-bit causal LM in its own dtype: its logits upcast; one sample: labels a view
                combos.append(("bfloat16", ["sgd", "adam"][i % 2], ["cpu", "cuda"][i % 2], None))
            for k, combo in enumerate(combos):
                batch = None if (i + k) % 5 == 0 else 1 + (i + k) % 3
                out.append(dict(name=f"{name}-{i}", text=text, values=values, batch=batch, combo=list(combo)))
    stem = dict(name="stem", type="conv", out_channels=4, kernel_size=1)
    convnext = spec((4, 5, 5), [stem, *cn_block(4, 0.25), dict(name="pool", type="mean", dims=[1, 2]),
                                dict(name="fc", type="dense", out_features=3)])
    vit = (ROOT / "specs" / "vit_b_16.toml").read_text(encoding="utf-8").split("[expect]")[0]
    vit = vit.replace('shape = [1, "d"]', 'shape = [1, "d"]\nbare = true')
    vit = vit.replace('shape = ["tokens", "d"]', 'shape = ["tokens", "d"]\nbare = true\nexpand = false')
    docs = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    llama8b = '[model]\ninput = ["T"]\n' + next(b for b in docs.split("```toml\n")[1:] if "model.rotary_emb" in b).split("```")[0]
    fixed = [("outputs", OUTPUTS, {}, (1, 2, None)), ("layer_scale", LAYER_SCALE, {}, (2, None)),
             ("convnext", convnext, {}, (2, 3, None)),
             ("vit_bare", vit, dict(H=8, W=8, patch=4, d=8, heads=2, mlp=16, n_layer=2, classes=3), (2, None)),
             ("llama3_8b", llama8b, {"T": 8}, (1, 2, None))]
    for name, text, values, batches in fixed:
        for batch, combo in itertools.product(batches, COMBOS):
            out.append(dict(name=name, text=text, values=values, batch=batch, combo=list(combo)))
    return out


def _broadcast(draw):
    """A parameter of the input's rank (bare or not, expanded over the batch or broadcast as it is; each axis the
    input's or 1) added to or multiplied with a tensor, perhaps after a layer with parameters; then a dense head."""
    from hypothesis import strategies as st

    from tests.layers.test_layers_oracle import prefix, spatial_shape, spec

    shape = spatial_shape(draw, dims=(1, 2)) if draw(st.booleans()) else (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    param = [s if draw(st.booleans()) else 1 for s in shape]
    table = dict(name="p", type="parameter", shape=param, expand=draw(st.booleans()))
    if draw(st.booleans()):
        table["bare"] = True
    tables = [prefix(shape)[0] | {"name": "pre"}] if draw(st.booleans()) else [dict(name="pre", type="identity")]
    order = ["p", "pre"] if draw(st.booleans()) else ["pre", "p"]
    tables += [table, dict(name="op", type=draw(st.sampled_from(["add", "mul"])), **{"from": order})]
    if draw(st.booleans()):  # and the same again on its output
        tables += [dict(name="q", type="parameter", shape=param, expand=False, bare=True),
                   dict(name="op2", type=draw(st.sampled_from(["add", "mul"])), **{"from": ["op", "q"]})]
    tables += [dict(type="flatten"), dict(type="dense", out_features=draw(st.integers(2, 4)))]
    return spec(shape, tables)


def _collect(make, count: int) -> list:
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st

    found: list = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        text = make(data.draw)
        if text is not None:
            found.append(text)

    collect()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--compare")
    parser.add_argument("--drawn", type=int, default=400)
    parser.add_argument("--added", type=int, default=200, help="drawn cases of what main added after the branch point")
    parser.add_argument("--resume", action="store_true", help="keep the cases the output has already, run the rest")
    args = parser.parse_args()
    cases_path = Path(args.compare or args.output).with_suffix(".cases.json")
    if cases_path.exists():
        cases = json.loads(cases_path.read_text())
    else:
        cases = shipped() + drawn(args.drawn) + added(args.added)
        cases_path.write_text(json.dumps(cases))
    done = Path(args.output).read_text().splitlines() if args.resume and Path(args.output).exists() else []
    total = hashlib.sha256()
    for line in done:
        total.update(line.encode())
    with open(args.output, "a" if done else "w") as out:
        for i, case in enumerate(cases):
            if i < len(done):
                continue
            dtype, optimizer, device, amp = case["combo"]
            result = record(case["text"], case["batch"], dtype, optimizer, device, amp, case["values"])
            line = json.dumps({"case": i, "name": case["name"], "batch": case["batch"], "combo": case["combo"],
                               "values": case["values"], "result": result}, sort_keys=True)
            out.write(line + "\n")
            total.update(line.encode())
            if i % 200 == 0:
                print(f"{i}/{len(cases)}", file=sys.stderr, flush=True)
    print(f"{len(cases)} cases, digest {total.hexdigest()}")
    if args.compare:
        old = Path(args.compare).read_text().splitlines()
        new = Path(args.output).read_text().splitlines()
        diff = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        print(f"{len(diff)} cases differ" + (f": first {diff[:10]}" if diff else "") +
              ("" if len(old) == len(new) else f"; {len(old)} lines before, {len(new)} now"))


if __name__ == "__main__":
    main()
