"""Issue 19: 'ℌ' and 'H' must not silently become one symbol.

Python reads identifiers NFKC-normalised, and so do archcalc's formulas: 'ℌ' (black-letter H) would be
'H'. Mathematics writes them as two symbols, so a styled letter (or a super- or subscript) in a name is
refused, with the plain letter to write instead. The same letter typed another way (fullwidth 'ｃ', the
micro sign 'µ') is still read as that letter, as docs/spec.md says.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import SpecError
from archcalc.cli.main import main

SYMBOLIC = '[model]\ninput = [3, "H", "W"]\n'
FLATTEN = '[[layers]]\ntype = "flatten"\n'

WRITTEN = [
    ("a var", SYMBOLIC + '[vars]\n"ℌ" = 3\n' + FLATTEN, "[vars]"),
    ("a var beside H", SYMBOLIC + '[vars]\nH = 3\n"ℌ" = 4\n' + FLATTEN, "[vars]"),
    ("a formula", SYMBOLIC + '[[layers]]\ntype = "dense"\nout_features = "ℌ + 1"\n', 'layers[1] "dense1" (dense)'),
    ("the input", '[model]\ninput = [3, "ℌ", "W"]\n' + FLATTEN, "[model]"),
    ("a layer's name", SYMBOLIC + '[[layers]]\ntype = "flatten"\nname = "ℌead"\n', 'layers[1] "ℌead" (flatten)'),
    ("a double-struck H", SYMBOLIC + '[[layers]]\ntype = "dense"\nout_features = "ℍ"\n', 'layers[1] "dense1" (dense)'),
    ("a bold H", SYMBOLIC + '[[layers]]\ntype = "dense"\nout_features = "𝐇"\n', 'layers[1] "dense1" (dense)'),
    ("a subscript", SYMBOLIC + '[[layers]]\ntype = "dense"\nout_features = "nᵢ"\n', 'layers[1] "dense1" (dense)'),
    ("from", SYMBOLIC + FLATTEN + '[[layers]]\ntype = "dense"\nout_features = 2\nfrom = "ℌ"\n', 'layers[2] "dense1" (dense)'),
    ("a block's variable", SYMBOLIC + '[blocks.b]\n[[blocks.b.layers]]\ntype = "dense"\nout_features = "H"\n'
     + FLATTEN + '[[layers]]\ntype = "block"\nblock = "b"\n"ℌ" = 2\n', 'layers[2] "block1" (block)'),
]


@pytest.mark.parametrize("text, where", [w[1:] for w in WRITTEN], ids=[w[0] for w in WRITTEN])
def test_a_styled_letter_is_refused_with_the_letter_to_write(text, where):
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(archcalc.loads(text))
    error = caught.value
    assert error.where == where
    assert "would be one name with" in error.problem and "Python reads names NFKC-normalised" in error.problem
    assert "write 'H'" in error.problem or "write 'i'" in error.problem


def test_a_styled_letter_given_as_a_value_is_refused():
    spec = archcalc.loads(SYMBOLIC + FLATTEN)
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(spec, **{"ℌ": 3, "W": 4})
    assert (caught.value.where, caught.value.field) == ("values", "ℌ")
    assert "one name with 'H'" in caught.value.problem


def test_set_of_a_styled_letter_exits_2(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(SYMBOLIC + FLATTEN, encoding="utf-8")
    result = CliRunner().invoke(main, ["show", str(path), "--set", "ℌ=3", "--set", "W=3"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "one name with 'H'" in result.stderr and len(result.stderr.splitlines()) <= 2


def test_the_same_letter_typed_another_way_is_still_that_letter():
    spec = archcalc.loads('[model]\ninput = [10]\n[vars]\n"µ" = 2\n[[layers]]\ntype = "dense"\nout_features = "μ + ｎ"\n')
    assert archcalc.analyze(spec, n=1).totals["params"] == 33  # µ (micro sign) is μ (mu); ｎ (fullwidth) is n
