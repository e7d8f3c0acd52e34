"""What the attention bench runs: SAGAN's attention shapes, dtypes, passes, and the inputs
and the timed call for one kernel at one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Shape:
    """One attention call site: ``site`` says where SAGAN (64x64 digits) uses it."""

    site: str
    N: int     # tokens = H * W of the feature map
    Dqk: int   # C / 8
    Dv: int    # C


# SAGAN's self-attention blocks on 64x64 digits: G after its 16x16 and 32x32 layers, D at 8x8
# and 4x4 (N = H*W, Dqk = C/8, Dv = C for the channel counts of the textbook's G and D).
TEXTBOOK_SHAPES = (
    Shape("G 16x16", 256, 16, 128),
    Shape("G 32x32", 1024, 8, 64),
    Shape("D 8x8", 64, 32, 256),
    Shape("D 4x4", 16, 64, 512),
)
# The same G scaled to 128x128 images: its last attention block sees a 64x64 map.
SCALED_SHAPES = (Shape("G 64x64 (128px)", 4096, 8, 64),)
SHAPE_SETS = {"textbook": TEXTBOOK_SHAPES, "scaled": SCALED_SHAPES,
              "all": TEXTBOOK_SHAPES + SCALED_SHAPES}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PASSES = ("fwd", "fwd+bwd")


def make_inputs(B: int, shape: Shape, dtype: torch.dtype, device: str, seed: int = 0):
    """q, k, v and the output gradient dO for ``B`` calls at ``shape``, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    s = shape.Dqk ** -0.25  # unit-variance scores: timing is data-independent, NaNs are not
    q = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    k = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    v = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    do = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    return q, k, v, do


def make_call(attend, q, k, v, do, pass_: str) -> Callable[[], object]:
    """A zero-argument closure running one forward (no autograd) or forward + backward.

    The backward is ``torch.autograd.grad``, which returns dq, dk, dv instead of accumulating
    into ``.grad``: every call does the same work, and the closure can be captured in a CUDA
    graph as it is timed per call. ``allow_unused``: a kernel ignoring an input is timed
    anyway; the accuracy check is what catches it.
    """
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                return attend(q, k, v)
        return forward
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]

    def forward_backward():
        return torch.autograd.grad(attend(*leaves), leaves, do, allow_unused=True)
    return forward_backward
