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


# Grading variants from a folder and in Gradescope mode (issue 19) --------------------------------------------------

def _quiz(tmp_path, n=3):
    result = CliRunner().invoke(main, ["quiz", SPEC, "--variants", str(n), "--seed", "2", "-n", "4", "-o", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    return tmp_path / "q" / "variants-2-variants.json", json.loads((tmp_path / "q" / "variants-2-variants.json").read_text())


def _filled(tmp_path, entry, folder: Path, name: str, student: str = "") -> Path:
    """A student's sheet, filled with their variant's key (the [student] table the sheet came with)."""
    key = (tmp_path / "q" / entry["files"][1]).read_text()
    sheet = (tmp_path / "q" / entry["files"][2]).read_text()
    claims = "\n".join(line for line in key.splitlines() if line and not line.startswith("#"))
    table = sheet[sheet.index("[student]"):]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(claims + "\n\n" + table.replace('name = ""', f'name = "{student or name}"'))
    return path


def test_the_blank_sheet_says_its_variant(tmp_path):
    _, manifest = _quiz(tmp_path)
    sheet = (tmp_path / "q" / manifest[1]["files"][2]).read_text()
    assert "variant = 2" in sheet
    filled = re.sub(r'^# ("[^"]+") = $', r"\1 = 1", sheet, count=1, flags=re.M)
    assert claim_keys.loads_answers(filled).student == {"variant": 2}


def test_a_folder_of_variants_is_graded_each_on_its_own_network(tmp_path):
    path, manifest = _quiz(tmp_path)
    folder = tmp_path / "class"
    for entry in manifest:  # each student answers their own variant, in a subfolder of their own (an LMS export)
        _filled(tmp_path, entry, folder / f"student{entry['variant']}", "answers.toml")
    copied = _filled(tmp_path, manifest[0], folder, "copier.toml")  # variant 1's answers, on variant 3's sheet
    copied.write_text(copied.read_text().replace("variant = 1", "variant = 3"))
    results = archcalc.grade(archcalc.load(SPEC), [folder], variants=path)
    by = {Path(r.file).parent.name if r.file.endswith("answers.toml") else Path(r.file).stem: r for r in results}
    assert [by[f"student{n}"].ok for n in (1, 2, 3)] == [True, True, True]
    assert [by[f"student{n}"].variant.startswith(f"variant {n}: ") for n in (1, 2, 3)] == [True] * 3
    assert not by["copier"].ok and by["copier"].variant.startswith("variant 3")
    result = CliRunner().invoke(main, ["check", SPEC, str(folder), "--variants", str(path)])
    assert result.exit_code == 1 and "variant 2: " in result.output
    assert "4 files: 3 all right, 1 with wrong claims" in result.output


def test_a_variant_is_found_by_the_students_id_and_a_disagreement_is_an_error(tmp_path):
    path, manifest = _quiz(tmp_path)
    manifest[1]["students"] = ["1815", "ada@example.org"]
    path.write_text(json.dumps(manifest))
    answers = _filled(tmp_path, manifest[1], tmp_path / "in", "ada.toml")
    answers.write_text(answers.read_text().replace("variant = 2", 'email = "ada@example.org"'))
    [result] = archcalc.grade(archcalc.load(SPEC), [answers], variants=path)
    assert result.ok and result.variant.startswith("variant 2")
    answers.write_text(answers.read_text() + "variant = 3\n")
    [result] = archcalc.grade(archcalc.load(SPEC), [answers], variants=path)
    assert "the manifest gives ada@example.org variant 2; the file says variant = 3" in result.error
    bare = tmp_path / "in" / "nobody.toml"
    bare.write_text('"conv1.params" = 1\n')
    [result] = archcalc.grade(archcalc.load(SPEC), [bare], variants=path)
    assert "which quiz variant" in result.error


def test_gradescope_grades_a_variant_by_the_submitters_metadata(tmp_path):
    path, manifest = _quiz(tmp_path)
    manifest[2]["students"] = ["s42"]
    path.write_text(json.dumps(manifest))
    root = tmp_path / "autograder"
    answers = _filled(tmp_path, manifest[2], root / "submission", "answers.toml")
    answers.write_text(answers.read_text().replace("variant = 3\n", ""))
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"email": "x@y.org", "sid": "s42", "name": "X"}]}))
    result = CliRunner().invoke(main, ["check", SPEC, str(root / "submission"), "-f", "gradescope", "--variants", str(path)])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["score"] == 4 and "variant 3: " in data["output"]


def test_a_bad_manifest_is_the_instructors_error(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('[{"variant": 1, "values": {"zz": 3}}]')
    answers = tmp_path / "a.toml"
    answers.write_text('"conv1.params" = 1\n[student]\nvariant = 1\n')
    for form in ("table", "gradescope"):
        result = CliRunner().invoke(main, ["check", SPEC, str(answers), "--variants", str(bad), "-f", form])
        assert result.exit_code == 2 and "was this manifest drawn from this spec?" in result.output, form
    result = CliRunner().invoke(main, ["check", SPEC, str(answers), "--variants", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "cannot read the variants manifest" in result.output
