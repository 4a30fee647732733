"""docs/design.md sections 7 and 10, read the way users' scripts read them: through the command line, without torch.

The published numbers are docs/design.md's, written here and not read from the specs' own [expect] tables, so
that a change to a spec and its [expect] together still fails. (test_graph_specs.py proves the same numbers
against torch modules, where torch is installed.)"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archcalc.cli.main import main
from tests.conftest import SPECS

PUBLISHED = {  # docs/design.md section 7: params, FLOPs at 224×224, batch 1
    "resnet18.toml": (11_689_512, 3_628_146_688),
    "resnet50.toml": (25_557_032, 8_178_368_512),
    "mobilenet_v2.toml": (3_504_872, 601_548_544),
    "densenet121.toml": (7_978_856, 5_668_323_328),
    "vgg16_bn.toml": (138_365_992, 30_940_528_640),  # torchvision's 15.47 GFLOPS are multiply-accumulates
}


def show(*args: str):
    result = CliRunner().invoke(main, ["show", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_graph_specs_have_the_published_totals_in_json(name):
    data = json.loads(show(str(SPECS / name), "--format", "json"))
    assert (data["totals"]["params"], data["totals"]["flops"]) == PUBLISHED[name]


SECTION_8 = [  # docs/design.md section 8: (spec, --set, params, FLOPs or None where none is published)
    ("gpt2.toml", ["--set", "T=1024"], 124_439_808, 291_648_307_200),
    ("vit_b_16.toml", [], 86_567_656, 35_127_656_448),
    ("dcgan_generator.toml", [], 3_576_704, None),
]


@pytest.mark.parametrize("name, sets, params, flops", SECTION_8, ids=[c[0] for c in SECTION_8])
def test_shipped_modern_specs_have_the_published_totals_in_json(name, sets, params, flops):
    totals = json.loads(show(str(SPECS / name), *sets, "--format", "json"))["totals"]
    assert totals["params"] == params
    assert flops is None or totals["flops"] == flops


def test_json_rows_name_their_inputs_by_full_path_in_execution_order():
    rows = json.loads(show(str(SPECS / "resnet18.toml"), "--format", "json"))["layers"]
    names = [row["name"] for row in rows]
    assert all(isinstance(row["inputs"], list) and row["inputs"] for row in rows)
    assert rows[0]["inputs"] == ["input"]
    for index, row in enumerate(rows):  # every input is the model's input or an earlier row, by its full name
        assert all(name == "input" or name in names[:index] for name in row["inputs"]), row
    add = next(row for row in rows if row["name"] == "layer2.0.add")  # the projection shortcut's merge
    assert sorted(add["inputs"]) == ["layer2.0.bn2", "layer2.0.downsample.1"]


def test_show_depth_1_folds_each_block_into_one_row_with_its_totals():
    folded = show(str(SPECS / "resnet18.toml"), "--depth", "1", "--format", "json")
    data = json.loads(folded)  # JSON keeps every layer; the table folds
    table = show(str(SPECS / "resnet18.toml"), "--depth", "1")
    lines = [line.split() for line in table.splitlines() if line.split()[:1] in (["layer1"], ["layer2"], ["layer3"], ["layer4"])]
    assert [line[0] for line in lines] == ["layer1", "layer2", "layer3", "layer4"]
    assert all(line[1:3] == ["basic", "×2"] for line in lines)
    layer1 = sum(row["params"] for row in data["layers"] if row["name"].startswith("layer1."))
    assert f"{layer1:,}" in " ".join(lines[0])
    assert "layer1.0.conv1" not in table and "layer1.0.conv1" in show(str(SPECS / "resnet18.toml"))
