"""Spec text is shown as text: a model name with rich markup in it is printed as written."""

from click.testing import CliRunner

from archcalc.cli.main import main


def test_markup_in_the_model_name_is_printed_verbatim(tmp_path):
    spec = tmp_path / "net.toml"
    spec.write_text('[model]\nname = "net [/] [red]x"\ninput = [4]\n[[layers]]\ntype = "dense"\nout_features = 2\n')
    result = CliRunner().invoke(main, ["show", str(spec), "--explain"])
    assert result.exit_code == 0, result.output
    assert "net [/] [red]x: input 4" in result.output
