"""verify where FlopCounterMode miscounts: it accepts torch's known count, and says why, instead of failing."""

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends.verify import verify  # noqa: E402
from archcalc.cli.main import main  # noqa: E402

GROUPED = '[model]\ninput = [4, 6, 6]\n[[layers]]\ntype = "conv"\nout_channels = 8\nkernel_size = 3\ngroups = 4\n'
TOKENS = ('[model]\ninput = ["T"]\n[[layers]]\nname = "wte"\ntype = "embedding"\nnum_embeddings = 13\nembedding_dim = 8\n'
          '[[layers]]\ntype = "attention"\nnum_heads = 2\ncausal = true\n')


def test_a_grouped_conv_verifies_with_torchs_overcount_noted():
    checks = verify(archcalc.analyze(archcalc.loads(GROUPED)))
    assert all(c.ok for c in checks)
    training = next(c for c in checks if c.quantity == "training_flops")
    assert training.measured == training.counted == 4 * training.expected // 2 + training.expected // 2  # 2 + 4 forwards
    assert "groups" in training.note


@pytest.mark.parametrize("kernel", ["flash", "math"])
def test_attention_verifies_under_both_kernels(kernel):
    report = archcalc.analyze(archcalc.loads(TOKENS + f'kernel = "{kernel}"\n'), T=5)
    checks = verify(report)
    assert [c for c in checks if not c.ok] == []
    noted = {c.quantity for c in checks if c.note and c.expected != c.measured}
    assert noted == ({"flops", "training_flops"} if kernel == "flash" else set())  # the math kernel is counted in full
    flops = next(c for c in checks if (c.layer, c.quantity) == ("attention1", "flops"))
    assert flops.expected - flops.measured == (0 if kernel == "math" else 2 * 2 * (2 * 5 * 5 * 8))  # QKᵀ and AV


def test_a_wrong_torch_count_still_fails():
    checks = verify(archcalc.analyze(archcalc.loads(GROUPED)))
    training = next(c for c in checks if c.quantity == "training_flops")
    from dataclasses import replace

    assert not replace(training, measured=training.measured + 2).ok


def test_the_command_says_what_torch_counted_and_why():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokens.toml"
        path.write_text(TOKENS)
        # a pipe is 80 columns unless COLUMNS says otherwise: wide enough here for the note on one line
        result = CliRunner().invoke(main, ["verify", str(path), "--set", "T=4"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "✓" in result.output and "*" in result.output
    assert "counts scaled_dot_product_attention as 0 on the CPU" in result.output
