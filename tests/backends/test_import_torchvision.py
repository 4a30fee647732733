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
    ("convnext_tiny", (3, 32, 32)),  # layer scale, LayerNorm2d (F.layer_norm between permutes)
    ("shufflenet_v2_x0_5", (3, 64, 64)),  # chunk, channel shuffle (views sized from x.shape)
    ("mnasnet0_5", (3, 64, 64)),  # x.mean((2, 3))
    ("googlenet", (3, 64, 64)),  # auxiliary heads in training: [model] outputs
]


@pytest.mark.parametrize("name, shape", CASES)
def test_torchvision_models_import_exactly(name, shape):
    torch.manual_seed(0)
    module = torchvision.models.get_model(name, weights=None)
    text = importer.import_module(module, list(shape))
    exact(module, text, shape)


def test_a_small_vision_transformer_imports_exactly():
    """Class token (expand, cat), positions (a bare parameter added), patches (a view sized from x.shape), x[:, 0]."""
    torch.manual_seed(0)
    module = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                                  mlp_dim=64, num_classes=10)
    text = importer.import_module(module, [3, 32, 32])
    assert 'name = "class_token"\ntype = "parameter"' in text and 'name = "encoder.pos_embedding"' in text
    exact(module, text, (3, 32, 32))


@pytest.mark.parametrize("name", ["fcn_resnet50", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_segmentation_models_import_exactly_with_their_heads(name):
    """F.interpolate to the input's size; with aux_loss, the dict's "out" and "aux" as [model] outputs."""
    torch.manual_seed(0)
    aux = {"aux_loss": True} if name.startswith("fcn") else {}
    module = torchvision.models.get_model(name, weights=None, weights_backbone=None, **aux)
    text = importer.import_module(module, [3, 64, 64])
    if aux:
        assert "outputs = [" in text
    exact(module, text, (3, 64, 64))


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


@pytest.mark.parametrize("name, shape", [("resnet50", 64), ("efficientnet_b0", 64), ("mobilenetv3_small_100", 64),
                                         ("convnext_nano", 64), ("vit_small_patch16_224", 224)])
def test_timm_models_import_exactly(name, shape):
    """timm's own layers: BatchNormAct2d (F.batch_norm, then its act), LayerNorm2d, gamma.reshape(1, -1, 1, 1) as a
    layer scale, Attention written around F.scaled_dot_product_attention (built as archcalc's own: not loaded strictly)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False)
    text = importer.import_module(module, [3, shape, shape])
    exact(module, text, (3, shape, shape), strict='type = "attention"' not in text)
