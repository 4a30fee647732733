"""The reference modules behind the graph specs are torchvision's networks: published parameter counts and FLOPs."""

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from tests.oracle import (  # noqa: E402
    reference_nets as ref,
    torch_probe,  # noqa: F401  (torch_probe: torch on one thread)
)


def flops(net, size: int = 224) -> int:
    with FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, 3, size, size, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize("name", sorted(ref.PUBLISHED))
def test_reference_nets_have_torchvisions_published_totals(name):
    with torch.device("meta"):  # counts depend on shapes only: no memory, no compute
        net = getattr(ref, name)()
    params, published_flops = ref.PUBLISHED[name]
    assert sum(p.numel() for p in net.parameters()) == params
    assert flops(net) == published_flops


def test_state_dict_keys_follow_torchvisions_module_paths():
    keys = {name: set(getattr(ref, name)().state_dict()) for name in ref.PUBLISHED}
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.num_batches_tracked", "fc.bias"} <= keys["resnet18"]
    assert "layer1.0.downsample.0.weight" not in keys["resnet18"] and "layer1.0.downsample.0.weight" in keys["resnet50"]
    assert {"layer4.2.conv3.weight", "layer4.2.bn3.bias"} <= keys["resnet50"]
    assert {"features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
            "features.2.conv.0.0.weight", "features.2.conv.3.weight", "features.18.0.weight", "classifier.1.weight"} <= keys["mobilenet_v2"]
    assert {"features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight", "features.denseblock4.denselayer16.conv2.weight",
            "features.transition3.conv.weight", "features.norm5.bias", "classifier.weight"} <= keys["densenet121"]
    assert {"features.0.weight", "features.1.running_var", "features.41.num_batches_tracked", "classifier.0.weight",
            "classifier.3.bias", "classifier.6.weight"} <= keys["vgg16_bn"]
    assert not any(key.startswith(("features.2.", "features.6.", "classifier.1.")) for key in keys["vgg16_bn"])  # ReLU, pool
    assert len(keys["resnet18"]) == 122 and len(keys["mobilenet_v2"]) == 314 and len(keys["vgg16_bn"]) == 13 * 7 + 3 * 2


def test_unet_keeps_the_input_size_and_concatenates_its_skips():
    net = ref.unet()
    x = torch.zeros(2, 3, 64, 48)
    assert tuple(net.eval()(x).shape) == (2, 2, 64, 48)
    assert net.up1.conv.conv1.in_channels == 2 * net.up1.up.out_channels == 512
