"""Fused SAGAN attention in Triton: ``attend_triton(q, k, v) = softmax(q @ k^T) @ v``, no scale.

The contract is :func:`ganbench.kernels.attention.reference.attend_reference`. The N x N score
matrix is never stored, forward or backward (FlashAttention-2, Dao 2023):

* forward: each program owns a block of query rows and one chunk of Dv columns, streams over
  key blocks with an online softmax, and writes O plus the row's log-sum-exp (LSE);
* backward: P is recomputed tile by tile from q, k and the LSE (``P_ij = exp(q_i . k_j -
  LSE_i)``), and ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - delta)`` with
  ``delta_i = dO_i . O_i``, ``dK = dS^T Q`` in one kernel over key blocks.
  ``dQ = dS K`` is computed one of two ways (``backward=``):

  - ``"two-kernel"`` (default): a second kernel over query blocks recomputes P and dP. No
    atomics, so results are bitwise deterministic; but P (an exp per score) and the Dv-wide
    dP = dO V^T are computed twice.
  - ``"atomic"``: the key-block kernel also adds its ``dS K`` share into an fp32 dQ buffer with
    atomic adds, as FlashAttention-2's backward does. One pass over the N x N tiles instead of
    two: 2 exponentials per score for forward + backward instead of 3, and one dP instead of
    two. The cost is B * N * N * Dqk / BLOCK_N atomic adds (small: Dqk is C/8) and run-to-run
    differences in dQ at the level of fp32 rounding (the adds land in any order).

Precision: every tl.dot accumulates in fp32. Operands are rounded to the input dtype first, so
fp16/bf16 inputs run 16-bit tensor-core dots on a GPU (P and dS are rounded to 16 bits, as in
FlashAttention). fp32 inputs use ``input_precision="ieee"`` (true fp32 FMA, not TF32's 10-bit
mantissa): tests then hold fp32 to ~1e-5, and fp32 is the debugging path; bf16/fp16 are the fast
path. (On the one H100 run so far the fp32 CUDA tests failed, cause not yet known: NOTES.md,
section 3; fp32 passes under the interpreter.) Under ``TRITON_INTERPRET=1`` the rounded operands are widened to fp32 before tl.dot, because
the interpreter's bf16 dot returns garbage; a product of two 16-bit values is exact in fp32, so
this reproduces the GPU's numerics (up to summation order).

Internally scores are kept in base 2 (``s * log2(e)``) so the kernel uses exp2, the GPU's
native exponential; the LSE tensor is in the same base-2 units.
"""

import os
import types
from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
    _TRITON_IMPORT_ERROR: Optional[str] = None
except ImportError as exc:  # triton ships wheels for Linux x86-64 only
    _TRITON_IMPORT_ERROR = str(exc)
    # Stand-ins so the kernel definitions below still parse; nothing here ever launches them.
    triton = tl = types.SimpleNamespace(jit=lambda fn: fn, constexpr=None)

# Triton reads TRITON_INTERPRET when @triton.jit decorates, i.e. when this module is imported;
# capture it at the same moment so the host code agrees with how the kernels were built.
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

_LOG2E = 1.4426950408889634  # log2(e): exp(x) == exp2(x * log2(e))
_MAX_DQK = 256  # the whole padded Dqk row of a tile is held in registers; SAGAN uses <= 64


def why_triton_unavailable(device: str) -> Optional[str]:
    """``None`` when :func:`attend_triton` can run on ``device``, else a one-line reason.

    CUDA devices need only triton. CPU devices run only under the Triton interpreter
    (``TRITON_INTERPRET=1`` set before this module is imported): slow, meant for debugging.
    """
    if _TRITON_IMPORT_ERROR is not None:
        return f"triton is not installed ({_TRITON_IMPORT_ERROR})"
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch"
        return None
    if _INTERPRETING:
        return None
    return ("needs a CUDA device (set TRITON_INTERPRET=1 before import to run it under the "
            "Triton interpreter for debugging)")


# ------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------
@triton.jit
def _dot(a, b, DOT_DTYPE: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in fp32, operands rounded to DOT_DTYPE (the input dtype) first."""
    a = a.to(DOT_DTYPE)
    b = b.to(DOT_DTYPE)
    if UPCAST:  # interpreter only: its bf16 tl.dot is wrong; 16-bit x 16-bit is exact in fp32
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    # "ieee" matters only for fp32 operands (tl.dot ignores it for 16-bit ones): no TF32.
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE,
                stride_qb, stride_qn, stride_qd,
                stride_kb, stride_kn, stride_kd,
                stride_vb, stride_vn, stride_vd,
                stride_ob, stride_on, stride_od,
                N, DQK, DV,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                EVEN: tl.constexpr):
    # grid: (query blocks, Dv chunks, batch). EVEN: N % BLOCK_N == 0, so no key tile is padded
    # and the score mask (a select per score) is compiled out; SAGAN's N are powers of two.
    pid_m = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    DT = V.dtype.element_ty

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_DQK)
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    m_ok = offs_m < N
    d_ok = offs_d < DQK  # Dqk is padded up to BLOCK_DQK >= 16 with zeros: q . k is unchanged
    v_ok = offs_v < DV

    q = tl.load(Q + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)              # (BLOCK_M, BLOCK_DQK)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max (base-2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)                # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)      # running sum of exp2(s - m_i) * v
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        kT = tl.load(K + b * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=d_ok[:, None] & n_ok[None, :], other=0.0)         # (BLOCK_DQK, BLOCK_N)
        s = _dot(q, kT, DT, UPCAST) * 1.4426950408889634                    # (BLOCK_M, BLOCK_N)
        if not EVEN:
            s = tl.where(n_ok[None, :], s, float("-inf"))  # every block has a real key: no NaN
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)                    # rescales what was summed so far
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * stride_vb + offs_n[:, None] * stride_vn + offs_v[None, :] * stride_vd,
                    mask=n_ok[:, None] & v_ok[None, :], other=0.0)          # (BLOCK_N, BLOCK_DV)
        acc = acc * alpha[:, None] + _dot(p, v, DT, UPCAST)
        m_i = m_new

    o = acc / l_i[:, None]
    tl.store(O + b * stride_ob + offs_m[:, None] * stride_on + offs_v[None, :] * stride_od,
             o.to(O.dtype.element_ty), mask=m_ok[:, None] & v_ok[None, :])
    if pid_v == 0:  # every Dv chunk computes the same LSE; one writes it
        tl.store(LSE + b * N + offs_m, m_i + tl.log2(l_i), mask=m_ok)


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, O, DO, LSE, DK, DV_OUT, DQ_ACC,
                     stride_qb, stride_qn, stride_qd,
                     stride_kb, stride_kn, stride_kd,
                     stride_vb, stride_vn, stride_vd,
                     stride_dob, stride_don, stride_dod,
                     N, DQK, DV,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                     EVEN: tl.constexpr, ATOMIC_DQ: tl.constexpr):
    # grid: (key blocks, Dv chunks, batch). Program (j, c) writes dV[j-block, c-chunk]; the c == 0
    # program also writes dK[j-block], which needs dP = dO V^T contracted over ALL of Dv, so it
    # loops over every Dv chunk for dP, and delta_i = dO_i . O_i from the same dO chunks (delta
    # is recomputed per key block rather than by a separate launch: see _backward). With
    # ATOMIC_DQ it also adds dS[:, j-block] K[j-block] into the fp32 DQ_ACC. O, dK, dV and DQ_ACC
    # are contiguous (allocated by this module).
    pid_n = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    DT = V.dtype.element_ty

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_DQK)
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    n_ok = offs_n < N
    d_ok = offs_d < DQK
    v_ok = offs_v < DV

    k = tl.load(K + b * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=n_ok[:, None] & d_ok[None, :], other=0.0)              # (BLOCK_N, BLOCK_DQK)
    dk = tl.zeros([BLOCK_N, BLOCK_DQK], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < N
        qT = tl.load(Q + b * stride_qb + offs_m[None, :] * stride_qn + offs_d[:, None] * stride_qd,
                     mask=d_ok[:, None] & m_ok[None, :], other=0.0)         # (BLOCK_DQK, BLOCK_M)
        lse = tl.load(LSE + b * N + offs_m, mask=m_ok, other=0.0)
        sT = _dot(k, qT, DT, UPCAST) * 1.4426950408889634                   # (BLOCK_N, BLOCK_M)
        pT = tl.exp2(sT - lse[None, :])                                     # P^T, exact softmax
        if not EVEN:  # padded query rows (q = 0, LSE = 0) would give P = 1
            pT = tl.where(m_ok[None, :], pT, 0.0)
        doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_v[None, :] * stride_dod,
                      mask=m_ok[:, None] & v_ok[None, :], other=0.0)        # (BLOCK_M, BLOCK_DV)
        dv += _dot(pT, doc, DT, UPCAST)                                     # dV = P^T dO
        if pid_v == 0:
            dpT = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
            delta = tl.zeros([BLOCK_M], tl.float32)
            for start_v in range(0, DV, BLOCK_DV):  # dP^T = V dO^T over all of Dv, chunk by chunk
                offs_c = start_v + tl.arange(0, BLOCK_DV)
                c_ok = offs_c < DV
                vc = tl.load(V + b * stride_vb + offs_n[:, None] * stride_vn + offs_c[None, :] * stride_vd,
                             mask=n_ok[:, None] & c_ok[None, :], other=0.0)  # (BLOCK_N, BLOCK_DV)
                doT = tl.load(DO + b * stride_dob + offs_m[None, :] * stride_don + offs_c[:, None] * stride_dod,
                              mask=c_ok[:, None] & m_ok[None, :], other=0.0)  # (BLOCK_DV, BLOCK_M)
                dpT += _dot(vc, doT, DT, UPCAST)
                oT = tl.load(O + b * N * DV + offs_m[None, :] * DV + offs_c[:, None],
                             mask=c_ok[:, None] & m_ok[None, :], other=0.0)  # O is contiguous
                delta += tl.sum(oT.to(tl.float32) * doT.to(tl.float32), 0)  # dO_i . O_i
            dsT = pT * (dpT - delta[None, :])                                # dS^T
            q = tl.trans(qT)                                                 # (BLOCK_M, BLOCK_DQK)
            dk += _dot(dsT, q, DT, UPCAST)                                   # dK = dS^T Q
            if ATOMIC_DQ:  # this key block's share of dQ = dS K; "relaxed": only the sum matters
                dq = _dot(tl.trans(dsT), k, DT, UPCAST)                      # (BLOCK_M, BLOCK_DQK)
                tl.atomic_add(DQ_ACC + b * N * DQK + offs_m[:, None] * DQK + offs_d[None, :], dq,
                              mask=m_ok[:, None] & d_ok[None, :], sem="relaxed")

    dv_ptrs = DV_OUT + b * N * DV + offs_n[:, None] * DV + offs_v[None, :]
    tl.store(dv_ptrs, dv.to(DV_OUT.dtype.element_ty), mask=n_ok[:, None] & v_ok[None, :])
    if pid_v == 0:
        dk_ptrs = DK + b * N * DQK + offs_n[:, None] * DQK + offs_d[None, :]
        tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=n_ok[:, None] & d_ok[None, :])


@triton.jit
def _bwd_dq_kernel(Q, K, V, O, DO, LSE, DQ,
                   stride_qb, stride_qn, stride_qd,
                   stride_kb, stride_kn, stride_kd,
                   stride_vb, stride_vn, stride_vd,
                   stride_dob, stride_don, stride_dod,
                   N, DQK, DV,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                   EVEN: tl.constexpr):
    # grid: (query blocks, batch). dQ = dS K, summed over key blocks. DQ is contiguous.
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    DT = V.dtype.element_ty

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_DQK)
    m_ok = offs_m < N
    d_ok = offs_d < DQK

    q = tl.load(Q + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)              # (BLOCK_M, BLOCK_DQK)
    lse = tl.load(LSE + b * N + offs_m, mask=m_ok, other=0.0)
    delta = tl.zeros([BLOCK_M], tl.float32)  # delta_i = dO_i . O_i, once per query block
    for start_v in range(0, DV, BLOCK_DV):
        offs_c = start_v + tl.arange(0, BLOCK_DV)
        ok = m_ok[:, None] & (offs_c < DV)[None, :]
        o = tl.load(O + b * N * DV + offs_m[:, None] * DV + offs_c[None, :], mask=ok, other=0.0)
        doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_c[None, :] * stride_dod,
                      mask=ok, other=0.0)
        delta += tl.sum(o.to(tl.float32) * doc.to(tl.float32), 1)
    dq = tl.zeros([BLOCK_M, BLOCK_DQK], tl.float32)
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        kT = tl.load(K + b * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=d_ok[:, None] & n_ok[None, :], other=0.0)         # (BLOCK_DQK, BLOCK_N)
        s = _dot(q, kT, DT, UPCAST) * 1.4426950408889634
        p = tl.exp2(s - lse[:, None])                                       # (BLOCK_M, BLOCK_N)
        if not EVEN:  # padded keys (k = 0) would give P = exp(-LSE)
            p = tl.where(n_ok[None, :], p, 0.0)
        dp = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for start_v in range(0, DV, BLOCK_DV):  # dP = dO V^T over all of Dv, chunk by chunk
            offs_c = start_v + tl.arange(0, BLOCK_DV)
            c_ok = offs_c < DV
            doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_c[None, :] * stride_dod,
                          mask=m_ok[:, None] & c_ok[None, :], other=0.0)    # (BLOCK_M, BLOCK_DV)
            vT = tl.load(V + b * stride_vb + offs_n[None, :] * stride_vn + offs_c[:, None] * stride_vd,
                         mask=c_ok[:, None] & n_ok[None, :], other=0.0)     # (BLOCK_DV, BLOCK_N)
            dp += _dot(doc, vT, DT, UPCAST)
        ds = p * (dp - delta[:, None])
        k = tl.trans(kT)                                                     # (BLOCK_N, BLOCK_DQK)
        dq += _dot(ds, k, DT, UPCAST)

    dq_ptrs = DQ + b * N * DQK + offs_m[:, None] * DQK + offs_d[None, :]
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


# ------------------------------------------------------------------------------------------
# Host side
# ------------------------------------------------------------------------------------------
def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _config(N: int, Dqk: int, Dv: int, tiles: Optional[dict] = None) -> dict:
    """Tile sizes and launch parameters for one shape (constexprs must be powers of two).

    * BLOCK_DQK: Dqk padded to a power of two >= 16, because a 16-bit tl.dot on sm_80/sm_90 needs
      its contraction dim K >= 16 (triton/backends/nvidia/compiler.py: min_dot_size). SAGAN's
      Dqk = C/8 is 8 at N=1024: half the tile is zero padding, but that dot is the cheap one.
    * BLOCK_DV <= 128: the forward's fp32 accumulator is BLOCK_M x BLOCK_DV; 64 x 128 x 4 B is
      32 KB, 64 registers per thread at 4 warps. Dv = 512 would need 256 and spill, so larger
      Dv is split over the grid (forward, dV) or looped over in chunks (dP = dO V^T).
    * BLOCK_M/BLOCK_N: 64, or the next power of two >= 16 of N for the discriminator's short
      sequences (N=16: a 64-wide tile would be 94% padding). For the long generator sequences
      (N >= 1024) the forward takes 128 query rows per program and 8 warps: each K/V tile
      loaded is then reused by twice as many rows (Triton's fused-attention tutorial uses
      128 x 64 tiles for head dims <= 128 on sm_90).
    * num_stages: 3 for the forward's K/V stream (software pipelining: ~3 x 64 x (16 + 64) x 2 B
      = 31 KB of shared memory), 2 for the backward, which keeps more tiles live.

    These are first guesses, not tuned on a GPU yet. ``tiles`` (checked by
    :func:`check_tiles`) overrides any of them except BLOCK_DQK, for sweeps such as
    ``ganbench bench attention --variant triton-attn:block_n=128,bwd_warps=4``.
    """
    block_dqk = max(16, _next_pow2(Dqk))
    block_dv = min(128, max(16, _next_pow2(Dv)))
    block = min(64, max(16, _next_pow2(N)))
    fwd_m = 128 if N >= 1024 else block
    fwd_warps = 8 if fwd_m * block_dv >= 128 * 64 else 4
    bwd_warps = 8 if block_dv >= 128 else 4
    cfg = dict(BLOCK_DQK=block_dqk, BLOCK_DV=block_dv, BLOCK_N=block, FWD_BLOCK_M=fwd_m,
               FWD_WARPS=fwd_warps, FWD_STAGES=3, BWD_BLOCK_M=block, BWD_WARPS=bwd_warps,
               BWD_STAGES=2)
    cfg.update(tiles or {})
    return cfg


# What a caller may override, and the values each accepts. Tiles are tl.arange/tl.dot sizes:
# powers of two, >= 16 for the GPU's dot; BLOCK_DV <= 128 keeps the accumulators in registers
# (see _config); 256 is the largest tile worth trying for SAGAN's N <= 4096.
_TILE_SIZES = (16, 32, 64, 128, 256)
TILE_CHOICES = {
    "BLOCK_N": _TILE_SIZES, "FWD_BLOCK_M": _TILE_SIZES, "BWD_BLOCK_M": _TILE_SIZES,
    "BLOCK_DV": (16, 32, 64, 128),
    "FWD_WARPS": (1, 2, 4, 8, 16), "BWD_WARPS": (1, 2, 4, 8, 16),
    "FWD_STAGES": (1, 2, 3, 4, 5), "BWD_STAGES": (1, 2, 3, 4, 5),
}


def check_tiles(tiles: Optional[dict]) -> dict:
    """``tiles`` with upper-case keys, or ValueError naming the first bad key or value.

    Keys are those of :data:`TILE_CHOICES`, in any case (``block_n`` as a factory option).
    """
    checked = {}
    for key, value in (tiles or {}).items():
        name = str(key).upper()
        if name not in TILE_CHOICES:
            known = ", ".join(k.lower() for k in TILE_CHOICES)
            raise ValueError(f"unknown tile setting {key!r}; known: {known}")
        if isinstance(value, bool) or value not in TILE_CHOICES[name]:
            allowed = ", ".join(map(str, TILE_CHOICES[name]))
            raise ValueError(f"{key.lower()} must be one of {allowed}; got {value!r}")
        checked[name] = int(value)
    return checked


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"attend_triton expects q, k (B, N, Dqk) and v (B, N, Dv); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or v.dtype not in (torch.float32, torch.float16,
                                                               torch.bfloat16):
        raise TypeError(f"attend_triton supports one dtype among fp32/fp16/bf16 for q, k, v; "
                        f"got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k and v must be on one device")
    if q.shape[-1] > _MAX_DQK:
        raise ValueError(f"attend_triton supports Dqk <= {_MAX_DQK}; got {q.shape[-1]}")
    reason = why_triton_unavailable(str(q.device))
    if reason is not None:
        raise RuntimeError(f"attend_triton cannot run on {q.device}: {reason}")


def _forward(q, k, v, tiles=None):
    """Launch the forward: returns O (B, N, Dv) in v's dtype and LSE (B, N) fp32, base 2."""
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    cfg = _config(N, Dqk, Dv, tiles)
    o = torch.empty((B, N, Dv), device=v.device, dtype=v.dtype)
    lse = torch.empty((B, N), device=v.device, dtype=torch.float32)
    grid = (triton.cdiv(N, cfg["FWD_BLOCK_M"]), triton.cdiv(Dv, cfg["BLOCK_DV"]), B)
    _fwd_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(), N, Dqk, Dv,
        BLOCK_M=cfg["FWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
        BLOCK_DV=cfg["BLOCK_DV"], UPCAST=_INTERPRETING, EVEN=N % cfg["BLOCK_N"] == 0,
        num_warps=cfg["FWD_WARPS"], num_stages=cfg["FWD_STAGES"])
    return o, lse


BACKWARDS = ("two-kernel", "atomic")  # how dQ is computed: see the module docstring


def _backward(q, k, v, o, lse, do, backward: str = "two-kernel", tiles=None):
    """Launch the backward: returns dq, dk, dv (contiguous, in the inputs' dtype).

    Launch count matters more than arithmetic at SAGAN's sizes: on the H100 every kernel,
    eager and cuDNN included, took 0.24-0.83 ms per fwd+bwd at N <= 1024, batch 64, where the
    arithmetic and memory floors are 2-34 us (results/gpu-h100-80gb/README.md, kernels/
    attention/NOTES.md). So delta = rowsum(dO * O) is computed inside the kernels that use it
    (FlashAttention-2 spends a launch on it) and the whole backward is two launches
    ("two-kernel") or one plus a zero-fill ("atomic").
    """
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    cfg = _config(N, Dqk, Dv, tiles)
    atomic = backward == "atomic"
    # atomic: dQ is summed over key blocks in fp32 (16-bit partial sums would lose bits), then
    # rounded once to q's dtype.
    dq = (torch.zeros((B, N, Dqk), device=q.device, dtype=torch.float32) if atomic
          else torch.empty((B, N, Dqk), device=q.device, dtype=q.dtype))
    dk = torch.empty((B, N, Dqk), device=k.device, dtype=k.dtype)
    dv = torch.empty((B, N, Dv), device=v.device, dtype=v.dtype)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    even = N % cfg["BWD_BLOCK_M"] == 0 and N % cfg["BLOCK_N"] == 0  # no padded tile anywhere
    meta = dict(BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], UPCAST=_INTERPRETING, EVEN=even,
                num_warps=cfg["BWD_WARPS"], num_stages=cfg["BWD_STAGES"])
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(Dv, cfg["BLOCK_DV"]), B)
    _bwd_dkdv_kernel[grid](q, k, v, o, do, lse, dk, dv, dq, *strides, N, Dqk, Dv,
                           ATOMIC_DQ=atomic, **meta)
    if atomic:
        return dq.to(q.dtype), dk, dv  # no copy for fp32
    grid = (triton.cdiv(N, cfg["BWD_BLOCK_M"]), B)
    _bwd_dq_kernel[grid](q, k, v, o, do, lse, dq, *strides, N, Dqk, Dv, **meta)
    return dq, dk, dv


# ------------------------------------------------------------------------------------------
# The op, as torch sees it
# ------------------------------------------------------------------------------------------
# Two routes to the same launchers (_forward, _backward):
# * eager: a torch.autograd.Function. Its host overhead is what matters at SAGAN's sizes, where
#   calls are launch-bound: 41 us per fwd+bwd with the kernels stubbed out, against 96 us for
#   the custom ops below (2-core Xeon, torch 2.13, median of 500 calls).
# * under torch.compile: two custom ops (forward, backward), which the compiler treats as
#   opaque calls with the shapes register_fake gives. Tracing the autograd.Function instead
#   follows Triton's launcher (under TRITON_INTERPRET=1 that failed: dynamo walked into the
#   interpreter's numpy code); with the ops, `ganbench run --compile` has no graph break there.
# Both refuse a double backward (e.g. a WGAN-GP penalty through D) rather than silently drop
# the second-order terms. Custom ops take schema types only: the backward's name is a str, the
# tile overrides a list of ints in TILE_CHOICES's order, 0 meaning "_config's default".
class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, backward, tiles):
        o, lse = _forward(q, k, v, tiles)  # o is contiguous: the backward kernels index it so
        ctx.save_for_backward(q, k, v, o, lse)  # O(B*N*D): no N x N tensor is kept
        ctx.backward_mode, ctx.tiles = backward, tiles
        return o

    @staticmethod
    def backward(ctx, do):
        # Grad mode is on in a backward only under create_graph=True, i.e. when a second
        # derivative is wanted. once_differentiable is not enough: it raises only if dO itself
        # requires grad, and otherwise returns gradients that silently lack the terms through
        # q, k and v.
        if torch.is_grad_enabled():
            raise RuntimeError("triton-attn has no second derivative (double backward, e.g. a "
                               "gradient penalty through D); use eager-attn for that")
        q, k, v, o, lse = ctx.saved_tensors
        return (*_backward(q, k, v, o, lse, do, ctx.backward_mode, ctx.tiles), None, None)


def _tiles_to_list(tiles: dict) -> list:
    return [tiles.get(key, 0) for key in TILE_CHOICES]


def _tiles_from_list(values) -> dict:
    return {key: value for key, value in zip(TILE_CHOICES, values) if value}


@torch.library.custom_op("ganbench::triton_attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backward: str,
                  tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """O and the base-2 LSE; ``backward`` is carried for the backward op (see _setup)."""
    return _forward(q, k, v, _tiles_from_list(tiles))  # o is contiguous: the backward relies on it


@_attention_op.register_fake
def _attention_op_shapes(q, k, v, backward, tiles):
    B, N, _ = q.shape
    return (v.new_empty((B, N, v.shape[-1])), q.new_empty((B, N), dtype=torch.float32))


@torch.library.custom_op("ganbench::triton_attention_backward", mutates_args=())
def _attention_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                           lse: torch.Tensor, do: torch.Tensor, backward: str,
                           tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv, contiguous. No autograd is registered for it, so a double backward (e.g. a
    WGAN-GP penalty through D) raises instead of silently dropping second-order terms."""
    return _backward(q, k, v, o, lse, do, backward, _tiles_from_list(tiles))


@_attention_backward_op.register_fake
def _attention_backward_op_shapes(q, k, v, o, lse, do, backward, tiles):
    return tuple(torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))


def _setup(ctx, inputs, output):
    q, k, v, backward, tiles = inputs
    o, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, o, lse)  # O(B*N*D): no N x N tensor is kept
    ctx.backward_mode, ctx.tiles = backward, tiles


def _gradients(ctx, do, _dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = _attention_backward_op(q, k, v, o, lse, do, ctx.backward_mode, ctx.tiles)
    return dq, dk, dv, None, None


_attention_op.register_autograd(_gradients, setup_context=_setup)


def check_backward(backward: str) -> str:
    """``backward`` if it names a backward of this module, else ValueError listing them."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(BACKWARDS)}; got {backward!r}")
    return backward


def attend_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                  backward: str = "two-kernel", tiles: Optional[dict] = None) -> torch.Tensor:
    """softmax(q @ k^T) @ v without a 1/sqrt(d) scale, fused; differentiable in q, k and v.

    q, k: (B, N, Dqk), v: (B, N, Dv); one dtype among fp32, fp16, bf16 (fp32 accumulation);
    any strides; any N >= 1; Dqk <= 256; any Dv. Returns a contiguous (B, N, Dv) tensor in v's
    dtype. Runs on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (see
    :func:`why_triton_unavailable`). Memory: O(B * N * (Dqk + Dv)), never O(N^2).
    ``backward`` picks how dQ is computed, "two-kernel" (deterministic) or "atomic" (one pass
    over the scores; dQ varies between runs at fp32 rounding level): see the module docstring.
    ``tiles`` overrides the per-shape tile sizes, warps and pipeline stages (see
    :func:`_config` and :data:`TILE_CHOICES`); the result is the same up to summation order.
    """
    _check_inputs(q, k, v)
    backward, tiles = check_backward(backward), check_tiles(tiles)
    if torch.compiler.is_compiling():  # see "The op, as torch sees it" above
        o, _ = _attention_op(q, k, v, backward, _tiles_to_list(tiles))
        return o
    return _TritonAttention.apply(q, k, v, backward, tiles)
