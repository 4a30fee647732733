"""The memory timeline's pieces on their own: each layer-program event under the interpreter, and the package's shape
(short functions). The numbers of whole steps are the oracle suites' (test_timeline_oracle.py and beside it)."""

from __future__ import annotations

import ast

import pytest

import archcalc
from archcalc.layers.base import storage_bytes
from archcalc.layers.events import CastWeight, Convert, Drop, Event, HandGradient, Hold, KeepInput, New, Program, When
from archcalc.memory.timeline.program import Interpreter
from archcalc.memory.timeline.tape import Tape
from tests.conftest import ROOT


def bytes_now(tape: Tape) -> tuple:
    """The tape's running total, (fixed, per sample)."""
    return tape.total[0].key(), tape.total[1].key()


def interpreter(size: int = 4, **options) -> tuple[Tape, Interpreter]:
    tape = Tape(None, False)
    tape.start("forward")
    x = tape.new(tape.size(0, 10), "batch")
    return tape, Interpreter(tape, {**storage_bytes(size, False), "bool": 1}, "activations", x=x, **options)


def test_new_allocates_per_sample_or_fixed_and_drop_frees():
    tape, run = interpreter()
    live = run.run((New("a", 3), New("b", 5, "int64", per_sample=False)), {})
    assert bytes_now(tape) == (40, 10 + 12)
    assert live["b"].kind == "activations"
    run.run((Drop("a", "b"),), live)
    assert bytes_now(tape) == (0, 10) and live == {}


def test_a_parameters_gradient_is_of_the_kind_gradients():
    _, run = interpreter()
    assert run.run((New("grad.weight", 6, per_sample=False),), {})["grad.weight"].kind == "gradients"


def test_the_first_new_tensor_frees_the_dead_output():
    tape = Tape(None, False)
    tape.start("forward")
    dead = tape.new(tape.size(0, 7), "activations")
    run = Interpreter(tape, storage_bytes(4, False), "activations", dead=dead)
    run.run((New("a", 1), New("b", 1)), {})
    assert bytes_now(tape) == (0, 8) and dead.refs == 0


def test_convert_is_the_source_itself_where_both_storages_are_as_wide():
    tape, run = interpreter()  # float32: opmath is as wide as the model's dtype
    live = run.run((Convert("xf", "x", 10, "model", "opmath"),), {})
    assert live["xf"] is run.x and run.x.refs == 2 and bytes_now(tape) == (0, 10)
    tape, run = interpreter(size=2)  # bfloat16: a float32 copy
    live = run.run((Convert("xf", "x", 10, "model", "opmath"),), {})
    assert live["xf"] is not run.x and bytes_now(tape) == (0, 10 + 40)


@pytest.mark.parametrize("size, low", [(4, False), (2, True)])
def test_when_runs_its_event_only_for_its_dtype(size, low):
    _, run = interpreter(size)
    live = run.run((When(New("low", 1), low=True), When(New("wide", 1), low=False)), {})
    assert set(live) == ({"low"} if low else {"wide"})


def test_keep_input_binds_a_merging_layers_other_inputs_by_position():
    """KeepInput("x1"): attention with rotary = true keeps the tables it reads beside the tokens."""
    tape, run = interpreter()
    tables = tape.new(tape.size(24, 0), "activations")
    run.others = {"x1": tables}
    live = run.run((KeepInput(), KeepInput("x1")), {})
    assert live["x"] is run.x and live["x1"] is tables and tables.refs == 2
    run.run((Drop("x1"),), live)
    assert tables.refs == 1 and bytes_now(tape) == (24, 10)


def test_keep_input_hand_gradient_hold_and_cast_weight():
    handed, held, cache = [], [], []
    tape, run = interpreter(hand=handed.append, held=held, cache=cache)
    live = run.run((KeepInput(), New("gx", 10), HandGradient("gx"), Hold("gx"), CastWeight("w", 8, "bfloat16")), {})
    assert live["x"] is run.x and run.x.refs == 2
    assert handed == [live["gx"]] and held == [live["gx"]] and live["gx"].refs == 2
    assert cache == [live["w"]] and live["w"].refs == 2 and live["w"].kind == "weight copies"
    assert bytes_now(tape) == (16, 10 + 40)


NORMS = ('[model]\ninput = [4, 6]\n[[layers]]\ntype = "conv"\nout_channels = 4\nkernel_size = 1\n'
         '[[layers]]\ntype = "lrn"\nsize = 3\n[[layers]]\ntype = "rmsnorm"\n')
LLAMA = """[model]
input = ["T"]
[[layers]]
name = "embed"
type = "embedding"
num_embeddings = 11
embedding_dim = 8
[[layers]]
name = "rotary"
type = "rotary"
head_dim = 4
[[layers]]
name = "norm"
type = "rmsnorm"
module = "llama"
from = "embed"
[[layers]]
name = "attention"
type = "attention"
from = ["norm", "rotary"]
module = "llama"
rotary = true
num_heads = 2
kv_heads = 1
causal = true
[[layers]]
name = "head"
type = "dense"
out_features = 11
bias = false
"""


@pytest.mark.parametrize("name, values", [("gpt2", {"T": 8}), ("vit_b_16", {}), (NORMS, {}), (LLAMA, {"T": 3})],
                         ids=["gpt2", "vit", "norms", "llama"])
def test_layer_programs_are_events(name, values):
    """Every kind with its own ops writes them as events (archcalc/layers/events.py), in every setting the timeline
    asks for: each device, a dispatch mode or none, autocast or none."""
    spec = archcalc.loads(name) if "\n" in name else archcalc.load(ROOT / "specs" / f"{name}.toml")
    report = archcalc.analyze(spec, **values)
    written = 0
    for row in report.rows:
        for device, inplace, amp in [(d, i, a) for d in ("cpu", "cuda") for i in (True, False)
                                     for a in (None, ("bfloat16", "float32"), ("bfloat16", "bfloat16"))]:
            program = row.layer.program(row.input, row.requires_grad, device, inplace, amp=amp)
            if program is None:
                continue
            written += 1
            assert isinstance(program, Program)
            events = [*program.forward, *program.backward]
            events += [e.event for e in events if isinstance(e, When)]
            assert all(isinstance(e, Event) for e in events), row.name
            made = [*program.forward, *(e.event for e in program.forward if isinstance(e, When))]  # "out" perhaps by dtype
            assert any(isinstance(e, (New, Convert)) and e.name == "out" for e in made), row.name
    assert written


def test_no_function_of_the_timeline_is_longer_than_60_lines():
    """The step is an object with a method per phase: no function grows back into a 300-line one."""
    long = []
    for path in sorted((ROOT / "archcalc" / "memory" / "timeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.lineno} {node.name}")
    assert not long
