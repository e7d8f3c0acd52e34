"""Self-Attention GAN (Zhang et al. 2019) as the textbook builds it.

The DCGAN layer plan (conv_stacks) plus:
- spectral normalisation on every hidden conv of G and D (not on the two output convs, and not
  on the attention block's 1x1 convs, as the textbook);
- a self-attention block after the last two hidden layers of G and of D. At 64x64 that is after
  G's 16x16 and 32x32 layers and D's 8x8 and 4x4 layers; at 32x32, after G's 8x8 and 16x16 and
  D's 8x8 and 4x4; at 128x128, after G's 32x32 and 64x64 (N = 4096) and D's 8x8 and 4x4.
The attention op itself is whatever attention-kernel plugin the run selected; when that
kernel's attend function also offers a fused ``block`` (e.g. triton-block), each attention
module calls it instead of its own 1x1 convs + attend + residual, with the same parameters.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ganbench.hookspecs import hookimpl
from ganbench.plugins.conv_stacks import (d_output, down_block, g_output, hidden_channels,
                                          init_weights, up_block)
from ganbench.specs import ArchitectureDefaults, ArchitectureSpec, AttendFn, ModelRequest

# Textbook SAGAN: hinge loss, Adam G 1e-4 / D 4e-4, betas (0.0, 0.9), z_dim 20.
SAGAN_DEFAULTS = ArchitectureDefaults(loss="hinge", g_lr=1e-4, d_lr=4e-4, betas=(0.0, 0.9),
                                      z_dim=20, attention="eager-attn")
ATTENTION_LAYERS = 2  # blocks after the last two hidden layers of each net
QK_REDUCTION = 8      # q and k project C -> C/8 channels (Zhang et al. 2019, Sec. 3)


class SelfAttention(nn.Module):
    """x (B, C, H, W) -> x + gamma * o, where o = softmax(q k^T) v over the H*W positions.

    q, k = 1x1 conv C -> C/8 and v = 1x1 conv C -> C, flattened to N = H*W tokens:
    q, k (B, N, C/8), v (B, N, C); o = attend(q, k, v) (B, N, C) reshaped back to (B, C, H, W).
    Softmax is over keys with no 1/sqrt(d) scale. gamma starts at 0, so a fresh block is the
    identity and the net first learns from local features (SAGAN, Sec. 3).

    Set ``record = True`` to keep the last (q, k) (detached) for drawing attention maps; the
    map itself is then computed by the reference op, whatever kernel ran.
    """

    def __init__(self, channels: int, attend: AttendFn):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // QK_REDUCTION, 1)
        self.key = nn.Conv2d(channels, channels // QK_REDUCTION, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        for conv in (self.query, self.key, self.value):
            init_weights(conv)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.attend = attend
        self.record = False
        self.last_qk: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A kernel may offer the whole block fused (docs/plugins.md, "Fused attention blocks"):
        # same parameters, same result. Not while recording attention maps (that needs q and k)
        # nor under torch.compile (the block is not a custom op; the plain op is).
        block = getattr(self.attend, "block", None)
        if block is not None and not self.record and not torch.compiler.is_compiling():
            return block(x, self.query.weight, self.query.bias, self.key.weight, self.key.bias,
                         self.value.weight, self.value.bias, self.gamma)
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.key(x).flatten(2).transpose(1, 2)    # (B, N, C/8)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, N, C)
        o = self.attend(q, k, v)                       # (B, N, C)
        if self.record:
            self.last_qk = (q.detach(), k.detach())
        return x + self.gamma * o.transpose(1, 2).reshape(b, c, h, w)


class Generator(nn.Module):
    """z (B, z_dim, 1, 1) -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, image_size: int, z_dim: int, attend: AttendFn, channels: int = 1):
        super().__init__()
        widths = hidden_channels(image_size)[::-1]
        blocks: list[nn.Module] = [up_block(z_dim, widths[0], first=True, spectral=True)]
        for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1):
            blocks.append(up_block(a, b, first=False, spectral=True))
            if i >= len(widths) - ATTENTION_LAYERS:
                blocks.append(SelfAttention(b, attend))
        self.hidden = nn.Sequential(*blocks)
        self.last = g_output(widths[-1], channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(z))


class Discriminator(nn.Module):
    """images (B, C, S, S) -> logits (B,)."""

    def __init__(self, image_size: int, attend: AttendFn, channels: int = 1):
        super().__init__()
        widths = hidden_channels(image_size)
        ins = [channels] + widths[:-1]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(ins, widths)):
            blocks.append(down_block(a, b, spectral=True))
            if i >= len(widths) - ATTENTION_LAYERS:
                blocks.append(SelfAttention(b, attend))
        self.hidden = nn.Sequential(*blocks)
        self.last = d_output(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(x)).flatten()


def attention_shapes(image_size: int, batch_size: int) -> list[tuple[int, int, int, int]]:
    """The (B, N, Dqk, Dv) of every attention call one SAGAN step makes, G's then D's, without
    building anything: what an attend function's ``prepare`` needs at planning time. At 64x64:
    G (B, 256, 16, 128), (B, 1024, 8, 64); D (B, 64, 32, 256), (B, 16, 64, 512)."""
    widths = hidden_channels(image_size)
    n = len(widths)
    g = [(4 * 2 ** i, c) for i, c in enumerate(widths[::-1]) if i >= n - ATTENTION_LAYERS]
    d = [(image_size // 2 ** (i + 1), c) for i, c in enumerate(widths) if i >= n - ATTENTION_LAYERS]
    return [(batch_size, side * side, c // QK_REDUCTION, c) for side, c in g + d]


def build(request: ModelRequest) -> tuple[nn.Module, nn.Module]:
    if request.attend is None:
        raise ValueError("sagan needs an attention kernel (ModelRequest.attend)")
    return (Generator(request.image_size, request.z_dim, request.attend, request.channels),
            Discriminator(request.image_size, request.attend, request.channels))


@hookimpl
def ganbench_register_architectures(register):
    register(ArchitectureSpec(
        name="sagan",
        summary="Textbook SAGAN: DCGAN plan + spectral norm + self-attention in G and D, hinge loss",
        build=build,
        defaults=SAGAN_DEFAULTS,
        uses_attention=True,
        attention_shapes=attention_shapes,
        image_sizes=(32, 64, 128),
    ))
