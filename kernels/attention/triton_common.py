"""What every Triton attention kernel file shares: the Triton import, the interpreter switch,
the arithmetic helpers and the kernels' argument lists.

Nothing here is an op. The op files (small_n.py, tiled_forward.py, tiled_backward.py) import
their ``@triton.jit`` building blocks from here and from nowhere else, so no op file reaches
into another's private names:

* ``triton``, ``tl``, ``knobs``, ``driver``: the Triton modules, or stand-ins that let the
  kernel definitions parse when Triton is not installed (its wheels are Linux x86-64 only);
  :func:`why_triton_unavailable` says what is missing.
* :data:`INTERPRETING`: whether the kernels were built for the Triton interpreter.
* jit helpers: :func:`dot` (every tl.dot: fp32 accumulation, operands rounded to the input
  dtype), :func:`row_offset` and :func:`exp_minus` (the exponentials), :func:`load_tile` and
  :func:`store_tile` (a masked 2-D tile at any strides).
* :func:`forward_operands` and :func:`backward_operands`: the pointer and integer arguments
  every forward kernel, and every backward kernel, takes, in their order.
"""

from __future__ import annotations

import os
import types
from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
    from triton import knobs
    from triton.runtime import driver
    TRITON_IMPORT_ERROR: Optional[str] = None
except ImportError as exc:  # triton ships wheels for Linux x86-64 only
    TRITON_IMPORT_ERROR = str(exc)
    # Stand-ins so the kernel definitions still parse; nothing ever launches them.
    triton = tl = types.SimpleNamespace(jit=lambda fn: fn, constexpr=None)
    knobs = driver = None

# Triton reads TRITON_INTERPRET when @triton.jit decorates, i.e. when the kernel modules are
# imported (they import this one first); capture it at the same moment so the host code
# agrees with how the kernels were built.
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

# FMA contraction (a*b - c as one fma) is what makes "s*log2e - r" one instruction; Triton 3.6
# enables it by default but warns that 3.10 will not (TRITON_DEFAULT_FP_FUSION), so every
# launch requests it explicitly. The interpreter takes no such option (numpy rounds each step).
GPU_META = {} if INTERPRETING else {"enable_fp_fusion": True}

MAX_DQK = 256  # a tile holds a whole padded Dqk row in registers; SAGAN uses Dqk <= 64


def why_triton_unavailable(device: str) -> Optional[str]:
    """``None`` when the Triton kernels can run on ``device``, else a one-line reason.

    CUDA devices need only triton. CPU devices run only under the Triton interpreter
    (``TRITON_INTERPRET=1`` set before the kernels are imported): slow, meant for debugging.
    """
    if TRITON_IMPORT_ERROR is not None:
        return f"triton is not installed ({TRITON_IMPORT_ERROR})"
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch"
        return None
    if INTERPRETING:
        return None
    return ("needs a CUDA device (set TRITON_INTERPRET=1 before import to run it under the "
            "Triton interpreter for debugging)")


# ------------------------------------------------------------------------------------------
# jit helpers
# ------------------------------------------------------------------------------------------
# Exponentials. Scores stay raw (s = q . k, no pre-scaling of q: rounding a scaled q to 16 bits
# would move SAGAN's unscaled scores, which reach the hundreds). With EXP2 the row offset r
# (the running max in the forward, the LSE in the backward) is scaled once per ROW, so each
# score costs one FMA and one exp2 (the GPU's native ex2): exp(s - r) = exp2(s*log2e - r*log2e).
# Without EXP2: a subtraction and tl.exp (which the GPU lowers to a multiply and ex2 anyway),
# kept as the A/B baseline (option exp2=False). The LSE tensor is in natural-log units either
# way, so any backward reads any forward's LSE.
@triton.jit
def row_offset(r, EXP2: tl.constexpr):
    """The per-row term subtracted inside the exponential, in the units exp_minus expects."""
    if EXP2:
        return r * 1.4426950408889634  # log2(e)
    else:
        return r


@triton.jit
def exp_minus(s, r_scaled, EXP2: tl.constexpr):
    """exp(s - r) from raw scores s and r_scaled = row_offset(r) broadcast to s's shape."""
    if EXP2:
        return tl.exp2(s * 1.4426950408889634 - r_scaled)  # one FMA per score
    else:
        return tl.exp(s - r_scaled)


@triton.jit
def dot(a, b, DOT_DTYPE: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in fp32, operands rounded to DOT_DTYPE (the input dtype) first.

    So fp16/bf16 inputs run 16-bit tensor-core dots on a GPU, P and dS rounded to 16 bits as in
    FlashAttention. UPCAST (interpreter only): the rounded operands are widened to fp32 before
    tl.dot, because the interpreter's bf16 tl.dot returns garbage (max error 2.6e10 on a 16 x 16
    product with Triton 3.9); a product of two 16-bit values is exact in fp32, so this
    reproduces the GPU's numerics up to summation order.
    """
    a = a.to(DOT_DTYPE)
    b = b.to(DOT_DTYPE)
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    # "ieee" is explicit for fp32 operands: true fp32 FMA, no TF32 (Triton's default for fp32
    # is "tf32", a 10-bit mantissa). It is ignored for 16-bit operands. See NOTES.md section 3
    # for the H100's fp32 failure, which this choice has not yet been shown to fix.
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def load_tile(base, rows, cols, stride_r, stride_c, n_rows, n_cols):
    """The (len(rows), len(cols)) tile ``base[rows[i] * stride_r + cols[j] * stride_c]``,
    zero where ``rows >= n_rows`` or ``cols >= n_cols``.

    Swapping rows with cols (and their strides and bounds) loads the transposed tile: the
    kernels load k^T, q^T, v^T and dO^T that way rather than transposing in registers.
    """
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    return tl.load(base + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask,
                   other=0.0)


@triton.jit
def store_tile(base, value, rows, cols, stride_r, stride_c, n_rows, n_cols):
    """Writes ``value`` (rounded to base's dtype) where load_tile would read, same masking."""
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    tl.store(base + rows[:, None] * stride_r + cols[None, :] * stride_c,
             value.to(base.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------
# The kernels' argument lists
# ------------------------------------------------------------------------------------------
# Every forward kernel (small-n's and the tiled one) and every backward kernel takes the same
# pointers and integers in the same order, then its own constexprs; the launchers build them
# here, once. A kernel that does not need an argument (X, Y, GAMMA without the residual;
# GAMMA and DELTA without the fused block) receives some other tensor there and never reads it.
def forward_operands(q, k, v, o, lse, residual=None) -> tuple[tuple, tuple]:
    """``(pointers, ints)`` of a forward kernel:

    Q, K, V, O, LSE, X, Y, GAMMA; the (batch, row, column) strides of q, k, v, o and y; N, DQK,
    DV. ``residual=(x, gamma, y)`` (the fused SAGAN block): the kernel also writes
    y = x + gamma * o, x and y being (B, N, Dv) views with equal strides, gamma one element.
    """
    x, gamma, y = residual if residual is not None else (o, lse, o)
    ints = (*q.stride(), *k.stride(), *v.stride(), *o.stride(), *y.stride(),
            q.shape[1], q.shape[2], v.shape[2])
    return (q, k, v, o, lse, x, y, gamma), ints


def backward_operands(q, k, v, o, lse, do, dq, dk, dv, gamma=None, delta=None
                      ) -> tuple[tuple, tuple]:
    """``(pointers, ints)`` of a backward kernel:

    Q, K, V, O, DO, LSE, DQ, DK, DV, GAMMA, DELTA; the (batch, row, column) strides of q, k, v
    and do; the (batch, row) strides of dk (shared by dq: they must be equal) and of dv, whose
    last dims are contiguous; N, DQK, DV. O is contiguous (the forward allocates it). ``gamma``
    (one element): every gradient is scaled by it; ``delta`` ((B, N) fp32) receives
    rowsum(do * o). Both serve the fused block.
    """
    g = gamma if gamma is not None else lse  # unread unless the kernel's SCALE is set
    dl = delta if delta is not None else lse  # unread unless STORE_DELTA is set
    ints = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride()[:2],
            *dv.stride()[:2], q.shape[1], q.shape[2], v.shape[2])
    return (q, k, v, o, do, lse, dq, dk, dv, g, dl), ints
