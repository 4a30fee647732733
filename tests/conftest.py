import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# stacks of token ids, a formula in T (the generic tests give H, W, classes): tested in test_modern_specs.py
SEQUENCE_STACKS = {"lstm_lm.toml"}


@pytest.fixture
def spec_path():
    return lambda name: str(SPECS / name)


GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = "ARCHCALC_UPDATE_GOLDEN"


@pytest.fixture
def golden():
    """Compare text with tests/golden/NAME; ARCHCALC_UPDATE_GOLDEN=1 writes the text there instead."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get(UPDATE_GOLDEN) == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"no golden {path.name}: run {UPDATE_GOLDEN}=1 pytest tests/render/test_render.py, then read it"
        assert text == path.read_text(encoding="utf-8"), (
            f"{name} differs from its golden; if the change is meant, {UPDATE_GOLDEN}=1 rewrites it (read the diff)"
        )

    return check
