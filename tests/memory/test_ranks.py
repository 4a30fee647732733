"""The JSON of a parallel layout (docs/design.md section 11): memory.parallel, memory.communication_bytes, memory.ranks,
and the per-rank peaks. The bytes themselves are tested against torch.distributed in test_ranks_oracle.py."""

from __future__ import annotations

import pytest

import archcalc
from archcalc.core.errors import SpecError
from archcalc.core.parallel import Layout
from tests.memory.test_timeline_gpt2 import small_spec

GPT2 = small_spec(8000, 256, 256, 4, 4, 0.0)


def memory(**options) -> dict:
    return archcalc.analyze(archcalc.loads(GPT2), T=128, optimizer="adam", **options).to_dict()["memory"]


def test_one_process_has_no_parallel_keys():
    assert not {"parallel", "communication_bytes", "ranks"} & set(memory(batch=4))


def test_ddp_echoes_the_layout_and_all_reduces_every_gradient():
    out = memory(batch=4, gpus=2, strategy="ddp")
    assert out["parallel"] == {"gpus": 2, "strategy": "ddp", "tp": 1, "dp": 2, "bucket_bytes": 25 * 2**20,
                               "first_bucket_bytes": 2**20, "bucket_view": False}
    assert out["communication_bytes"] == {"all_gather": 0, "reduce_scatter": 0, "all_reduce": 5_273_088 * 4,
                                          "broadcast": 0}
    assert "ranks" not in out  # every rank holds the same bytes
    assert out["peak_bytes"] == max(out["phases"].values())


def test_zero1_lists_its_unequal_ranks_and_the_peak_is_the_largest():
    out = memory(batch=4, gpus=2, strategy="zero1")
    assert [r["rank"] for r in out["ranks"]] == [0, 1]
    for phase, value in out["phases"].items():
        assert value == max(r["phases"][phase] for r in out["ranks"])
    assert out["peak_bytes"] == max(r["peak_bytes"] for r in out["ranks"])
    assert out["communication_bytes"]["broadcast"] == 5_273_088 * 4  # the updated parameters, from their owners


def test_fsdp_gathers_each_block_twice_and_the_root_once():
    out = memory(batch=4, gpus=4, strategy="fsdp")
    assert out["parallel"]["reshard_after_forward"] is True
    no_reshard = memory(batch=4, gpus=4, strategy="fsdp-no-reshard")
    communication = out["communication_bytes"]
    assert no_reshard["communication_bytes"]["all_gather"] == communication["reduce_scatter"] == 5_273_088 * 4
    assert communication["all_gather"] > no_reshard["communication_bytes"]["all_gather"]
    assert out["phases"]["optimizer"] < no_reshard["phases"]["forward"]


def test_a_symbolic_batch_gives_each_rank_formulas():
    out = memory(gpus=2, strategy="zero1")
    assert all(isinstance(r["peak_bytes"], str) and "B" in r["peak_bytes"] for r in out["ranks"])


@pytest.mark.parametrize(("options", "where"), [
    ({"gpus": 0, "strategy": "ddp"}, "--gpus"),
    ({"gpus": 4, "strategy": "ddp", "tp": 3}, "--tp"),
    ({"gpus": 2, "strategy": "bogus"}, "--strategy"),
    ({"tp": 2}, "--tp"),
])
def test_a_bad_layout_is_a_spec_error_naming_its_flag(options, where):
    with pytest.raises(SpecError) as error:
        memory(batch=4, **options)
    assert error.value.where == where


def test_units_that_match_nothing_are_refused():
    with pytest.raises(SpecError) as error:
        memory(batch=4, parallel=Layout(gpus=2, strategy="fsdp", units=("nope.*",)))
    assert error.value.where == "--units"
