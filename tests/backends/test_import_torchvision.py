"""import of torchvision's and timm's own models (random weights, nothing downloaded): a representative subset
of benchmarks/import_coverage.py, each exact against torch in parameters, FLOPs, saved bytes and output shape,
its state_dict loading strictly into build(spec). Small images: the numbers are formulas, the sizes only cost time."""

import pytest

torch = pytest.importorskip("torch")
from tests.oracle import vision  # noqa: E402  (torchvision's two ops beside CPU torch)

torchvision = vision.torchvision() or pytest.skip("torchvision is not installed", allow_module_level=True)

from archcalc.backends import importer  # noqa: E402
from tests.backends.test_import_capture import exact  # noqa: E402

CASES = [  # (model, one sample's shape): a stack, blocks, concat, [names], subclassed Conv3d, squeeze-excitation
    ("resnet18", (3, 64, 64)),
    ("regnet_y_400mf", (3, 64, 64)),
    ("densenet121", (3, 64, 64)),
    ("mobilenet_v3_small", (3, 64, 64)),
    ("r3d_18", (3, 4, 32, 32)),
    ("efficientnet_b0", (3, 64, 64)),  # stochastic depth
]


@pytest.mark.parametrize("name, shape", CASES)
def test_torchvision_models_import_exactly(name, shape):
    torch.manual_seed(0)
    module = torchvision.models.get_model(name, weights=None)
    text = importer.import_module(module, list(shape))
    exact(module, text, shape)


def test_regnet_block_names_come_back_through_the_names_table():
    module = torchvision.models.get_model("regnet_y_400mf", weights=None)
    text = importer.import_module(module, [3, 64, 64])
    assert '"trunk_output.block1.block1_0" = "trunk_output.block1.block1-0"' in text


def test_swin_is_refused_with_its_window_attention_counted_and_placed_in_torchvision():
    module = torchvision.models.get_model("swin_t", weights=None)
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(module, [3, 64, 64], capture="fx")
    (cause, problems), *_ = error.value.causes()
    assert cause.startswith("_get_relative_position_bias()") and len(problems) == 12
    assert "torchvision/models/swin_transformer.py:287" in str(error.value)


@pytest.mark.parametrize("name", ["resnet50"])  # efficientnet_b0, mobilenetv3: x.mean((2, 3)) as pooling (not yet)
def test_timm_models_import_exactly(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False)
    text = importer.import_module(module, [3, 64, 64])
    exact(module, text, (3, 64, 64))
