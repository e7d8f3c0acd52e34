"""DCGAN as the textbook builds it (see conv_stacks for the layer plan): the baseline GAN."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.hookspecs import hookimpl
from ganbench.plugins.conv_stacks import d_output, down_block, g_output, hidden_channels, up_block
from ganbench.specs import ArchitectureDefaults, ArchitectureSpec, ModelRequest

# The textbook's settings for both of its GANs: Adam, G lr 1e-4, D lr 4e-4 (D learns faster, the
# two-time-scale rule of Heusel et al. 2017), betas (0.0, 0.9), z_dim 20, batch 64.
DCGAN_DEFAULTS = ArchitectureDefaults(loss="bce", g_lr=1e-4, d_lr=4e-4, betas=(0.0, 0.9),
                                      z_dim=20)


class Generator(nn.Module):
    """z (B, z_dim, 1, 1) -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, image_size: int, z_dim: int, channels: int = 1):
        super().__init__()
        widths = hidden_channels(image_size)[::-1]  # 64: [512, 256, 128, 64]
        layers = [up_block(z_dim, widths[0], first=True, spectral=False)]
        layers += [up_block(a, b, first=False, spectral=False) for a, b in zip(widths, widths[1:])]
        self.hidden = nn.Sequential(*layers)
        self.last = g_output(widths[-1], channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(z))


class Discriminator(nn.Module):
    """images (B, C, S, S) -> logits (B,)."""

    def __init__(self, image_size: int, channels: int = 1):
        super().__init__()
        widths = hidden_channels(image_size)  # 64: [64, 128, 256, 512]
        ins = [channels] + widths[:-1]
        self.hidden = nn.Sequential(*[down_block(a, b, spectral=False)
                                      for a, b in zip(ins, widths)])
        self.last = d_output(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(x)).flatten()


def build(request: ModelRequest) -> tuple[nn.Module, nn.Module]:
    return (Generator(request.image_size, request.z_dim, request.channels),
            Discriminator(request.image_size, request.channels))


@hookimpl
def ganbench_register_architectures(register):
    register(ArchitectureSpec(
        name="dcgan",
        summary="Textbook DCGAN: ConvTranspose/BatchNorm/ReLU generator, Conv/LeakyReLU(0.1) discriminator",
        build=build,
        defaults=DCGAN_DEFAULTS,
        uses_attention=False,
        image_sizes=(32, 64, 128),
    ))
