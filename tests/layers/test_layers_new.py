"""Issue 10's first kinds without torch: refusals that name their field, the hints `check` gives for
the typical wrong answers each kind knows (Layer.mistaken), and formulas in T."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import SpecError
from archcalc.core import num


def spec(input_shape, *layers) -> str:
    lines = ["[model]", f"input = {input_shape}"]
    for layer in layers:
        lines += ["[[layers]]", *(f"{k} = {v}" for k, v in layer.items())]
    return "\n".join(lines) + "\n"


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.loads(text))
    return caught.value


REFUSALS = [
    ("[4]", dict(type='"activation"', function='"relu"', negative_slope=0.2), "relu takes no negative_slope", "negative_slope"),
    ("[4, 5]", dict(type='"activation"', function='"softmax"', dim=2), "dim = 2 is not an axis", "dim"),
    ("[4, 5]", dict(type='"permute"', dims="[0, 0]"), "is not an order", "dims"),
    ("[4, 5]", dict(type='"permute"', dims="[2, 1, 0]"), "dims gives 3 axes", "dims"),
    ("[4, 5, 6]", dict(type='"flatten"', start_dim=2, end_dim=1), "comes after end_dim", "start_dim"),
    ("[4, 5]", dict(type='"layernorm"', normalized_shape=4), "is not the last axes", "normalized_shape"),
    ("[6, 5]", dict(type='"groupnorm"', num_groups=4), "does not divide the 6 channels", "num_groups"),
    ("[3, 5]", dict(type='"prelu"', num_parameters=4), "the input has 3 channels", "num_parameters"),
    ("[3, 8, 8]", dict(type='"dense"', out_features=2), "dense needs a flat input, got 3×8×8", None),
    ("[3, 8, 8]", dict(type='"lstm"', hidden_size=2), "lstm needs a sequence [T, features]", None),
    ("[1, 3]", dict(type='"conv"', out_channels=1, kernel_size=1, padding=3, padding_mode='"reflect"'),
     "pads 3 on a side of an axis of size 3", "padding"),
    ("[1, 3]", dict(type='"conv_transpose"', out_channels=1, kernel_size=2, stride=2, output_padding=2),
     "output_padding 2 must be smaller", "output_padding"),
    ("[1, 2]", dict(type='"conv_transpose"', out_channels=1, kernel_size=1, padding=1), "the output would have 0 values", "padding"),
]


@pytest.mark.parametrize("shape, layer, message, field", REFUSALS, ids=[r[2] for r in REFUSALS])
def test_refusals_name_the_field(shape, layer, message, field):
    error = refused(spec(shape, layer))
    assert message in str(error)
    assert error.field == field


HINTS = [  # (input, layer, claim key, wrong value, hint)
    ('["T", 8]', dict(type='"layernorm"'), "layernorm1.params", "16*T", "counted per token"),
    ('["T", 8]', dict(type='"layernorm"'), "layernorm1.params", 8, "γ only"),
    ("[6, 5]", dict(type='"groupnorm"', num_groups=3), "groupnorm1.params", 6, "per group"),
    ('["T", 8]', dict(type='"dense"', out_features=4), "dense1.params", "36*T", "counted per token"),
    ('["T", 8]', dict(type='"dense"', out_features=4), "dense1.macs", 32, "one token only"),
    ('["T", 8]', dict(type='"gru"', hidden_size=4), "gru1.biases", 12, "one bias per gate"),
    ("[2, 4, 4]", dict(type='"conv_transpose"', out_channels=3, kernel_size=4, stride=2, padding=1),
     "conv_transpose1.output", [3, 10, 10], "padding forgotten"),
]


@pytest.mark.parametrize("shape, layer, key, wrong, hint", HINTS, ids=[h[4] for h in HINTS])
def test_typical_wrong_answers_get_their_hint(shape, layer, key, wrong, hint):
    [verdict] = archcalc.check(archcalc.loads(spec(shape, layer)), {key: wrong})
    assert not verdict.ok
    assert verdict.mistake is not None and hint in verdict.mistake


def test_a_sequence_model_is_a_formula_in_T():
    text = spec('["T", 32]', dict(type='"lstm"', hidden_size=16), dict(type='"layernorm"'), dict(type='"dense"', out_features=10))
    report = archcalc.analyze(archcalc.loads(text))
    t = num.symbol("T")
    assert report.output == (t, 10)
    assert report.totals["params"] == 4 * 16 * (32 + 16) + 2 * 4 * 16 + 2 * 16 + 16 * 10 + 10  # no T in parameters
    assert report.totals["macs"] == t * (4 * 16 * (32 + 16) + 16 * 10)
    at_5 = archcalc.analyze(archcalc.loads(text), T=5)
    assert at_5.totals["macs"] == num.subs(report.totals["macs"], {"T": 5})


def test_default_flatten_and_activation_shorthand_are_unchanged():
    text = spec("[3, 4, 4]", dict(type='"flatten"'), dict(type='"dense"', out_features=2, activation='"softmax"'))
    report = archcalc.analyze(archcalc.loads(text))
    assert [row.output for row in report.rows] == [(48,), (2,)]
