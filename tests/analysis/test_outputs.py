"""Several outputs ([model] outputs = ["out", "aux"]): segmentation's heads, every one counted, returned as a dict.

The oracle is a two-headed segmentation network written as torchvision writes its FCN (a backbone, a classifier on
its last features, an auxiliary classifier on earlier ones, each upsampled to the input with F.interpolate, the
results in an OrderedDict "out", "aux"), trained on the sum of both heads' cross-entropy.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import archcalc  # noqa: E402
from archcalc import SpecError  # noqa: E402
from tests.memory.test_timeline_oracle import phases  # noqa: E402
from tests.oracle.timeline_probe import inference_peak, step_peaks  # noqa: E402
from tests.oracle.torch_probe import saved_bytes  # noqa: E402

SPEC = """[model]
input = [3, 8, 8]
outputs = ["out", "aux"]

[[layers]]
name = "backbone.conv1"
type = "conv"
out_channels = 4
kernel_size = 3
stride = 2
padding = 1
activation = "relu"
[[layers]]
name = "backbone.conv2"
type = "conv"
out_channels = 6
kernel_size = 3
padding = 1
activation = "relu"
[[layers]]
name = "classifier"
type = "conv"
out_channels = 5
kernel_size = 1
[[layers]]
name = "out"
type = "upsample"
size = [8, 8]
mode = "bilinear"
[[layers]]
name = "aux_classifier"
type = "conv"
from = "backbone.conv1"
out_channels = 5
kernel_size = 1
[[layers]]
name = "aux"
type = "upsample"
size = [8, 8]
mode = "bilinear"
"""


class Segmentation(nn.Module):
    """torchvision's _SimpleSegmentationModel, small: two heads, each upsampled to the input, in an OrderedDict."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Conv2d(3, 4, 3, 2, 1)
        self.backbone.conv2 = nn.Conv2d(4, 6, 3, 1, 1)
        self.classifier = nn.Conv2d(6, 5, 1)
        self.aux_classifier = nn.Conv2d(4, 5, 1)

    def forward(self, x):
        size = x.shape[-2:]
        aux = F.relu(self.backbone.conv1(x))
        result = OrderedDict()
        result["out"] = F.interpolate(self.classifier(F.relu(self.backbone.conv2(aux))), size=size, mode="bilinear",
                                      align_corners=False)
        result["aux"] = F.interpolate(self.aux_classifier(aux), size=size, mode="bilinear", align_corners=False)
        return result


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_two_heads_match_torch(batch, optimizer):
    from archcalc.backends.build import build

    spec = archcalc.loads(SPEC)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer)
    torch.manual_seed(0)
    reference, x = Segmentation(), torch.randn(batch, 3, 8, 8)
    built = build(spec)
    built.load_state_dict(reference.state_dict(), strict=True)
    got, want = built.eval()(x), reference.eval()(x)
    assert list(got) == list(want) == ["out", "aux"] and all(torch.allclose(got[k], want[k]) for k in want)
    assert report.totals["params"] == sum(p.numel() for p in reference.parameters())  # both heads counted
    assert report.memory.saved.at(batch) == saved_bytes(reference, x)
    # the training step on the sum of both heads' losses, to the byte, against torchvision's way and the build
    assert phases(report, batch) == step_peaks(reference, x, optimizer) == step_peaks(build(spec), x, optimizer)
    assert report.memory.inference_peak.at(batch) == inference_peak(built, x)


def test_outputs_in_json_and_the_backward_reaches_every_head():
    report = archcalc.analyze(archcalc.loads(SPEC), batch=2)
    assert report.to_dict()["outputs"] == {"out": [5, 8, 8], "aux": [5, 8, 8]}
    assert report.output == (5, 8, 8) and all(row.backward for row in report.rows)
    one = archcalc.analyze(archcalc.loads(SPEC.replace('outputs = ["out", "aux"]', "")), batch=2)
    assert "outputs" not in one.to_dict()
    assert [row.name for row in one.rows if not row.backward] == ["backbone.conv2", "classifier", "out"]  # the last is the output
    assert one.totals["params"] == report.totals["params"]  # every layer counted either way


@pytest.mark.parametrize("outputs, message", [
    ('["nope"]', "outputs names 'nope', which is no layer"),
    ('["out", "out"]', "a layer is named twice"),
    ('"out"', "expected a list of layers' names"),
])
def test_outputs_must_name_layers(outputs, message):
    with pytest.raises(SpecError, match=message):
        archcalc.analyze(archcalc.loads(SPEC.replace('["out", "aux"]', outputs)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch", [1, 3])
def test_one_output_that_is_not_the_last_row_gets_the_loss(batch, optimizer):
    """outputs = ["out"], the aux head after it in the file: the loss is out's (the head after it is computed, its
    result dropped, no backward), as the build returns out alone; to the byte against torch."""
    from archcalc.backends.build import build

    spec = archcalc.loads(SPEC.replace('outputs = ["out", "aux"]', 'outputs = ["out"]'))
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer)
    assert report.output == (5, 8, 8) and [row.name for row in report.rows if not row.backward] == ["aux_classifier", "aux"]
    torch.manual_seed(0)
    built, x = build(spec), torch.randn(batch, 3, 8, 8)
    assert tuple(built(x).shape) == (batch, 5, 8, 8)
    assert phases(report, batch) == step_peaks(built, x, optimizer)
