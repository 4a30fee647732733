"""A sliding-window layer's geometry is made and checked once per row, not once per formula that reads it."""

import pytest

import archcalc
from archcalc.core.errors import SpecError
from archcalc.layers import LAYERS, base
from archcalc.render import report as render
from tests.conftest import SPECS


@pytest.fixture
def made(monkeypatch):
    """Counts the calls of make_windows, per layer name (from an empty cache: other tests fill it)."""
    base._windows.cache_clear()
    counts: dict[str, int] = {}
    for cls in {cls for cls in LAYERS.values() if "make_windows" in vars(cls)}:
        original = cls.make_windows

        def counted(self, x, original=original):
            counts[self.name] = counts.get(self.name, 0) + 1
            return original(self, x)

        monkeypatch.setattr(cls, "make_windows", counted)
    return counts


@pytest.mark.parametrize("name", ["alexnet.toml", "lenet5.toml", "alexnet_symbolic.toml"])
def test_windows_are_made_once_per_sliding_layer(made, name):
    report = archcalc.analyze(archcalc.load(SPECS / name))
    sliding = [row.name for row in report.rows if row.layer.windows(row.input)]
    assert sliding and made == dict.fromkeys(sliding, 1)
    render.markdown(report, explained=True)  # --explain reads them again, from the row's layer
    render.json(report, explained=True)
    archcalc.check(report, {f"{sliding[0]}.output": [1, 1, 1], "params": 1})
    assert made == dict.fromkeys(sliding, 1)


def test_a_refused_geometry_is_refused_every_time():
    spec = archcalc.loads('[model]\ninput = [3, 4, 4]\n[[layers]]\ntype = "conv"\nout_channels = 2\nkernel_size = 5\n')
    for _ in range(2):
        with pytest.raises(SpecError, match="kernel 5 is larger than the padded input 4"):
            archcalc.analyze(spec)


def test_bound_windows_are_no_part_of_the_layers_value():
    a, b = (archcalc.analyze(archcalc.load(SPECS / "alexnet.toml")).rows[0].layer for _ in range(2))
    a.windows((3, 224, 224))
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
