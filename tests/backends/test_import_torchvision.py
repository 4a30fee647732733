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


MORE = [  # one of each other family of benchmarks/import_coverage.py's 80 (all exact there, at 224×224)
    ("alexnet", (3, 64, 64)),  # adaptive pooling, dropout, a stack of linears
    ("squeezenet1_1", (3, 64, 64)),  # fire modules' concat, ceil_mode pooling
    ("resnext50_32x4d", (3, 64, 64)),  # grouped convs (torch's weight-gradient count of them)
    ("efficientnet_v2_s", (3, 64, 64)),  # fused MBConv and stochastic depth
]


@pytest.mark.parametrize("name, shape", MORE)
def test_more_torchvision_families_import_exactly(name, shape):
    torch.manual_seed(0)
    module = torchvision.models.get_model(name, weights=None)
    exact(module, importer.import_module(module, list(shape)), shape)


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


@pytest.mark.parametrize("v2", [False, True])
def test_a_small_swin_imports_exactly(v2):
    """Shifted windows (window_attention, V2's cosine attention and cpb_mlp), patch merging (a pad by nothing, strided
    slices, a cat along the last axis), permutes to channels last and back: torchvision's state_dict loads strictly."""
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

    torch.manual_seed(0)
    extra = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if v2 else {}
    module = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                             stochastic_depth_prob=0.1, num_classes=10, **extra)
    text = importer.import_module(module, [3, 32, 32])
    assert text.count('type = "window_attention"') == 4 or "repeat" in text
    exact(module, text, (3, 32, 32))


def test_a_small_maxvit_imports_exactly():
    """MBConv, window and grid partitions (views sized from x.shape, SwapAxes), RelativePositionalMultiHeadAttention as
    window_attention with module = "maxvit": torchvision's state_dict loads strictly."""
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    module = MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[16, 32], block_layers=[1, 1],
                    head_dim=8, stochastic_depth_prob=0.1, num_classes=10)
    text = importer.import_module(module, [3, 32, 32])
    assert 'module = "maxvit"' in text
    exact(module, text, (3, 32, 32))


def test_detection_models_are_refused_with_what_they_need_and_their_backbones_import():
    torch.manual_seed(0)
    module = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)
    with pytest.raises(importer.ImportFailed) as error:
        importer.import_module(module, [3, 320, 320])
    text = str(error.value)
    assert text.startswith("SSD is a detection model") and "non-maximum suppression" in text and "model.backbone" in text
    exact(module.backbone, importer.import_module(module.backbone, [3, 64, 64]), (3, 64, 64))


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
