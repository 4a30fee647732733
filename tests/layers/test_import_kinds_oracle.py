"""The kinds `archcalc import` added for real models (issue 18, part three) against the libraries' own modules:
Swin's window attention (torchvision's ShiftedWindowAttention and V2's), T5's relative position bias and the attention
that adds it (transformers' T5Attention), CLIP's QuickGELU, GPT-2's Conv1D (dense with its weight transposed), Qwen2's
attention without o_proj's bias. Shapes, parameters, FlopCounterMode's forward and training FLOPs, bytes
saved_tensors_hooks sees kept, buffers; torch's state_dict loads strictly into archcalc's build.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hypothesis import given, settings, strategies as st  # noqa: E402

import archcalc  # noqa: E402
import tests.oracle.vision  # noqa: E402, F401  (torchvision's ops beside CPU torch)
from archcalc import SpecError  # noqa: E402
from archcalc.backends.build import build  # noqa: E402
from tests.layers.test_layers_oracle import archcalc_numbers, spec, torch_numbers  # noqa: E402
from tests.layers.test_real_kinds_oracle import SETTINGS  # noqa: E402
from tests.oracle.torch_probe import flops, saved_bytes  # noqa: E402

KINDS = {"window_attention", "relative_bias", "quick_gelu"}  # the kinds this file draws (test_torch_oracle checks all are)
swin = pytest.importorskip("torchvision.models.swin_transformer")


@st.composite
def windows(draw):
    """A map [H, W, C] (padded to whole windows where it does not divide), a window, a shift smaller than it; two heads
    or more (with one, matmul folds k's and v's views without the copies it makes otherwise)."""
    heads = draw(st.sampled_from([2, 4]))
    c = heads * draw(st.integers(1, 4))
    wh, ww = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    shift = [draw(st.integers(0, wh - 1)), draw(st.integers(0, ww - 1))]
    return (h, w, c), [wh, ww], shift, heads, draw(st.booleans())


@settings(max_examples=40, **SETTINGS)
@given(case=windows(), batch=st.integers(2, 3))
def test_window_attention_is_torchvisions(case, batch):
    """Every number of torchvision's own module, for maps that need padding, shifts that the map cancels, V1 and V2;
    FLOPs at batch 1 (V2's cpb_mlp runs once for the batch: archcalc counts it with each sample). Kept bytes from
    batch 2 on: with one sample and one window, matmul folds k's and v's views without copying them."""
    shape, window, shift, heads, cosine = case
    table = dict(type="window_attention", num_heads=heads, window_size=window, shift_size=shift, cosine=cosine)
    cls = swin.ShiftedWindowAttentionV2 if cosine else swin.ShiftedWindowAttention
    torch.manual_seed(0)
    module = nn.Sequential(cls(shape[-1], window, shift, heads))
    report = archcalc.analyze(archcalc.loads(spec(shape, [table])), batch=batch)
    ours, theirs = archcalc_numbers(report), torch_numbers(module, shape, batch, "float32")
    one, first = archcalc_numbers(archcalc.analyze(archcalc.loads(spec(shape, [table])), batch=1)), torch_numbers(module, shape, 1, "float32")
    counts = ("flops", "training_flops")
    assert {k: v for k, v in ours.items() if k not in counts} == {k: v for k, v in theirs.items() if k not in counts}
    assert {k: one[k] for k in counts} == {k: first[k] for k in counts}
    built = build(archcalc.loads(spec(shape, [table | {"name": "attn"}])))
    built.load_state_dict({k.replace("0.", "attn.", 1): v for k, v in module.state_dict().items()}, strict=True)
    x = torch.randn(batch, *shape)
    assert torch.allclose(built.eval()(x), module.eval()(x), atol=1e-5)


@pytest.mark.parametrize("windows, size, heads, batch", [(1, 2, 2, 2), (4, 3, 4, 2), (6, 2, 2, 3)])
def test_window_attention_is_maxvits_in_windows_cut_already(windows, size, heads, batch):
    """module = "maxvit": torchvision's RelativePositionalMultiHeadAttention on [B, G, P, D] (to_qkv chunked, k scaled,
    einsum): the numbers of Swin's formulas with P = G·N tokens."""
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

    shape = (windows, size * size, 4 * heads)
    table = dict(type="window_attention", module="maxvit", num_heads=heads, window_size=size)
    torch.manual_seed(0)
    module = nn.Sequential(RelativePositionalMultiHeadAttention(shape[-1], 4, size * size))
    report = archcalc.analyze(archcalc.loads(spec(shape, [table])), batch=batch)
    assert archcalc_numbers(report) == torch_numbers(module, shape, batch, "float32")
    built = build(archcalc.loads(spec(shape, [table | {"name": "attn"}])))
    built.load_state_dict({k.replace("0.", "attn.", 1): v for k, v in module.state_dict().items()}, strict=True)


def test_window_attention_reads_tokens_with_channels_last():
    with pytest.raises(SpecError, match=r"reads an image's tokens \[H, W, C\]"):
        archcalc.analyze(archcalc.loads(spec((4, 8), [dict(type="window_attention", num_heads=2, window_size=2)])))
    with pytest.raises(SpecError, match="shift_size 2 is not less than the window 2"):
        archcalc.analyze(archcalc.loads(spec((4, 4, 8), [dict(type="window_attention", num_heads=2, window_size=2, shift_size=2)])))


@pytest.mark.parametrize("t, bidirectional", [(1, True), (7, True), (40, True), (9, False)])
def test_relative_bias_and_the_attention_that_adds_it_are_t5s(t, bidirectional):
    """transformers' T5Attention with its relative_attention_bias (has_relative_attention_bias): the buckets, the
    bias [1, heads, T, T], the scores it is added to; the parameters, FLOPs and kept bytes of both layers."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.T5Config(d_model=16, d_kv=4, num_heads=4, relative_attention_num_buckets=8,
                                   relative_attention_max_distance=20, dropout_rate=0.0, is_decoder=not bidirectional)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = T5Attention(config, has_relative_attention_bias=True)

        def forward(self, x):
            return self.attn(x)[0]

    torch.manual_seed(0)
    block = Block()
    text = spec((t, 16), [
        dict(name="bias", type="relative_bias", num_heads=4, num_buckets=8, max_distance=20, bidirectional=bidirectional),
        dict(name="attn", type="attention", num_heads=4, bias=False, kernel="math", position_bias=True,
             **{"from": ["input", "bias"]})])
    report = archcalc.analyze(archcalc.loads(text), batch=2)
    x = torch.randn(2, t, 16)
    assert [row.output for row in report.rows] == [(4, t, t), (t, 16)]
    assert report.totals["params"] == sum(p.numel() for p in block.parameters())
    assert report.totals["flops"] * 2 == flops(block, x)
    built = build(archcalc.loads(text))
    built.bias.load_state_dict({"weight": block.attn.relative_attention_bias.weight})
    with torch.no_grad():
        expected = block.attn.compute_bias(t, t)
    assert torch.equal(built.bias(x), expected)
    assert report.memory.saved.at(2) == saved_bytes(block, x)


def test_quick_gelu_is_clips():
    from transformers.activations import QuickGELUActivation

    for grad in (False, True):
        tables = [dict(type="dense", out_features=6), dict(type="quick_gelu")] if grad else [dict(type="quick_gelu")]
        modules = [lambda: nn.Linear(6, 6), QuickGELUActivation] if grad else [QuickGELUActivation]
        report = archcalc.analyze(archcalc.loads(spec((6,), tables)), batch=3)
        assert archcalc_numbers(report) == torch_numbers(nn.Sequential(*(m() for m in modules)), (6,), 3, "float32")


def test_gpt2s_conv1d_is_dense_with_its_weight_transposed():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = nn.Sequential(Conv1D(5, 3))  # nf = 5 out of nx = 3
    report = archcalc.analyze(archcalc.loads(spec((4, 3), [dict(name="c", type="dense", out_features=5, transposed=True)])), batch=2)
    assert archcalc_numbers(report) == torch_numbers(conv, (4, 3), 2, "float32")
    built = build(archcalc.loads(spec((4, 3), [dict(name="c", type="dense", out_features=5, transposed=True)])))
    built.load_state_dict({k.replace("0.", "c."): v for k, v in conv.state_dict().items()}, strict=True)
    x = torch.randn(2, 4, 3)
    assert torch.allclose(built(x), conv(x))


def test_qwen2s_attention_has_no_bias_on_o_proj():
    """q_proj, k_proj and v_proj with biases, o_proj without: out_bias = false (module "llama")."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, intermediate_size=8,
                                      num_hidden_layers=1, vocab_size=10)
    attention = transformers.models.qwen2.modeling_qwen2.Qwen2Attention(config, 0)
    text = spec((5, 16), [dict(name="self_attn", type="attention", num_heads=4, kv_heads=2, module="llama", causal=True,
                               out_bias=False)])
    report = archcalc.analyze(archcalc.loads(text))
    assert report.totals["params"] == sum(p.numel() for p in attention.parameters())
    build(archcalc.loads(text)).self_attn.load_state_dict(attention.state_dict(), strict=True)
    with pytest.raises(SpecError, match="out_bias is modelled for module"):
        archcalc.analyze(archcalc.loads(spec((5, 16), [dict(type="attention", num_heads=4, out_bias=False)])))
