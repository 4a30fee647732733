"""The layers of sequence models against torch: embedding, parameter, attention, weight tying.

Each drawn layer is written twice: as a spec, and as a torch module built here from torch's own
pieces (nn.Embedding, nn.Linear, F.scaled_dot_product_attention with its kernel forced by
torch.nn.attention.sdpa_kernel), independently of archcalc's `to_torch`.

FLOPs of attention: in torch 2.13 on the CPU, FlopCounterMode counts the fused (flash) kernel of
scaled_dot_product_attention as 0, and misses nn.MultiheadAttention's fused inference path. The
FLOP oracle is therefore SDPA's math kernel, which torch writes as matmuls that FlopCounterMode
counts (2 per multiply-accumulate, as its SDPA formula counts the fused kernels on CUDA).
Bytes kept for backward are measured under each kernel: flash and math.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

import archcalc  # noqa: E402
from archcalc import SpecError  # noqa: E402
from archcalc.core import num  # noqa: E402
from tests.oracle.torch_nets import toml_value  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
KINDS = {"embedding", "parameter", "attention", "select", "gelu_new"}  # the kinds this file draws (test_torch_oracle checks all are drawn)


def spec(input_, *tables, dtype="float32") -> str:
    lines = ["[model]", f"input = {toml_value(list(input_))}", f'dtype = "{dtype}"']
    for table in tables:
        lines += ["[[layers]]", *(f"{key} = {toml_value(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"


class Attention(nn.Module):
    """Self-attention as Llama writes it: separate q, k, v projections, SDPA with the kernel forced."""

    def __init__(self, d, heads, kv_heads, causal, dropout, bias, kernel):
        super().__init__()
        self.h, self.kv, self.e = heads, kv_heads, d // heads
        self.causal, self.dropout, self.kernel = causal, dropout, kernel
        self.q = nn.Linear(d, d, bias=bias)
        self.k = nn.Linear(d, kv_heads * self.e, bias=bias)
        self.v = nn.Linear(d, kv_heads * self.e, bias=bias)
        self.o = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.h, self.e).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv, self.e).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv, self.e).transpose(1, 2)
        with sdpa_kernel(self.kernel):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=self.causal, enable_gqa=self.kv != self.h)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


@st.composite
def attentions(draw):
    heads = draw(st.integers(1, 4))
    kv = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    d = heads * draw(st.integers(1, 4))
    t = draw(st.integers(1, 7))
    kernel = draw(st.sampled_from(["flash", "math"]))
    dropout = draw(st.sampled_from([0.0, 0.25])) if kernel == "math" else 0.0  # no fused kernel with dropout on CPU
    table = dict(type="attention", num_heads=heads, causal=draw(st.booleans()), bias=draw(st.booleans()), kernel=kernel)
    if kv != heads or draw(st.booleans()):
        table["kv_heads"] = kv
    if dropout:
        table["dropout"] = dropout
    return (t, d), table, dropout


def reference(table, d, dropout, kernel):
    kernels = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}
    return Attention(d, table["num_heads"], table.get("kv_heads", table["num_heads"]), table["causal"], dropout,
                     table["bias"], kernels[kernel])


def counts(module) -> tuple[int, int]:
    """(weights, biases) of a module, by its parameters' names."""
    biases = sum(p.numel() for name, p in module.named_parameters() if name.endswith("bias"))
    return sum(p.numel() for p in module.parameters()) - biases, biases


@settings(max_examples=60, **SETTINGS)
@given(case=attentions(), batch=st.integers(2, 3), dtype=st.sampled_from(["float32", "bfloat16"]))
def test_attention_matches_torch(case, batch, dtype):
    (t, d), table, dropout = case
    if table["kernel"] == "math":
        dtype = "float32"  # torch's math kernel computes a bfloat16 input in float32 on the CPU; archcalc's is in the model dtype
    report = archcalc.analyze(archcalc.loads(spec([t, d], table, dtype=dtype)), batch=batch)
    row = report.rows[0]
    x = torch.randn(batch, t, d, dtype=DTYPES[dtype])
    torch.manual_seed(0)
    module = reference(table, d, dropout, table["kernel"]).to(DTYPES[dtype])
    with torch.no_grad():
        assert tuple(module(x).shape[1:]) == row.output
    assert (row.weights, row.biases) == counts(module)
    # FLOPs: under the math kernel, where FlopCounterMode sees every matmul
    math_module = reference(table, d, dropout, "math").to(DTYPES[dtype])
    assert row.flops * batch == flops(math_module, x)
    assert row.training_flops * batch == flops(math_module, x, backward=True)  # the input needs no gradient...
    # ...and when it does: a layer with parameters before it (batchnorm over the T axis, whose FLOPs torch does not count)
    grad_report = archcalc.analyze(archcalc.loads(spec([t, d], {"type": "batchnorm"}, table, dtype=dtype)), batch=batch)
    with_input_grad = nn.Sequential(nn.BatchNorm1d(t), math_module).to(DTYPES[dtype])
    assert grad_report.totals["training_flops"] * batch == flops(with_input_grad, x, backward=True)
    # bytes kept for backward, under the layer's own kernel
    assert report.memory.saved.at(batch) == saved_bytes(module, x)


def test_flop_counter_misses_fused_attention_on_cpu():
    """Why the FLOP oracle is the math kernel: the fused one counts 0, and so do MHA's projections-only counts."""
    x = torch.randn(2, 5, 8)
    fused = reference(dict(num_heads=2, causal=False, bias=True), 8, 0.0, "flash")
    math_ = reference(dict(num_heads=2, causal=False, bias=True), 8, 0.0, "math")
    math_.load_state_dict(fused.state_dict())
    row = archcalc.analyze(archcalc.loads(spec([5, 8], dict(type="attention", num_heads=2)))).rows[0]
    assert flops(math_, x) == 2 * row.flops
    assert flops(fused, x) == 2 * 2 * (row.macs - 2 * 5 * 5 * 8)  # only the four projections
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad(), torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        mha(x, x, x, need_weights=False)
    assert counter.get_total_flops() == 0  # the fused inference path


def test_attention_params_match_gpt2_and_multihead_attention():
    for d, heads in ((768, 12), (16, 4)):
        row = archcalc.analyze(archcalc.loads(spec([3, d], dict(type="attention", num_heads=heads)))).rows[0]
        assert (row.weights, row.biases) == counts(nn.MultiheadAttention(d, heads))
        # GPT-2's c_attn (d -> 3d) and c_proj (d -> d), as transformers' Conv1D: weight [in, out], bias [out]
        assert row.params == (d * 3 * d + 3 * d) + (d * d + d)
    row = archcalc.analyze(archcalc.loads(spec([3, 16], dict(type="attention", num_heads=4, bias=False)))).rows[0]
    assert (row.weights, row.biases) == counts(nn.MultiheadAttention(16, 4, bias=False))


def test_attention_refuses_heads_that_do_not_divide():
    with pytest.raises(SpecError, match="num_heads = 5 does not divide d = 16"):
        archcalc.analyze(archcalc.loads(spec([3, 16], dict(type="attention", num_heads=5))))
    with pytest.raises(AssertionError):  # torch refuses it too
        nn.MultiheadAttention(16, 5)
    with pytest.raises(SpecError, match="kv_heads = 4 does not divide num_heads = 6"):
        archcalc.analyze(archcalc.loads(spec([3, 12], dict(type="attention", num_heads=6, kv_heads=4))))
    q, kv = torch.zeros(1, 6, 3, 2), torch.zeros(1, 4, 3, 2)
    with pytest.raises(RuntimeError):  # and SDPA refuses query heads that k/v heads do not divide
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)


def test_attention_needs_tokens():
    with pytest.raises(SpecError, match=r"attention needs tokens \[T, d\]"):
        archcalc.analyze(archcalc.loads(spec([3, 8, 8], dict(type="attention", num_heads=1))))


@settings(max_examples=25, **SETTINGS)
@given(t=st.integers(1, 9), vocab=st.integers(2, 50), dim=st.integers(1, 12), batch=st.integers(1, 3),
       padding=st.none() | st.integers(0, 1), dtype=st.sampled_from(["float32", "bfloat16"]))
def test_embedding_matches_torch(t, vocab, dim, batch, padding, dtype):
    table = dict(type="embedding", num_embeddings=vocab, embedding_dim=dim)
    if padding is not None:
        table["padding_idx"] = padding
    report = archcalc.analyze(archcalc.loads(spec([t], table, {"type": "activation", "function": "tanh"}, dtype=dtype)), batch=batch)
    module = nn.Sequential(nn.Embedding(vocab, dim, padding_idx=padding), nn.Tanh()).to(DTYPES[dtype])
    ids = torch.randint(0, vocab, (batch, t))
    assert tuple(module(ids).shape[1:]) == report.rows[0].output == (t, dim)
    assert report.totals["params"] == sum(p.numel() for p in module.parameters())
    assert report.totals["training_flops"] == 0 == flops(module, ids, backward=True)
    assert report.memory.saved.at(batch) == saved_bytes(module, ids)  # the int64 ids, and tanh's output
    assert report.memory.input.at(batch) == ids.numel() * 8


def test_embedding_reads_only_token_ids():
    with pytest.raises(SpecError, match="reads token ids"):
        archcalc.analyze(archcalc.loads(spec([4], dict(type="activation", function="tanh"),
                                             dict(type="embedding", num_embeddings=5, embedding_dim=2))))


@settings(max_examples=20, **SETTINGS)
@given(rows=st.integers(1, 6), dim=st.integers(1, 5), length=st.none() | st.integers(1, 6), batch=st.integers(1, 3))
def test_parameter_matches_torch(rows, dim, length, batch):
    table = dict(type="parameter", shape=[rows, dim])
    if length is not None:
        table["length"] = length
    text = spec([2, dim], table)
    if length is not None and length > rows:
        with pytest.raises(SpecError, match="length"):
            archcalc.analyze(archcalc.loads(text))
        return
    row = archcalc.analyze(archcalc.loads(text)).rows[0]
    learned = nn.Parameter(torch.zeros(1, rows, dim))
    out = learned[:, :length].expand(batch, -1, -1)  # a ViT's pos_embedding, GPT-2's first T positions
    assert row.output == tuple(out.shape[1:])
    assert row.params == learned.numel() and row.macs == 0


class Positions(nn.Module):
    """x + table(indices) as transformers write it: GPT-2's wpe(arange(T)), BERT's token types (zeros gathered)."""

    def __init__(self, rows, dim, zeros):
        super().__init__()
        self.table, self.zeros = nn.Embedding(rows, dim), zeros

    def forward(self, x):
        t = x.shape[1]
        indices = torch.zeros(1, t, dtype=torch.long) if self.zeros else torch.arange(t).unsqueeze(0)  # made per call
        return torch.tanh(x + self.table(indices))


@settings(max_examples=15, **SETTINGS)
@given(t=st.integers(1, 6), dim=st.integers(1, 5), zeros=st.booleans(), frozen=st.booleans(), batch=st.integers(1, 3))
def test_parameter_looked_up_by_indices_keeps_them_as_torchs_embedding_does(t, dim, zeros, frozen, batch):
    """`indices`: the int64 indices made per call, kept once for the batch by the lookup's backward (not when frozen)."""
    rows = t + 2
    table = dict(name="table", type="parameter", shape=[rows, dim], indices=t) | ({"length": 1} if zeros else {"length": t})
    text = spec([t, dim], table, dict(type="add", **{"from": ["input", "table"]}), dict(type="activation", function="tanh"))
    report = archcalc.analyze(archcalc.loads(text), batch=batch, freeze="table" if frozen else None)
    module = Positions(rows, dim, zeros)
    module.table.weight.requires_grad_(not frozen)
    x = torch.randn(batch, t, dim)  # the input needs no gradient, as a spec's
    assert tuple(module(x).shape[1:]) == report.output_rows[-1].output
    assert report.totals["params"] == sum(p.numel() for p in module.parameters())
    assert report.memory.saved.at(batch) == saved_bytes(module, x)


def test_tied_weight_counts_once_and_torch_shares_it():
    text = spec(
        [1],
        dict(name="wte", type="embedding", num_embeddings=11, embedding_dim=4),
        dict(type="flatten"),
        dict(name="head", type="dense", out_features=11, bias=False, tie="wte"),
    )
    report = archcalc.analyze(archcalc.loads(text), batch=2)
    from archcalc.backends.build import build

    net = build(report)
    assert net.head.weight is net.wte.weight
    assert report.totals["params"] == sum(p.numel() for p in net.parameters()) == 44
    assert report.memory.gradients.at(2) == report.memory.params.at(2) == 44 * 4
    untied = archcalc.analyze(archcalc.loads(text.replace('tie = "wte"', "")))
    assert untied.totals["params"] == 88


@pytest.mark.parametrize("tie, message", [
    ('"nope"', "no earlier layer is named 'nope'"),
    ('"head"', "no earlier layer is named 'head'"),
    ('"flat"', "cannot share flat's weight: it has none"),
])
def test_tie_must_name_an_earlier_weight_of_the_same_shape(tie, message):
    text = spec([1], dict(name="wte", type="embedding", num_embeddings=11, embedding_dim=4), dict(name="flat", type="flatten"),
                dict(name="head", type="dense", out_features=11, tie="X"))
    with pytest.raises(SpecError, match=message):
        archcalc.analyze(archcalc.loads(text.replace('"X"', tie)))
    with pytest.raises(SpecError, match=r"it is 11×4, this layer's would be 12×4"):
        archcalc.analyze(archcalc.loads(text.replace("out_features = 11", "out_features = 12").replace('"X"', '"wte"')))


def test_gpt2_block_formula_in_t():
    """One GPT-2 attention layer's figures stay formulas in T; at T = 1024 they are the published ones."""
    report = archcalc.analyze(archcalc.loads(spec(["T", 768], dict(type="attention", num_heads=12, causal=True))))
    macs = report.rows[0].macs
    assert str(macs) == "1536*T**2 + 2359296*T"
    assert num.subs(macs, {"T": 1024}) == 4 * 1024 * 768**2 + 2 * 1024**2 * 768 == 4026531840
    assert math.prod(report.rows[0].output[1:]) == 768


@settings(max_examples=25, **SETTINGS)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_select_matches_torch(shape, data):
    dim = data.draw(st.sampled_from([d for n in range(len(shape)) for d in (n, n - len(shape))]))  # a sample's axes
    index = data.draw(st.integers(0, 5))
    text = spec(shape, dict(type="select", dim=dim, index=index))
    x = torch.zeros(2, *shape)
    torch_dim = dim + 1 if dim >= 0 else dim  # torch counts the batch axis
    try:
        expected = tuple(x.select(torch_dim, index).shape[1:])
    except IndexError:
        with pytest.raises(SpecError, match="past the end"):
            archcalc.analyze(archcalc.loads(text))
        return
    report = archcalc.analyze(archcalc.loads(text), batch=2)
    assert report.rows[0].output == expected
    assert report.rows[0].params == 0 and report.memory.saved.at(2) == 0
    with pytest.raises(SpecError, match="not an axis"):
        archcalc.analyze(archcalc.loads(spec(shape, dict(type="select", dim=len(shape)))))


def test_attention_mistakes_are_the_numbers_students_and_tools_give():
    row = archcalc.analyze(archcalc.loads(spec([5, 8], dict(type="attention", num_heads=2, causal=True)))).rows[0]
    hints = dict(row.layer.mistaken(row.input, "params"))
    assert "every head" in hints[2 * sum(counts(nn.MultiheadAttention(8, 2)))]  # two heads, each with the whole MHA
    x = torch.zeros(1, 5, 8)
    fused = reference(dict(num_heads=2, causal=True, bias=True), 8, 0.0, "flash")  # what FlopCounterMode sees on the CPU
    flops_hints = dict(row.layer.mistaken(row.input, "flops"))
    assert flops(fused, x) in flops_hints and "only the projections" in flops_hints[flops(fused, x)]
    assert any("causal halved" in text for text in flops_hints.values())


@settings(max_examples=20, **SETTINGS)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=2), width=st.integers(1, 6), batch=st.integers(1, 3),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_gelu_new_matches_hugging_face_formula(shape, width, batch, dtype):
    """gelu_new after a dense layer against transformers' NewGELUActivation formula, written here as it is there."""

    class NewGELUActivation(nn.Module):
        def forward(self, input):
            return 0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (input + 0.044715 * torch.pow(input, 3.0))))

    report = archcalc.analyze(archcalc.loads(spec(shape, {"type": "dense", "out_features": width}, {"type": "gelu_new"},
                                                  dtype=dtype)), batch=batch)
    model = nn.Sequential(nn.Linear(shape[-1], width), NewGELUActivation()).to(DTYPES[dtype])
    x = torch.randn(batch, *shape, dtype=DTYPES[dtype])
    assert tuple(model(x).shape[1:]) == report.rows[-1].output
    assert report.totals["flops"] * batch == flops(model, x)  # element-wise: no FLOPs by the convention
    assert report.totals["training_flops"] * batch == flops(model, x, backward=True)
    assert report.memory.saved.per_sample * batch == saved_bytes(model, x)  # x, 0.5·x, tanh(·), 1 + tanh(·)
