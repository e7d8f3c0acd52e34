"""Pieces the textbook's DCGAN and SAGAN share: the channel plan and the weight init.

The textbook's 64x64 nets (z_dim 20, base width 64):
    G: z -> ConvT(z, 512, 4, 1, 0) 4x4 -> 256 8x8 -> 128 16x16 -> 64 32x32 -> ConvT(64, 1) 64x64, Tanh
    D: x -> Conv(1, 64, 4, 2, 1) 32x32 -> 128 16x16 -> 256 8x8 -> 512 4x4 -> Conv(512, 1, 4, 1, 0) 1x1
Every size is built by the same rule: one hidden layer per halving from S down to 4, channels
doubling from 64 as the maps shrink. At 32x32 that is G 256@4 -> 128@8 -> 64@16 -> 1@32 and
D 64@16 -> 128@8 -> 256@4 -> 1.
"""

from __future__ import annotations

import math

from torch import nn

BASE_WIDTH = 64  # the textbook's "image_size" argument doubles as the base channel width


def hidden_channels(image_size: int, base: int = BASE_WIDTH) -> list[int]:
    """D's hidden channels, input side first: 64 -> [64, 128, 256, 512]; 32 -> [64, 128, 256].

    G uses the same list reversed (channels shrink toward the image).
    """
    n_layers = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n_layers + 2) != image_size:
        raise ValueError(f"image size must be a power of two >= 8, got {image_size}")
    return [base * 2 ** i for i in range(n_layers)]


def init_weights(module: nn.Module) -> None:
    """DCGAN init (Radford et al. 2015, as the textbook): conv weights ~ N(0, 0.02), bias 0;
    BatchNorm scale ~ N(1, 0.02), shift 0. Apply before spectral norm wraps a conv."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def up_block(c_in: int, c_out: int, first: bool, spectral: bool) -> nn.Sequential:
    """G's hidden layer: ConvT (4x4; stride 1 from z, else stride 2) -> BatchNorm -> ReLU."""
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 1 if first else 2, 0 if first else 1)
    init_weights(conv)
    bn = nn.BatchNorm2d(c_out)
    init_weights(bn)
    return nn.Sequential(_maybe_sn(conv, spectral), bn, nn.ReLU(inplace=True))


def down_block(c_in: int, c_out: int, spectral: bool) -> nn.Sequential:
    """D's hidden layer: Conv (4x4, stride 2) -> LeakyReLU(0.1), no BatchNorm (as the textbook)."""
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1)
    init_weights(conv)
    return nn.Sequential(_maybe_sn(conv, spectral), nn.LeakyReLU(0.1, inplace=True))


def g_output(c_in: int, channels: int) -> nn.Sequential:
    """G's output layer: ConvT to the image channels, Tanh; never spectral-normalised."""
    conv = nn.ConvTranspose2d(c_in, channels, 4, 2, 1)
    init_weights(conv)
    return nn.Sequential(conv, nn.Tanh())


def d_output(c_in: int) -> nn.Conv2d:
    """D's output layer: a 4x4 conv over the 4x4 map to one logit; never spectral-normalised."""
    conv = nn.Conv2d(c_in, 1, 4, 1, 0)
    init_weights(conv)
    return conv


def _maybe_sn(conv: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(conv) if spectral else conv
