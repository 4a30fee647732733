"""`archcalc quiz --variants N`: a different network per student from [variants], each with its own key, by seed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import SpecError
from archcalc.cli.main import main
from archcalc.teaching import claim_keys, variants

SPEC = "tests/fixtures/variants.toml"


def test_variants_are_different_networks_reproducible_by_seed():
    spec = archcalc.load(SPEC)
    first = variants.draw(spec, 6, 8, seed=11)
    again = variants.draw(spec, 6, 8, seed=11)
    assert [(q.values, q.questions) for q in first] == [(q.values, q.questions) for q in again]
    assert len({q.values for q in first}) == 6
    assert [q.values for q in variants.draw(spec, 6, 8, seed=12)] != [q.values for q in first]


def test_each_key_passes_on_its_network_and_not_on_the_others():
    spec = archcalc.load(SPEC)
    quizzes = variants.draw(spec, 4, 12, seed=5)
    for drawn in quizzes:
        answers = claim_keys.loads_answers(drawn.key_toml())
        assert all(v.ok for v in archcalc.check(spec, answers, **dict(drawn.values)))
    copied = claim_keys.loads_answers(quizzes[0].key_toml())
    assert not all(v.ok for v in archcalc.check(spec, copied, **dict(quizzes[1].values)))


def test_cli_writes_each_variant_and_a_manifest(tmp_path):
    result = CliRunner().invoke(main, ["quiz", SPEC, "--variants", "3", "--seed", "2", "-n", "4", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "variants-2-variants.json").read_text())
    assert [m["variant"] for m in manifest] == [1, 2, 3]
    for entry in manifest:
        key = (tmp_path / entry["files"][1]).read_text()
        sets = [arg for name, value in entry["values"].items() for arg in ("--set", f"{name}={value}")]
        key_path = tmp_path / "k.toml"
        key_path.write_text(key)
        assert CliRunner().invoke(main, ["check", SPEC, str(key_path), *sets]).exit_code == 0
        assert all(f"--set {n}={v}" in entry["check"] for n, v in entry["values"].items())


@pytest.mark.parametrize("vary, problem", [
    ("q = [1, 2]", "no name 'q' to vary"),
    ("k = {low = 5, high = 3}", "cannot read the range"),
    ('k = "3..5"', "expected a list of values or a range"),
    ("k = [3, 4.5]", "whole numbers"),
])
def test_bad_vary_tables(vary, problem):
    text = re.sub(r"\[variants\]\n.*?(?=\[\[layers\]\])", f"[variants]\n{vary}\n", Path(SPEC).read_text(), count=1, flags=re.S)
    with pytest.raises(SpecError, match=problem):
        variants.choices(archcalc.loads(text))


def test_more_variants_than_networks_is_refused():
    result = CliRunner().invoke(main, ["quiz", SPEC, "--variants", "100", "--seed", "1"])
    assert result.exit_code == 2 and "allows 16" in result.output
