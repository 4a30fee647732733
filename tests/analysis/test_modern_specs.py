"""The shipped transformer, GAN and torchvision-AlexNet specs against reference modules written here.

The references write attention as explicit matmuls (q @ kᵀ, softmax, @ v): in torch 2.13 on the CPU,
FlopCounterMode counts scaled_dot_product_attention as 0 and misses nn.MultiheadAttention's fused
inference path, so a reference built on either would hide QKᵀ and AV. The published FLOP figures at
full size come from torch's counts at a few small sizes: a transformer's FLOPs are a quadratic in
its number of tokens, so three measured points fix the quadratic, which is then evaluated at
T = 1024 (GPT-2) or 197 tokens (ViT-B/16 at 224×224).
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import archcalc  # noqa: E402
import archcalc.torch  # noqa: E402
from archcalc.backends.verify import verify  # noqa: E402
from archcalc.core import num  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.memory.test_memory_oracle import SMALL  # noqa: E402
from tests.oracle import torch_probe  # noqa: E402, F401  (torch on one thread)


class Attention(nn.Module):
    """Multi-head self-attention as matmuls: GPT-2's c_attn/c_proj, or MHA's in_proj/out_proj."""

    def __init__(self, d, heads, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).split(d, dim=-1))
        s = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        if self.causal:
            s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        return self.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads, hidden, causal, gelu):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), Attention(d, heads, causal), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate=gelu), nn.Linear(hidden, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab=50257, n_ctx=1024, d=768, heads=12, n_layer=12):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.h = nn.Sequential(*(Block(d, heads, 4 * d, True, "tanh") for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        return self.lm_head(self.ln_f(self.h(x)))


class ViT(nn.Module):
    """torchvision's vit_b_16, its attention written as matmuls."""

    def __init__(self, size=224, patch=16, d=768, heads=12, mlp=3072, n_layer=12, classes=1000):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.zeros(1, (size // patch) ** 2 + 1, d))
        self.layers = nn.Sequential(*(Block(d, heads, mlp, False, "none") for _ in range(n_layer)))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())  # a tied Parameter once


def forward_flops(module, x) -> int:
    with torch.no_grad(), torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        module.eval()(x)
    return counter.get_total_flops()


def quadratic_at(points: list[tuple[int, int]], n: int) -> Fraction:
    """The quadratic through three (n, value) points, at n (Lagrange)."""
    total = Fraction(0)
    for i, (xi, yi) in enumerate(points):
        term = Fraction(yi)
        for j, (xj, _) in enumerate(points):
            if j != i:
                term *= Fraction(n - xj, xi - xj)
        total += term
    return total


def load(name: str, **values):
    return archcalc.analyze(archcalc.load(SPECS / name), **values)


def test_gpt2_matches_a_reference_and_the_published_figures():
    torch.manual_seed(0)
    reference = GPT2()
    report = load("gpt2.toml")
    assert report.totals["params"] == params(reference) == 124_439_808
    measured = [(t, forward_flops(reference, torch.zeros(1, t, dtype=torch.long))) for t in (1, 2, 3)]
    for t, flops in measured:
        assert num.subs(report.totals["flops"], {"T": t}) == flops
    assert quadratic_at(measured, 1024) == num.subs(report.totals["flops"], {"T": 1024}) == 291_648_307_200
    assert str(report.totals["flops"]) == "36864*T**2 + 247064064*T"


def test_vit_b_16_matches_a_reference_and_the_published_figures():
    torch.manual_seed(0)
    report = load("vit_b_16.toml")
    assert report.totals["params"] == params(ViT()) == 86_567_656
    measured = []
    for size in (16, 32, 48):  # 1, 4 and 9 patches: FLOPs are a quadratic in the tokens
        flops = forward_flops(ViT(size), torch.zeros(1, 3, size, size))
        assert load("vit_b_16.toml", H=size, W=size).totals["flops"] == flops
        measured.append(((size // 16) ** 2 + 1, flops))
    assert quadratic_at(measured, 197) == report.totals["flops"] == 35_127_656_448


def test_the_transformers_verify_small():
    """verify, every layer, at small dimensions (the specs' [vars]); fused attention's uncounted FLOPs are noted."""
    for name in ("gpt2", "vit_b_16"):
        checks = verify(load(f"{name}.toml", **SMALL[name]))
        assert [c for c in checks if not c.ok] == []
        noted = {c.layer for c in checks if c.note and c.expected != c.measured}
        assert noted and all(layer.endswith("attn") or layer.endswith("self_attention") for layer in noted)


def test_gpt2_builds_with_one_shared_weight():
    net = archcalc.torch.build(load("gpt2.toml", **SMALL["gpt2"]))
    assert net.lm_head.weight is net.wte.weight
    logits = net(torch.randint(0, 97, (2, 8)))
    assert tuple(logits.shape) == (2, 8, 97)


def dcgan_generator(nz=100, ngf=64, nc=3):
    """PyTorch's examples/dcgan Generator."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def test_dcgan_generator_matches_pytorchs_example():
    report = load("dcgan_generator.toml")
    reference = dcgan_generator()
    assert report.totals["params"] == params(reference) == 3_576_704
    assert report.totals["flops"] == forward_flops(reference, torch.zeros(1, 100, 1, 1))
    assert report.output == (3, 64, 64)
    built = archcalc.torch.build(report)
    assert list(built.state_dict()) == [f"main.{k}" for k in reference.state_dict()]  # examples/dcgan's names


def alexnet(classes=1000):
    """torchvision.models.alexnet, as its source writes it."""
    reference = nn.Module()
    reference.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )
    reference.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    reference.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, classes),
    )
    reference.forward = lambda x: reference.classifier(torch.flatten(reference.avgpool(reference.features(x)), 1))
    return reference


@pytest.mark.parametrize("size", [224, 256])
def test_alexnet_torchvision_keeps_its_parameters_at_any_size(size):
    reference = alexnet()
    report = load("alexnet_torchvision.toml", H=size, W=size)
    assert report.totals["params"] == params(reference) == 61_100_840
    assert report.totals["flops"] == forward_flops(reference, torch.zeros(1, 3, size, size))
    built = archcalc.torch.build(report)
    assert list(built.state_dict()) == list(reference.state_dict())  # torchvision's keys: its weights load
    built.load_state_dict(reference.state_dict(), strict=True)


def test_a_fixed_pool_at_256_would_give_74_7m():
    text = (SPECS / "alexnet_torchvision.toml").read_text()
    start = text.index('[[layers]]\nname = "avgpool"')
    fixed = text[:start] + text[text.index('[[layers]]\nname = "flatten"'):]  # no adaptive pool
    report = archcalc.analyze(archcalc.loads(fixed), H=256, W=256)
    reference = nn.Sequential(alexnet().features, nn.Flatten(), nn.Linear(256 * 7 * 7, 4096), nn.Linear(4096, 4096),
                              nn.Linear(4096, 1000))
    assert report.totals["params"] == params(reference) == 74_732_328


def test_lstm_language_model_matches_pytorchs_example():
    """examples/word_language_model's RNNModel (LSTM, --tied): the same parameters, the decoder's weight shared."""
    report = load("lstm_lm.toml")
    encoder, rnn, decoder = nn.Embedding(33278, 650), nn.LSTM(650, 650, 2), nn.Linear(650, 33278)
    decoder.weight = encoder.weight
    assert report.totals["params"] == params(nn.ModuleList([encoder, rnn, decoder])) == 28_434_378
    small = dict(T=5, ntoken=50, emsize=8, nhid=8)
    net = archcalc.torch.build(load("lstm_lm.toml", **small))
    assert net.decoder.weight is net.encoder.weight
    checks = verify(load("lstm_lm.toml", **small))
    assert [c for c in checks if not c.ok] == []
