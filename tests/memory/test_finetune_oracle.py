"""Fine-tuning against the CPU oracle, to the byte: frozen layers on drawn networks, LoRA against peft.

A frozen layer is `requires_grad_(False)` on the torch side ([finetune] freeze, or --freeze); LoRA is peft's
(`get_peft_model` with a LoraConfig of the same rank, alpha, dropout and target_modules). The step is the oracle's
(tests/oracle/timeline_probe.py): each phase's peak of live storages; with it the parameters, the trainable ones,
FlopCounterMode's training FLOPs and the bytes saved_tensors_hooks sees kept. peft imports transformers, which
imports torchvision: tests.oracle.vision first.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (peft imports transformers, which imports torchvision)
from tests.memory.test_memory_oracle import DTYPES, Net, measured, networks, predicted  # noqa: E402
from tests.memory.test_timeline_attention import Attention  # noqa: E402
from tests.memory.test_timeline_oracle import graphs, loss_for, oracle, phases  # noqa: E402
from tests.oracle.timeline_probe import step_peaks  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@settings(max_examples=30, **SETTINGS)
@given(net=networks(), batch=st.integers(2, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       optimizer=st.sampled_from(["sgd", "adam", "momentum"]), data=st.data())
def test_drawn_stacks_with_frozen_layers(net, batch, dtype, optimizer, data):
    """Random layers frozen: no gradient and no optimizer state for them, nothing kept before the first layer that
    trains, no weight-gradient FLOPs; the rest as before."""
    if dtype == "bfloat16" and net.dims == 3 and any(isinstance(m, nn.AvgPool3d) for m in net.modules):
        dtype = "float32"  # torch has no bfloat16 avg_pool3d on the CPU
    spec = archcalc.loads(net.spec())
    rows = archcalc.analyze(spec).rows
    first = [sum(1 + ("activation" in table) for table in net.tables[:i]) for i in range(len(net.tables))]
    with_params = [i for i, row in enumerate(rows) if row.params != 0]
    frozen = data.draw(st.lists(st.sampled_from(with_params), unique=True) if with_params else st.just([]))
    for i in frozen:
        net.modules[first[i]].requires_grad_(False)
    model = nn.Sequential(*net.modules)
    assume(trainable(model) > 0)  # a step with nothing to train has no backward
    report = archcalc.analyze(spec, batch=batch, dtype=dtype, optimizer=optimizer, freeze=[rows[i].name for i in frozen])
    assert report.totals["trainable_params"] == trainable(model)
    assert predicted(report) == measured(model, net.input, batch, dtype), net.spec()
    try:
        expected = oracle(model, net.input, batch, dtype, optimizer, loss_for(net.tables, net.shape))
    except ValueError:  # batchnorm of one value per channel: torch refuses to train it
        assume(False)
    assert phases(report, batch) == expected, (net.spec(), frozen)


@settings(max_examples=25, **SETTINGS)
@given(text=graphs(), batch=st.integers(1, 3), optimizer=st.sampled_from(["sgd", "adam"]), data=st.data())
def test_drawn_graphs_with_frozen_layers(text, batch, optimizer, data):
    """Skips, add, mul and concat with random layers frozen (archcalc's build: the Graph module)."""
    from archcalc.backends.build import build

    spec = archcalc.loads(text)
    names = [row.name for row in archcalc.analyze(spec).rows if row.params != 0]
    frozen = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names) - 1))
    model = build(spec)
    for name in frozen:
        model.get_submodule(name).requires_grad_(False)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, freeze=frozen)
    assert report.totals["trainable_params"] == trainable(model)
    assert phases(report, batch) == oracle(model, report.input, batch, "float32", optimizer), (text, frozen)


def test_a_frozen_prefix_keeps_nothing():
    """Nothing before the first layer that trains keeps anything; a frozen dense keeps no copy of its input even
    where a gradient flows through it (its weight alone serves the input's gradient)."""
    text = ('[model]\ninput = [8]\n' + ''.join(f'[[layers]]\nname = "fc{i}"\ntype = "dense"\nout_features = 8\n'
                                             'activation = "relu"\n' for i in range(4)))
    spec = archcalc.loads(text)
    full = archcalc.analyze(spec, batch=4)
    head = archcalc.analyze(spec, batch=4, freeze=["fc0", "fc1", "fc2"])
    middle = archcalc.analyze(spec, batch=4, freeze=["fc1"])
    kept = [s.at(4) for s in full.memory.per_row]
    # fc3 keeps its input (fc2's ReLU output, which fc2's ReLU no longer keeps) and its ReLU's output
    assert [s.at(4) for s in head.memory.per_row] == [0, 0, 0, kept[3] + 4 * 8 * 4]
    # fc1 frozen between trained layers: its ReLU keeps its output, the dense keeps no input (fc0's ReLU output,
    # which fc0's ReLU keeps anyway); fc2 keeps fc1's ReLU output (counted for the ReLU first)
    assert [s.at(4) for s in middle.memory.per_row] == kept
    assert head.totals["trainable_params"] == 8 * 8 + 8
    assert head.totals["training_flops"] == full.totals["flops"] + 2 * 8 * 8  # fc3's weight gradient alone


# LoRA: peft's layers against archcalc's ------------------------------------------------------------------------


@st.composite
def token_mlps(draw):
    """A stack of dense layers over tokens [T, d] (with or without an activation), its names, its torch module."""
    t, d = draw(st.integers(1, 5)), draw(st.integers(2, 8))
    lines = ["[model]", f"input = [{t}, {d}]"]
    modules: OrderedDict = OrderedDict()
    names = []
    width = d
    for i in range(draw(st.integers(1, 3))):
        out, bias = draw(st.integers(2, 8)), draw(st.booleans())
        activation = draw(st.sampled_from([None, "relu", "gelu"]))
        name = f"fc{i}"
        lines += ["[[layers]]", f'name = "{name}"', 'type = "dense"', f"out_features = {out}", f"bias = {str(bias).lower()}"]
        modules[name] = nn.Linear(width, out, bias=bias)
        if activation:
            lines.append(f'activation = "{activation}"')
            modules[f"{name}_{activation}"] = nn.ReLU() if activation == "relu" else nn.GELU()
        names.append(name)
        width = out
    return (t, d), "\n".join(lines) + "\n", modules, names


@settings(max_examples=30, **SETTINGS)
@given(mlp=token_mlps(), batch=st.integers(1, 3), rank=st.integers(1, 4), dropout=st.sampled_from([0.0, 0.25]),
       dtype=st.sampled_from(["float32", "bfloat16"]), optimizer=st.sampled_from(["sgd", "adam"]), data=st.data())
def test_lora_on_drawn_stacks_matches_peft(mlp, batch, rank, dropout, dtype, optimizer, data):
    """peft's LoRA on some of a stack's dense layers (a bfloat16 base: float32 adapters, peft's default): parameters,
    the trainable ones, the bytes kept, training FLOPs, each phase's peak; and peft's state_dict loads into the
    build strictly, its `base_model.model.` prefix off."""
    peft = pytest.importorskip("peft")
    from archcalc.backends.build import build

    shape, text, modules, names = mlp
    targets = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    torch.manual_seed(0)
    base = nn.Sequential(modules).to(DTYPES[dtype])
    model = peft.get_peft_model(base, peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout,
                                                      target_modules=targets))
    spec = archcalc.loads(text)
    options = dict(lora_rank=rank, lora_alpha=2 * rank, lora_dropout=dropout, lora_targets=targets, base_dtype=dtype)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, **options)
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert report.totals["trainable_params"] == trainable(model)
    with torch.no_grad():  # peft starts lora_B at zero: random, so that the outputs below test the adapters too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    built = build(spec, **options)
    built.load_state_dict({k.removeprefix("base_model.model."): v for k, v in model.state_dict().items()}, strict=True)
    assert trainable(built) == trainable(model)
    assert {k: v.dtype for k, v in built.state_dict().items()} == {
        k.removeprefix("base_model.model."): v.dtype for k, v in model.state_dict().items()}  # float32 adapters too
    x = torch.randn(batch, *shape, dtype=DTYPES[dtype])
    torch.testing.assert_close(built.eval()(x), model.eval()(x))  # the same module, peft's forward
    ours = predicted(report)  # the peft model as it is (its float32 adapters beside a 16-bit base)
    assert (ours["training_flops"], ours["saved"], ours["params"]) == (
        flops(model, x, backward=True), saved_bytes(model, x), sum(p.numel() * p.element_size() for p in model.parameters())), text
    loss = "mse" if text.rstrip().endswith(('"relu"', '"gelu"')) else "tokens"
    assert phases(report, batch) == step_peaks(model, x, optimizer, loss=loss), (text, targets)


@st.composite
def attention_stacks(draw):
    """Attention layers over tokens [T, d] (tests/memory/test_timeline_attention.py's module: in_proj, out_proj),
    after a frozen prefix (a layernorm and a dense) or none, then a dense head: their spec, their module."""
    heads, t = draw(st.sampled_from([2, 3])), draw(st.integers(2, 5))
    d = heads * draw(st.integers(2, 3))
    net = Net((t, d))
    net.input = [t, d]
    if draw(st.booleans()):
        net.add(dict(name="ln", type="layernorm"), nn.LayerNorm(d))
        net.add(dict(name="fc", type="dense", out_features=d), nn.Linear(d, d))
    for i in range(draw(st.integers(1, 2))):
        kernel, causal, bias = draw(st.sampled_from(["flash", "math"])), draw(st.booleans()), draw(st.booleans())
        kv, dropout = draw(st.sampled_from([1, heads])), draw(st.sampled_from([0.0, 0.5]))
        table = dict(name=f"attn{i}", type="attention", num_heads=heads, kv_heads=kv, causal=causal, bias=bias,
                     kernel=kernel, dropout=dropout)
        net.add(table, Attention(d, heads, kv, causal, dropout, bias, kernel == "math"))
    classes = draw(st.integers(2, 5))
    net.add(dict(name="head", type="dense", out_features=classes), nn.Linear(d, classes))
    return net


@settings(max_examples=20, **SETTINGS)
@given(net=attention_stacks(), batch=st.integers(2, 3), dtype=st.sampled_from(["float32", "bfloat16"]),
       lora_dropout=st.sampled_from([0.0, 0.25]), lora=st.booleans(), optimizer=st.sampled_from(["sgd", "adam"]))
def test_attention_whose_input_needs_no_gradient_matches_peft(net, batch, dtype, lora_dropout, lora, optimizer):
    """A frozen attention whose input needs no gradient (first, or after frozen layers): with peft's LoRA on out_proj
    only (every attention's), lora_A keeps out_proj's input (the kernel's output, or the heads merged); without
    LoRA (all but the head frozen) nothing is kept. Kernels flash (fused; with dropout SDPA's math fallback) and
    math, dropout, causal, grouped keys and values drawn: each phase's peak."""
    peft = pytest.importorskip("peft")
    if dtype == "bfloat16" and any(t.get("kernel") == "flash" and t.get("dropout") for t in net.tables):
        dtype = "float32"  # in bfloat16 SDPA's math fallback on the CPU computes in float32: not modelled
    spec = archcalc.loads(net.spec())
    torch.manual_seed(0)
    model = nn.Sequential(*net.modules).to(DTYPES[dtype])
    if lora:
        model = peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=lora_dropout,
                                                           target_modules=["out_proj"]))
        options = dict(lora_rank=2, lora_alpha=4, lora_dropout=lora_dropout, lora_targets=["out_proj"], base_dtype=dtype)
    else:
        frozen = [t["name"] for t in net.tables[:-1]]
        for module in model[:-1]:
            module.requires_grad_(False)
        options = dict(dtype=dtype, freeze=frozen)
    report = archcalc.analyze(spec, batch=batch, optimizer=optimizer, **options)
    assert report.totals["trainable_params"] == trainable(model)
    x = torch.randn(batch, *net.input, dtype=DTYPES[dtype])
    assert phases(report, batch) == step_peaks(model, x, optimizer, loss="tokens"), (net.spec(), options)
