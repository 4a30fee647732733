"""The memory timeline against the CPU oracle: live storages, phase by phase, to the byte.

Networks are drawn by test_memory_oracle's strategy (a spec and a torch module built side by side,
independently of archcalc's own to_torch); tests/timeline_probe.py runs a real training step and
reads each phase's high-water mark of live storages.
"""

from __future__ import annotations

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
from .timeline_probe import OPTIMIZERS, step_peaks  # noqa: E402

SPECS = sorted(Path(__file__).resolve().parent.parent.glob("specs/*.toml"))


def phases(report, batch):
    timeline = simulate(report, batch)
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
