"""FNet's encoder block (Lee-Thorp et al., 2021): token mixing by a 2-D Fourier transform, no attention. archcalc has
no layer for the transform: `archcalc import` lists it (docs/import.md)."""

import torch
from torch import nn


class FNetBlock(nn.Module):
    def __init__(self, d: int = 64, hidden: int = 256):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x):
        x = self.norm1(x + torch.fft.fft2(x).real)
        return self.norm2(x + self.mlp(x))
