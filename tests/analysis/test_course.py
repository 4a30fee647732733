"""The course's numbers (its lecture notes), computed by hand there: archcalc must agree, errata aside."""

import archcalc
from archcalc.report import Report
from tests.conftest import SPECS


def report(name: str, **values) -> Report:
    return archcalc.analyze(archcalc.load(SPECS / name), **values)


def test_alexnet_layer_by_layer():
    r = report("alexnet.toml")
    expected = {  # name: (output, weights, biases, params)
        "conv1": ((96, 55, 55), 34848, 96, 34944),
        "pool1": ((96, 27, 27), 0, 0, 0),
        "conv2": ((256, 27, 27), 614400, 256, 614656),  # the notes print 27²×96: erratum
        "pool2": ((256, 13, 13), 0, 0, 0),  # the notes print 13²×96: erratum
        "conv3": ((384, 13, 13), 884736, 384, 885120),
        "conv4": ((384, 13, 13), 1327104, 384, 1327488),
        "conv5": ((256, 13, 13), 884736, 256, 884992),
        "pool3": ((256, 6, 6), 0, 0, 0),
        "flatten": ((9216,), 0, 0, 0),
        "fc1": ((4096,), 4096 * 9216, 4096, 37752832),
        "fc2": ((4096,), 4096 * 4096, 4096, 16781312),
        "fc3": ((1000,), 4096 * 1000, 1000, 4097000),
    }
    for name, (output, weights, biases, params) in expected.items():
        row = r.row(name)
        assert (row.output, row.weights, row.biases, row.params) == (output, weights, biases, params), name


def test_alexnet_totals_and_shares():
    r = report("alexnet.toml")
    assert r.totals["params"] == 62378344
    assert round(r.share(r.by_type["dense"]), 1) == 94.0  # "94% of the parameters are in the fc layers"
    assert round(r.share(r.row("fc1").params), 1) == 60.5  # "60% in the first one"


def test_lenet5_has_about_60k_parameters_not_hundreds_of_thousands():
    assert report("lenet5.toml").totals["params"] == 61706


def test_quiz_mlp_counts_weights_only():
    r = report("mlp_quiz.toml")
    assert r.totals["params"] == 10 * 200 + 200 * 100 + 100 * 1 == 22100


def test_quiz_mlp_with_biases_is_22401():
    text = (SPECS / "mlp_quiz.toml").read_text().replace("bias = false", "bias = true")
    assert archcalc.analyze(archcalc.loads(text)).totals["params"] == 22401


def test_symbolic_alexnet_gives_the_numbers_back():
    r = report("alexnet_symbolic.toml", H=224, W=224, classes=1000)
    assert r.totals["params"] == 62378344
    assert r.row("conv1").output == (96, 55, 55)


def test_symbolic_fc3_is_4097_classes():
    r = report("alexnet_symbolic.toml")
    assert str(r.row("fc3").params) == "4097*classes"
    assert str(r.row("conv1").output[1]) == "floor(H/4 - 7/4) + 1"
