"""Closed sets are StrEnums: a name read from a string becomes its member, an unknown one is refused at once."""

import dataclasses
import json

import pytest

import archcalc
from archcalc.backends.bench import Mode, Options
from archcalc.core.dtypes import DType, Optimizer
from archcalc.layers import ACTIVATIONS
from archcalc.layers.base import Kept, Storage, Tensor
from archcalc.memory.closed import KeptBytes
from archcalc.teaching.claim_keys import Scope, ValueKind, parse_key
from tests.conftest import SPECS


def test_kept_reads_its_names_into_members_and_refuses_others():
    kept = Kept("own", 10, "int64", what="indices")
    assert (kept.tensor, kept.dtype) == (Tensor.own, Storage.int64)
    assert kept == Kept(Tensor.own, 10, Storage.int64, what="indices")
    with pytest.raises(ValueError):
        Kept("inptu", 10)
    with pytest.raises(ValueError):
        Kept("input", 10, "int32")
    with pytest.raises(dataclasses.FrozenInstanceError):
        kept.tensor = Tensor.input


def test_every_activation_saves_its_input_or_its_output():
    assert {f.saves for f in ACTIVATIONS.values()} == {Tensor.input, Tensor.output}


def test_memory_kept_is_one_small_record_per_tensor():
    report = archcalc.analyze(archcalc.load(SPECS / "lenet5.toml"))
    items = [k for row in report.memory.kept for k in row]
    assert items and all(isinstance(k, KeptBytes) and isinstance(k.item, Kept) for k in items)
    per_sample = sum(k.nbytes for k in items if k.counted and k.item.per_sample)
    assert per_sample == report.memory.saved.per_sample  # the records add up to what is counted


def test_claim_keys_have_a_scope_and_a_kind():
    report = archcalc.analyze(archcalc.load(SPECS / "alexnet.toml"))
    cases = {"conv1.output": (Scope.layer, ValueKind.shape), "conv.share": (Scope.type, ValueKind.share),
             "params": (Scope.total, ValueKind.count), "memory.training_bytes@B=8": (Scope.memory, ValueKind.bytes)}
    for text, (scope, kind) in cases.items():
        key = parse_key(text, report)
        assert (key.scope, key.kind) == (scope, kind), text
        assert type(key.scope) is Scope and type(key.kind) is ValueKind


def test_bench_options_read_names_into_members():
    options = Options(dtype="bfloat16", optimizer="adam")
    assert (options.dtype, options.optimizer) == (DType.bfloat16, Optimizer.adam)
    assert json.loads(json.dumps(dataclasses.asdict(options)))["dtype"] == "bfloat16"  # JSON unchanged
    assert set(Mode) == {"train", "inference"}
    with pytest.raises(ValueError):
        Options(optimizer="lamb")  # adamw is one (docs/design.md section 9)
