"""Built-in attention kernels: eager, SDPA, torch.compile, the fused Triton kernels and block.

All five compute SAGAN's op, ``softmax(q @ k^T) @ v`` with no 1/sqrt(d) scale, and are tested
against ``kernels/attention/reference.py``. This module is imported whenever a command builds
the plugin registry, so it imports neither torch nor triton at module level: the factories do.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Optional

from ganbench.hookspecs import hookimpl
from ganbench.specs import AttentionSpec


# ------------------------------------------------------------------------------------------
# eager-attn: what SAGAN runs by default
# ------------------------------------------------------------------------------------------
def attend_eager(q, k, v):
    """softmax(q @ k^T) @ v, written as a user would: two bmm and a softmax, in q's dtype."""
    import torch

    scores = torch.bmm(q, k.transpose(1, 2))       # (B, N, N)
    return torch.bmm(torch.softmax(scores, dim=-1), v)  # (B, N, Dv)


def _eager_factory():
    return attend_eager


# ------------------------------------------------------------------------------------------
# sdpa-attn: torch.nn.functional.scaled_dot_product_attention with scale=1.0
# ------------------------------------------------------------------------------------------
def attend_sdpa(q, k, v):
    """SDPA with ``scale=1.0`` (its default would be 1/sqrt(Dqk), which SAGAN does not use).

    The inputs get a head dimension, (B, N, D) -> (B, 1, N, D): the fused backends (flash,
    memory-efficient, cuDNN) accept only 4-D inputs and would otherwise fall back to math.
    """
    import torch.nn.functional as F

    o = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0)
    return o.squeeze(1)


def sdpa_backend_used(q, k, v) -> str:
    """The SDPA backend PyTorch's dispatcher picks for these inputs, e.g. "EFFICIENT_ATTENTION".

    Asks the dispatcher itself (``torch._fused_sdp_choice``, the function SDPA calls to choose)
    with the same 4-D views :func:`attend_sdpa` passes. The choice depends on device, dtype,
    head dims (flash needs Dqk == Dv), alignment and whether gradients are needed, so pass the
    tensors as they will be used. "unknown" when this torch build has no such function.
    """
    import torch
    from torch.nn.attention import SDPBackend

    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    index = choose(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), None, 0.0, False, scale=1.0)
    try:
        return SDPBackend(index).name
    except ValueError:
        return "unknown"


# The benchmark reports attend.backend_used(q, k, v) where a kernel provides it.
attend_sdpa.backend_used = sdpa_backend_used


def _sdpa_factory():
    return attend_sdpa


# ------------------------------------------------------------------------------------------
# compile-attn: torch.compile of the eager op
# ------------------------------------------------------------------------------------------
def _compile_factory(mode: str = "default"):
    """torch.compile(attend_eager, mode=mode); compiles on first call per shape (~25 s on CPU)."""
    import torch

    return torch.compile(attend_eager, mode=mode)


def _compile_why_unavailable(device: str) -> Optional[str]:
    # Inductor emits Triton for CUDA and C++ (built with the system compiler) for the CPU.
    if str(device).startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton, which is not installed"
        return None
    if not (os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
        return "torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH"
    return None


# ------------------------------------------------------------------------------------------
# triton-attn / triton-block: the fused kernels in kernels/attention/
# ------------------------------------------------------------------------------------------
def _triton_factory(variant: str = "auto", backward: str = "auto", exp2: bool = True,
                    prebind: bool = True, **tiles):
    """A TritonAttend: attend(q, k, v) with the options bound, plus ``prepare``.

    ``variant``: auto (small-n for N <= 256, else tiled) | small-n | tiled; ``backward`` (tiled
    variant): auto (= one-launch) | one-launch | two-kernel | atomic; ``exp2``: exponent as one
    FMA + exp2; ``prebind``: bind compiled kernels once per configuration (CUDA); tile
    overrides (``block_n=128``, ``fwd_warps=4``, ...: TILE_CHOICES in kernels/attention/plan.py). Bad
    values raise ValueError here, when the kernel is built, not mid-run.
    """
    from ganbench.kernels.attention.triton_attn import TritonAttend, check_options

    return TritonAttend(check_options(variant, backward, exp2, prebind, tiles))


def _triton_block_factory(variant: str = "auto", backward: str = "auto", exp2: bool = True,
                          prebind: bool = True, **tiles):
    """triton-attn's attend plus ``block``, SAGAN's whole attention block fused (block.py);
    the same options."""
    from ganbench.kernels.attention.block import TritonBlockAttend
    from ganbench.kernels.attention.triton_attn import check_options

    return TritonBlockAttend(check_options(variant, backward, exp2, prebind, tiles))


def _triton_why_unavailable(device: str) -> Optional[str]:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    from ganbench.kernels.attention.triton_attn import why_triton_unavailable

    return why_triton_unavailable(device)


@hookimpl
def ganbench_register_attention(register):
    register(AttentionSpec(
        name="eager-attn",
        summary="softmax(q k^T) v with torch.bmm and torch.softmax (materialises N x N)",
        factory=_eager_factory))
    register(AttentionSpec(
        name="sdpa-attn",
        summary="torch scaled_dot_product_attention with scale=1 (flash/efficient/math backend)",
        factory=_sdpa_factory))
    register(AttentionSpec(
        name="compile-attn",
        summary="torch.compile of the eager op; factory(mode='default'|'max-autotune'|...)",
        factory=_compile_factory,
        why_unavailable=_compile_why_unavailable))
    register(AttentionSpec(
        name="triton-attn",
        summary="fused Triton kernels, no N x N memory; factory(variant='auto'|'small-n'|'tiled', "
                "backward='auto'|'one-launch'|'two-kernel'|'atomic', exp2=, prebind=, block_n=...)",
        factory=_triton_factory,
        why_unavailable=_triton_why_unavailable))
    register(AttentionSpec(
        name="triton-block",
        summary="triton-attn plus SAGAN's whole attention block fused (one matmul for q/k/v, "
                "attention + residual in one Triton launch); triton-attn's options",
        factory=_triton_block_factory,
        why_unavailable=_triton_why_unavailable))
