"""import hf:PATH: a transformers model from its config alone (no weights, nothing downloaded), captured with torch.export."""

import pytest

torch = pytest.importorskip("torch")
import tests.oracle.vision  # noqa: E402, F401  (before transformers, which imports torchvision where it is installed)

transformers = pytest.importorskip("transformers")

import json  # noqa: E402

from click.testing import CliRunner  # noqa: E402

import archcalc  # noqa: E402
from archcalc.backends import importer  # noqa: E402
from archcalc.backends.importer import capture_export  # noqa: E402
from archcalc.backends.verify import verify  # noqa: E402
from archcalc.cli.main import main  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.oracle.torch_probe import flops  # noqa: E402

HF = ROOT / "tests" / "fixtures" / "hf"
nn = torch.nn


def test_an_hf_config_builds_its_architecture_on_the_meta_device_without_weights():
    module = importer.load_target(f"hf:{HF / 'gpt2'}")
    assert type(module).__name__ == "GPT2LMHeadModel" and {p.device.type for p in module.parameters()} == {"meta"}
    assert importer.load_target(f"hf:{HF / 'gpt2' / 'config.json'}", class_name="GPT2Model").config.n_layer == 2


def test_an_hf_model_is_captured_with_torch_export_and_what_is_missing_is_listed_by_cause(tmp_path):
    config = json.loads((HF / "mistral" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"sliding_window": 4}))  # a mask archcalc has no field for
    module = importer.load_target(f"hf:{tmp_path}")
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(module, ["T"])
    assert error.value.capture == "torch.export"
    text = str(error.value)
    assert "transformers/models/mistral/modeling_mistral.py:" in text  # the place in transformers' own file
    assert "control flow" not in text  # torch.fx's failure is not the one shown: torch.export captured it


def imported(name: str):
    """The spec of a fixture's config (imported on the meta device, as the CLI does), and the model built on the CPU."""
    from archcalc.backends.importer import hf

    target = importer.load_target(f"hf:{HF / name}")
    shape = hf.default_input(target)
    text = importer.import_module(target, shape)
    config = hf.config(str(HF / name))
    torch.manual_seed(0)
    return archcalc.loads(text), getattr(transformers, config.architectures[0])(config), config, shape


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "mistral", "qwen2", "t5_encoder", "vit", "clip_vision"])
def test_hf_configs_import_with_params_and_flops_equal_to_torchs(name):
    """FlopCounterMode with attention forced to the math kernel counts QKᵀ and AV, as archcalc does; `verify` is green."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    spec, model, config, shape = imported(name)
    text = shape == ["T"]
    values = {"T": 7} if text else {}
    report = archcalc.analyze(spec, B=1, **values)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    x = torch.randint(0, config.vocab_size, (1, 7)) if text else torch.randn(1, *shape)
    with sdpa_kernel(SDPBackend.MATH):
        assert report.totals["flops"] == flops(model, x)
    assert [str(c) for c in verify(archcalc.analyze(spec, B=2, **values)) if not c.ok] == []


def test_gpt2_imported_from_its_config_is_specs_gpt2_in_every_number(tmp_path):
    """GPT-2 small's config: the import (Conv1D as dense, the attention of operations, wpe as positions, lm_head tied)
    gives the totals and the memory of specs/gpt2.toml, at any T and B."""
    config = json.loads((HF / "gpt2" / "config.json").read_text())
    config.update(n_embd=768, n_head=12, n_layer=12, n_positions=1024, vocab_size=50257)
    (tmp_path / "config.json").write_text(json.dumps(config))
    text = importer.import_module(importer.load_target(f"hf:{tmp_path}"), ["T"])
    assert "repeat = 12" in text
    ours, shipped = archcalc.loads(text), archcalc.load(ROOT / "specs" / "gpt2.toml")
    for T, B in ((1024, 1), (128, 8)):
        a, b = archcalc.analyze(ours, B=B, T=T).to_dict(), archcalc.analyze(shipped, B=B, T=T).to_dict()
        assert a["totals"] == b["totals"] and a["memory"] == b["memory"]


@pytest.mark.parametrize("args, message", [
    ([f"hf:{HF}"], "no config.json there"),
    ([f"hf:{HF / 'gpt2'}", "--class", "NotAModel"], "'NotAModel' is not a model class of transformers"),
    ([f"hf:{HF / 'gpt2'}", "--args", "[1]"], "built from its config alone"),
    ([f"{ROOT / 'tests' / 'oracle' / 'reference_nets.py'}:resnet18", "--class", "X"], "--class names a transformers class"),
])
def test_bad_hf_targets_exit_2_with_one_message(args, message):
    done = CliRunner().invoke(main, ["import", *args])
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"), ("[1, 2]", "no model_type"), ('{"model_type": 3}', "no model_type"),
    ('{"model_type": "no_such_model"}', "is not one transformers"),
    ('{"model_type": "gpt2", "architectures": [7]}', "architectures[0] is 7"),
    ('{"model_type": "gpt2", "architectures": ["os"]}', "'os' is not a model class of transformers"),
    ('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "auto_map": {"AutoModel": "evil.Model"}}', None),
])
def test_a_config_from_a_stranger_is_read_as_data_only(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    if message is None:  # auto_map is never followed: transformers' own class is built
        assert type(importer.load_target(f"hf:{tmp_path}")).__name__ == "GPT2LMHeadModel"
        return
    done = CliRunner().invoke(main, ["import", f"hf:{tmp_path}"])
    assert done.exit_code == 2 and message in done.output and "Traceback" not in done.output, done.output


def test_the_sample_is_token_ids_for_a_1d_input_into_an_embedding():
    module = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    assert capture_export.sample(module, ["T"]).dtype == torch.long
    assert capture_export.sample(nn.Linear(4, 2), [4]).dtype == torch.float32
