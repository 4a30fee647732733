"""The memory timeline against the CPU oracle: live storages, phase by phase, to the byte.

Networks are drawn by test_memory_oracle's strategy (a spec and a torch module built side by side,
independently of archcalc's own to_torch); tests/timeline_probe.py runs a real training step and
reads each phase's high-water mark of live storages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)

import archcalc  # noqa: E402
from archcalc.timeline import simulate  # noqa: E402

from .test_memory_oracle import DTYPES, _modules, networks  # noqa: E402
from .timeline_probe import OPTIMIZERS, inference_peak, step_peaks  # noqa: E402

SPECS = sorted(Path(__file__).resolve().parent.parent.glob("specs/*.toml"))


AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def phases(report, batch):
    # the oracle's dispatch mode makes torch sum meeting gradients out of place (see simulate)
    timeline = simulate(report, batch, inplace_sums=False)
    return {phase: peak.at(batch) for phase, peak in timeline.phases.items()}


def oracle(model, shape, batch, dtype, optimizer):
    model = model.to(DTYPES[dtype])
    x = torch.randn(batch, *map(int, shape), dtype=DTYPES[dtype])
    return step_peaks(model, x, optimizer)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(1, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(sorted(OPTIMIZERS)))
def test_drawn_networks_step_by_step(net, batch, dtype, optimizer):
    if dtype == "bfloat16" and net.dims == 3 and any(isinstance(m, nn.AvgPool3d) for m in net.modules):
        dtype = "float32"  # torch has no bfloat16 avg_pool3d on the CPU
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, dtype=dtype, optimizer=optimizer)
    model = nn.Sequential(*net.modules)
    assert phases(report, batch) == oracle(model, net.input, batch, dtype, optimizer), net.spec()


COURSE = [p for p in SPECS if "course = true" in p.read_text()]


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_course_specs_step_by_step(path, optimizer):
    values = {"H": 67, "W": 67, "classes": 10} if "symbolic" in path.stem else {}
    batch = 1 if "alexnet" in path.stem else 3
    report = archcalc.analyze(archcalc.load(path), batch=batch, optimizer=optimizer, **values)
    model = nn.Sequential(*(m for row in report.rows for m in _modules(row)))
    assert phases(report, batch) == oracle(model, report.input, batch, "float32", optimizer)


@pytest.mark.parametrize("name, values", [("resnet18_symbolic", {"H": 40, "W": 40}), ("unet", {})])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_graph_specs_step_by_step(name, values, optimizer):
    """Graphs (skips, add, concat) as archcalc.torch builds them: its Graph module drops each tensor after its last reader."""
    from archcalc.backends.torch import build

    spec = archcalc.load(Path(__file__).resolve().parent.parent / "specs" / f"{name}.toml")
    report = archcalc.analyze(spec, batch=2, optimizer=optimizer, **values)
    assert phases(report, 2) == oracle(build(spec, **values), report.input, 2, "float32", optimizer)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(1, 3))
def test_drawn_networks_inference(net, batch):
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch)
    x = torch.randn(batch, *map(int, net.input))
    assert report.memory.inference_peak.at(batch) == inference_peak(nn.Sequential(*net.modules), x), net.spec()


@pytest.mark.parametrize("name, values", [("alexnet", {}), ("resnet18_symbolic", {"H": 40, "W": 40}), ("unet", {})])
def test_shipped_specs_inference(name, values):
    from archcalc.backends.torch import build

    spec = archcalc.load(Path(__file__).resolve().parent.parent / "specs" / f"{name}.toml")
    report = archcalc.analyze(spec, batch=2, **values)
    x = torch.randn(2, *map(int, report.input))
    assert report.memory.inference_peak.at(2) == inference_peak(build(spec, **values), x)


@st.composite
def graphs(draw):
    """A small DAG: convolutions that keep the size, with add, mul and concat merges reading earlier layers."""
    channels = draw(st.integers(1, 3))
    side = draw(st.integers(3, 6))
    lines = ["[model]", f"input = [{channels}, {side}, {side}]"]
    shapes = {"input": channels}  # name -> channels (the spatial size never changes)
    last = "input"
    implicit: set[str] = set()
    for i in range(draw(st.integers(2, 6))):
        name = f"l{i}"
        kind = draw(st.sampled_from(["conv", "conv", "add", "mul", "concat", "batchnorm", "activation"]))
        same = [n for n, c in shapes.items() if c == shapes[last] and n != last]
        if kind in ("add", "mul") and same:
            other = draw(st.sampled_from(same))
            lines += ["[[layers]]", f'name = "{name}"', f'type = "{kind}"', f'from = ["{last}", "{other}"]']
            if draw(st.booleans()):
                lines.append('activation = "relu"')
            shapes[name] = shapes[last]
        elif kind == "concat":
            other = draw(st.sampled_from(sorted(shapes)))
            lines += ["[[layers]]", f'name = "{name}"', 'type = "concat"', f'from = ["{last}", "{other}"]']
            shapes[name] = shapes[last] + shapes[other]
        elif kind == "batchnorm":
            lines += ["[[layers]]", f'name = "{name}"', 'type = "batchnorm"', f'from = "{last}"']
            shapes[name] = shapes[last]
        elif kind == "activation":
            function = draw(st.sampled_from(["relu", "sigmoid", "gelu"]))
            implicit.add(last)  # no `from`: it reads the previous layer
            lines += ["[[layers]]", f'name = "{name}"', 'type = "activation"', f'function = "{function}"']
            shapes[name] = shapes[last]
        else:
            source = draw(st.sampled_from(sorted(shapes)))
            out = draw(st.integers(1, 4))
            k = draw(st.sampled_from([1, 3]))
            lines += ["[[layers]]", f'name = "{name}"', 'type = "conv"', f'from = "{source}"', f"out_channels = {out}",
                      f"kernel_size = {k}", f"padding = {k // 2}"]
            if draw(st.booleans()):
                lines.append(f'activation = "{draw(st.sampled_from(["relu", "tanh", "silu"]))}"')
            shapes[name] = out
        last = name
    # every layer leads to the loss (a dead branch's nodes live as long as Python holds its tensors: not modelled)
    read = {n for line in lines if line.startswith("from") for n in re.findall(r'"([^"]+)"', line)} | {last} | implicit
    unread = [n for n in shapes if n not in read and n != "input"]
    if unread:
        lines += ["[[layers]]", 'name = "ends"', 'type = "concat"', f"from = {json.dumps([last, *unread])}"]
    lines += ["[[layers]]", 'name = "flat"', 'type = "flatten"', "[[layers]]", 'name = "fc"', 'type = "dense"',
              f"out_features = {draw(st.integers(2, 5))}"]
    return "\n".join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=graphs(), batch=st.integers(1, 3), optimizer=st.sampled_from(["sgd", "adam", "momentum"]),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_drawn_graphs_step_by_step(text, batch, optimizer, dtype):
    from archcalc.backends.torch import build

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, dtype=dtype)
    assert phases(report, batch) == oracle(build(spec), report.input, batch, dtype, optimizer), text


# Mixed precision: the step under torch.autocast("cpu") (Lightning's bf16-mixed; CPU autocast takes float16 too),
# float32 parameters, the same drawn networks and graphs, to the byte.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(2, 3), low=st.sampled_from(sorted(AUTOCAST)),  # batchnorm refuses 1 value
       optimizer=st.sampled_from(sorted(OPTIMIZERS)))
def test_drawn_networks_under_autocast(net, batch, low, optimizer):
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, optimizer=optimizer, autocast=low)
    x = torch.randn(batch, *map(int, net.input))
    expected = step_peaks(nn.Sequential(*net.modules), x, optimizer, autocast=AUTOCAST[low], scaled=True)
    assert phases(report, batch) == expected, net.spec()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=graphs(), batch=st.integers(1, 3), optimizer=st.sampled_from(["sgd", "adam", "momentum"]),
       low=st.sampled_from(sorted(AUTOCAST)))
def test_drawn_graphs_under_autocast(text, batch, optimizer, low):
    """Merges of a low-precision and a float32 tensor: add and mul promote (the gradient is cast back to the
    16-bit input's dtype), concat casts its inputs to the widest."""
    from archcalc.backends.torch import build

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, autocast=low)
    x = torch.randn(batch, *map(int, report.input))
    assert phases(report, batch) == step_peaks(build(spec), x, optimizer, autocast=AUTOCAST[low], scaled=True), text


@pytest.mark.parametrize("name, values", [("alexnet", {}), ("resnet18_symbolic", {"H": 40, "W": 40}), ("lenet5", {})])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_shipped_specs_under_autocast(name, values, optimizer):
    from archcalc.backends.torch import build

    spec = archcalc.load(Path(__file__).resolve().parent.parent / "specs" / f"{name}.toml")
    batch = 1 if name == "alexnet" else 2
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, autocast="bfloat16", **values)
    x = torch.randn(batch, *map(int, report.input))
    assert phases(report, batch) == step_peaks(build(spec, **values), x, optimizer, autocast=torch.bfloat16)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(1, 3), low=st.sampled_from(sorted(AUTOCAST)))
def test_drawn_networks_inference_under_autocast(net, batch, low):
    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, autocast=low)
    x = torch.randn(batch, *map(int, net.input))
    assert report.memory.inference_peak.at(batch) == inference_peak(nn.Sequential(*net.modules), x, AUTOCAST[low]), net.spec()


@pytest.mark.parametrize("name, values", [("alexnet", {}), ("resnet18_symbolic", {"H": 40, "W": 40}), ("unet", {})])
def test_shipped_specs_inference_under_autocast(name, values):
    from archcalc.backends.torch import build

    spec = archcalc.load(Path(__file__).resolve().parent.parent / "specs" / f"{name}.toml")
    report = archcalc.analyze(spec, batch=2, autocast="bfloat16", **values)
    x = torch.randn(2, *map(int, report.input))
    assert report.memory.inference_peak.at(2) == inference_peak(build(spec, **values), x, torch.bfloat16)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=networks(), batch=st.integers(2, 3), low=st.sampled_from(sorted(AUTOCAST)))
def test_saved_bytes_under_autocast(net, batch, low):
    """saved_for_backward_bytes under autocast: each kept tensor in the dtype its op ran in (an input autocast
    copied is kept as the copy), and the weight copies the nodes keep, against saved_tensors_hooks."""
    from .torch_probe import saved_bytes

    report = archcalc.analyze(archcalc.loads(net.spec()), batch=batch, autocast=low)
    with torch.autocast("cpu", dtype=AUTOCAST[low]):
        expected = saved_bytes(nn.Sequential(*net.modules), torch.randn(batch, *map(int, net.input)))
    assert report.memory.saved.at(batch) == expected, net.spec()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=graphs(), batch=st.integers(1, 3), low=st.sampled_from(sorted(AUTOCAST)))
def test_graphs_saved_bytes_under_autocast(text, batch, low):
    from archcalc.backends.torch import build

    from .torch_probe import saved_bytes

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=batch, autocast=low)
    with torch.autocast("cpu", dtype=AUTOCAST[low]):
        expected = saved_bytes(build(spec), torch.randn(batch, *map(int, report.input)))
    assert report.memory.saved.at(batch) == expected, text


@st.composite
def checkpointed_graphs(draw):
    """A stem, then uses of a drawn block (a small DAG like `graphs`' that ends at its input's channels, so uses
    chain and repeat), some with `checkpoint = true`; a later layer may read a tensor inside a use."""
    channels = draw(st.integers(1, 3))
    side = draw(st.integers(3, 5))
    lines = ["[model]", f"input = [{channels}, {side}, {side}]", "", "[blocks.b]", "layers = ["]
    shapes = {"input": channels}
    last = "input"
    body = []
    for i in range(draw(st.integers(1, 4))):
        name = f"l{i}"
        kind = draw(st.sampled_from(["conv", "conv", "add", "mul", "concat", "batchnorm", "activation", "pool", "dropout"]))
        same = [n for n, c in shapes.items() if c == shapes[last] and n != last]
        act = draw(st.sampled_from(["", "relu", "gelu", "sigmoid"]))
        act = f', activation = "{act}"' if act else ""
        if kind in ("add", "mul") and same:
            body.append(f'{{ name = "{name}", type = "{kind}", from = ["{last}", "{draw(st.sampled_from(same))}"]{act} }}')
        elif kind == "concat":
            other = draw(st.sampled_from(sorted(shapes)))
            body.append(f'{{ name = "{name}", type = "concat", from = ["{last}", "{other}"] }}')
            shapes[name] = shapes[last] + shapes[other]
            last = name
            continue
        elif kind == "batchnorm":
            body.append(f'{{ name = "{name}", type = "batchnorm", from = "{last}"{act} }}')
        elif kind == "activation":
            body.append(f'{{ name = "{name}", type = "activation", function = "{draw(st.sampled_from(["relu", "tanh", "gelu"]))}" }}')
        elif kind == "pool":  # max pooling keeps int64 indices of its own
            body.append(f'{{ name = "{name}", type = "pool", op = "max", kernel_size = 3, stride = 1, padding = 1, from = "{last}" }}')
        elif kind == "dropout":  # a mask of its own, recomputed with the same random state
            body.append(f'{{ name = "{name}", type = "dropout", p = 0.5, from = "{last}" }}')
        else:
            source = draw(st.sampled_from(sorted(shapes)))
            k = draw(st.sampled_from([1, 3]))
            out = draw(st.integers(1, 4))
            body.append(f'{{ name = "{name}", type = "conv", from = "{source}", out_channels = {out}, kernel_size = {k}, '
                        f'padding = {k // 2}{act} }}')
            shapes[name] = out
            last = name
            continue
        shapes[name] = shapes[last]
        last = name
    read = {n for line in body for n in re.findall(r'from = \[?([^\]}]+)', line) for n in re.findall(r'"([^"]+)"', n)}
    read |= {f"l{i - 1}" for i, line in enumerate(body) if "from" not in line}
    unread = [n for n in shapes if n not in read and n not in ("input", last)]
    if unread:  # every layer leads to the loss (a dead branch is not modelled)
        body.append(f'{{ name = "ends", type = "concat", from = {json.dumps([last, *unread])} }}')
        shapes["ends"] = sum(shapes[n] for n in [last, *unread])
        last = "ends"
    ending = draw(st.sampled_from(["conv", "add"])) if shapes[last] == channels and last != "input" else "conv"
    if ending == "add":
        act = draw(st.sampled_from(["", ', activation = "relu"']))
        body.append(f'{{ name = "out", type = "add", from = ["{last}", "input"]{act} }}')
    else:
        act = draw(st.sampled_from(["", ', activation = "relu"', ', activation = "gelu"']))
        body.append(f'{{ name = "out", type = "conv", from = "{last}", out_channels = {channels}, kernel_size = 1{act} }}')
    lines += ["    " + line + "," for line in body] + ["]"]
    if draw(st.booleans()):  # parameters before the first use: its input requires grad
        lines += ["[[layers]]", 'name = "stem"', 'type = "conv"', f"out_channels = {channels}", "kernel_size = 1"]
    uses = []
    for u in range(draw(st.integers(1, 3))):
        name = f"u{u}"
        lines += ["[[layers]]", f'name = "{name}"', 'type = "block"', 'block = "b"']
        repeat = draw(st.sampled_from([None, 1, 2]))
        if repeat:
            lines.append(f"repeat = {repeat}")
        checkpointed = draw(st.sampled_from(["", "true", '"index % 2 == 1"']))  # a condition: every other repeat
        if checkpointed:
            lines.append(f"checkpoint = {checkpointed}")
        uses.append(f"{name}.0" if repeat else name)
    inner = [n for n in shapes if n != "input"]
    tail = draw(st.sampled_from(["plain", "skip"]))
    if tail == "skip" and inner:  # a layer after the uses reads a tensor inside the first one: the region returns it
        source = f"{uses[0]}.{draw(st.sampled_from(inner))}"
        lines += ["[[layers]]", 'name = "side"', 'type = "conv"', f'from = "{source}"', "out_channels = 2", "kernel_size = 1",
                  "[[layers]]", 'name = "side_flat"', 'type = "flatten"',
                  "[[layers]]", 'name = "main_flat"', 'type = "flatten"', f'from = "u{len(uses) - 1}"',
                  "[[layers]]", 'name = "both"', 'type = "concat"', 'from = ["main_flat", "side_flat"]']
    else:
        lines += ["[[layers]]", 'name = "flat"', 'type = "flatten"']
    lines += ["[[layers]]", 'name = "fc"', 'type = "dense"', f"out_features = {draw(st.integers(2, 5))}"]
    return "\n".join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=checkpointed_graphs(), batch=st.integers(1, 3), optimizer=st.sampled_from(["sgd", "adam"]),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_drawn_checkpointed_blocks_step_by_step(text, batch, optimizer, dtype):
    """Block uses with checkpoint = true, as archcalc.torch builds them (torch.utils.checkpoint, non-reentrant)."""
    from archcalc.backends.torch import build

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, dtype=dtype)
    assert phases(report, batch) == oracle(build(spec), report.input, batch, dtype, optimizer), text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=checkpointed_graphs(), batch=st.integers(1, 3), low=st.sampled_from(sorted(AUTOCAST)),
       optimizer=st.sampled_from(["sgd", "adam"]))
def test_checkpointed_blocks_under_autocast(text, batch, low, optimizer):
    """Checkpointed uses under autocast: in forward their nodes keep no copy (the checkpoint packs every saved
    tensor); in backward the recomputation runs in autocast again, making its copies again (weight copies
    cached until it ends, kept where a node keeps them)."""
    from archcalc.backends.torch import build

    spec = archcalc.loads(text)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, autocast=low)
    x = torch.randn(batch, *map(int, report.input))
    assert phases(report, batch) == step_peaks(build(spec), x, optimizer, autocast=AUTOCAST[low], scaled=True), text
