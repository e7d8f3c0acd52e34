"""Fused SAGAN attention in Triton: ``attend_triton(q, k, v) = softmax(q @ k^T) @ v``, no scale.

The contract is :func:`ganbench.kernels.attention.reference.attend_reference`. The N x N score
matrix is never stored, forward or backward. Two variants (``variant=``; ``"auto"`` picks
small-n for N <= 256, else tiled, see NOTES.md section 4):

* small-n (small_n.py): all keys of a batch element in one tile, exact softmax, and a
  backward of ONE launch with one program per batch element (no atomics);
* tiled (this module, FlashAttention-2, Dao 2023). Forward: each program owns a block of query
  rows and one chunk of Dv columns, streams over key blocks with an online softmax, and writes
  O plus the row's log-sum-exp (LSE). Backward: P is recomputed tile by tile from q, k and the
  LSE (``P_ij = exp(q_i . k_j - LSE_i)``), and ``dV = P^T dO``, ``dP = dO V^T``,
  ``dS = P * (dP - delta)`` with ``delta_i = dO_i . O_i``, ``dK = dS^T Q`` over key blocks.
  ``dQ = dS K`` is computed one of three ways (``backward=``):

  - ``"one-launch"`` (``"auto"``): one grid; program i computes dK/dV of key block i and then
    dQ of query block i (the structure of Triton's fused-attention tutorial). No atomics,
    bitwise deterministic, one launch; P and the Dv-wide dP are computed twice (3 exps per
    score for forward + backward).
  - ``"two-kernel"``: the same two phases as two launches (the previous default).
  - ``"atomic"``: the key-block kernel also adds its ``dS K`` share into an fp32 dQ buffer with
    atomic adds, as FlashAttention-2's backward does. One pass over the N x N tiles instead of
    two: 2 exponentials per score instead of 3, and one dP instead of two. The cost is
    B * N * N * Dqk / BLOCK_N atomic adds (small: Dqk is C/8) and run-to-run differences in dQ
    at the level of fp32 rounding (the adds land in any order).

Precision: every tl.dot accumulates in fp32. Operands are rounded to the input dtype first, so
fp16/bf16 inputs run 16-bit tensor-core dots on a GPU (P and dS are rounded to 16 bits, as in
FlashAttention). fp32 inputs use ``input_precision="ieee"`` (true fp32 FMA, not TF32's 10-bit
mantissa): tests then hold fp32 to ~1e-5, and fp32 is the debugging path; bf16/fp16 are the
fast path. (On the one H100 run so far the fp32 CUDA tests failed, cause not yet known:
NOTES.md, section 3; fp32 passes under the interpreter.) Under ``TRITON_INTERPRET=1`` the
rounded operands are widened to fp32 before tl.dot, because the interpreter's bf16 dot returns
garbage; a product of two 16-bit values is exact in fp32, so this reproduces the GPU's numerics
(up to summation order).

Exponentials: scores stay raw; each costs one FMA and one exp2 (``exp2(s*log2e - r*log2e)``,
r the row max or LSE scaled once per row; ``exp2=False``: tl.exp). The LSE tensor is in
natural-log units. Launches go through :func:`_launch`, which binds each compiled kernel once
per configuration on CUDA (``prebind``). The forward can also write SAGAN's residual
``y = x + gamma * o`` and the backward can scale its gradients by gamma and return delta: the
fused block (block.py) uses both.
"""

import functools
import os
import types
from typing import NamedTuple, Optional

import torch

try:
    import triton
    import triton.language as tl
    from triton import knobs
    from triton.runtime import driver
    _TRITON_IMPORT_ERROR: Optional[str] = None
except ImportError as exc:  # triton ships wheels for Linux x86-64 only
    _TRITON_IMPORT_ERROR = str(exc)
    # Stand-ins so the kernel definitions below still parse; nothing here ever launches them.
    triton = tl = types.SimpleNamespace(jit=lambda fn: fn, constexpr=None)
    knobs = driver = None

# Triton reads TRITON_INTERPRET when @triton.jit decorates, i.e. when this module is imported;
# capture it at the same moment so the host code agrees with how the kernels were built.
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

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
# Exponentials. Scores stay raw (s = q . k, no pre-scaling of q: rounding a scaled q to 16 bits
# would move SAGAN's unscaled scores, which reach the hundreds). With EXP2 the row offset r
# (the running max in the forward, the LSE in the backward) is scaled once per ROW, so each
# score costs one FMA and one exp2 (the GPU's native ex2): exp(s - r) = exp2(s*log2e - r*log2e).
# Without EXP2: a subtraction and tl.exp (which the GPU lowers to a multiply and ex2 anyway):
# kept as the A/B baseline (factory option exp2=False). The LSE tensor is natural-log units
# either way, so any backward reads any forward's LSE.
@triton.jit
def _row_offset(r, EXP2: tl.constexpr):
    """The per-row term subtracted inside the exponential, in the units _exp_minus expects."""
    if EXP2:
        return r * 1.4426950408889634
    else:
        return r


@triton.jit
def _exp_minus(s, r_scaled, EXP2: tl.constexpr):
    """exp(s - r) from raw scores s and r_scaled = _row_offset(r) broadcast to s's shape."""
    if EXP2:
        return tl.exp2(s * 1.4426950408889634 - r_scaled)  # one FMA per score
    else:
        return tl.exp(s - r_scaled)


@triton.jit
def _dot(a, b, DOT_DTYPE: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in fp32, operands rounded to DOT_DTYPE (the input dtype) first."""
    a = a.to(DOT_DTYPE)
    b = b.to(DOT_DTYPE)
    if UPCAST:  # interpreter only: its bf16 tl.dot is wrong; 16-bit x 16-bit is exact in fp32
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    # "ieee" is explicit for fp32 operands: true fp32 FMA, no TF32 (Triton's default for fp32
    # is "tf32"). It is ignored for 16-bit operands. See NOTES.md section 3 for the H100's
    # fp32 failure, which this choice has not yet been shown to fix.
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, X, Y, GAMMA,
                stride_qb, stride_qn, stride_qd,
                stride_kb, stride_kn, stride_kd,
                stride_vb, stride_vn, stride_vd,
                stride_ob, stride_on, stride_od,
                stride_yb, stride_yn, stride_yd,
                N, DQK, DV,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                EVEN: tl.constexpr, EXP2: tl.constexpr, RESIDUAL: tl.constexpr):
    # grid: (query blocks, Dv chunks, batch). EVEN: N % BLOCK_N == 0, so no key tile is padded
    # and the score mask (a select per score) is compiled out; SAGAN's N are powers of two.
    # RESIDUAL (the fused SAGAN block): also writes Y = X + gamma * O, X and Y sharing strides.
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

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max of the raw scores
    l_i = tl.zeros([BLOCK_M], tl.float32)                # running sum of exp(s - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)      # running sum of exp(s - m_i) * v
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        kT = tl.load(K + b * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=d_ok[:, None] & n_ok[None, :], other=0.0)         # (BLOCK_DQK, BLOCK_N)
        s = _dot(q, kT, DT, UPCAST)                                         # (BLOCK_M, BLOCK_N)
        if not EVEN:
            s = tl.where(n_ok[None, :], s, float("-inf"))  # every block has a real key: no NaN
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = _exp_minus(m_i, _row_offset(m_new, EXP2), EXP2)  # rescales what was summed
        p = _exp_minus(s, _row_offset(m_new, EXP2)[:, None], EXP2)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * stride_vb + offs_n[:, None] * stride_vn + offs_v[None, :] * stride_vd,
                    mask=n_ok[:, None] & v_ok[None, :], other=0.0)          # (BLOCK_N, BLOCK_DV)
        acc = acc * alpha[:, None] + _dot(p, v, DT, UPCAST)
        m_i = m_new

    o = acc / l_i[:, None]
    ok = m_ok[:, None] & v_ok[None, :]
    tl.store(O + b * stride_ob + offs_m[:, None] * stride_on + offs_v[None, :] * stride_od,
             o.to(O.dtype.element_ty), mask=ok)
    if RESIDUAL:
        y_off = b * stride_yb + offs_m[:, None] * stride_yn + offs_v[None, :] * stride_yd
        x = tl.load(X + y_off, mask=ok, other=0.0).to(tl.float32)
        gamma = tl.load(GAMMA).to(tl.float32)
        tl.store(Y + y_off, (x + gamma * o).to(Y.dtype.element_ty), mask=ok)
    if pid_v == 0:  # every Dv chunk computes the same LSE; one writes it (natural-log units)
        tl.store(LSE + b * N + offs_m, m_i + tl.log(l_i), mask=m_ok)


@triton.jit
def _dkdv_program(Q, K, V, O, DO, LSE, DK, DV_OUT, DQ_ACC, GAMMA, DELTA,
                  pid_n, pid_v, b,
                  stride_qb, stride_qn, stride_qd,
                  stride_kb, stride_kn, stride_kd,
                  stride_vb, stride_vn, stride_vd,
                  stride_dob, stride_don, stride_dod,
                  stride_gb, stride_gn, stride_hb, stride_hn,
                  N, DQK, DV,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                  EVEN: tl.constexpr, ATOMIC_DQ: tl.constexpr, EXP2: tl.constexpr,
                  SCALE: tl.constexpr, STORE_DELTA: tl.constexpr):
    # One key block j (pid_n) and one Dv chunk c (pid_v): writes dV[j-block, c-chunk]; the
    # c == 0 program also writes dK[j-block], which needs dP = dO V^T contracted over ALL of Dv,
    # so it loops over every Dv chunk for dP, and delta_i = dO_i . O_i from the same dO chunks
    # (delta is recomputed per key block rather than by a separate launch: see _backward). With
    # ATOMIC_DQ it also adds dS[:, j-block] K[j-block] into the fp32 DQ_ACC (contiguous). O is
    # contiguous (allocated by this module); dK rows have strides (stride_gb, stride_gn), dV
    # rows (stride_hb, stride_hn), last dims contiguous. SCALE: every gradient is multiplied
    # by *GAMMA at the store (the fused block: dO = gamma * dY, and the gradients are linear in
    # dO). STORE_DELTA: the (B, N) fp32 DELTA gets delta_i = dO_i . O_i (the block's dgamma).
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
        sT = _dot(k, qT, DT, UPCAST)                                        # (BLOCK_N, BLOCK_M)
        pT = _exp_minus(sT, _row_offset(lse, EXP2)[None, :], EXP2)          # P^T, exact softmax
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
            if STORE_DELTA:
                if pid_n == 0:  # every key block computes the same delta; one writes it
                    tl.store(DELTA + b * N + offs_m, delta, mask=m_ok)
            dsT = pT * (dpT - delta[None, :])                                # dS^T
            q = tl.trans(qT)                                                 # (BLOCK_M, BLOCK_DQK)
            dk += _dot(dsT, q, DT, UPCAST)                                   # dK = dS^T Q
            if ATOMIC_DQ:  # this key block's share of dQ = dS K; "relaxed": only the sum matters
                dq = _dot(tl.trans(dsT), k, DT, UPCAST)                      # (BLOCK_M, BLOCK_DQK)
                tl.atomic_add(DQ_ACC + b * N * DQK + offs_m[:, None] * DQK + offs_d[None, :], dq,
                              mask=m_ok[:, None] & d_ok[None, :], sem="relaxed")

    if SCALE:
        gamma = tl.load(GAMMA).to(tl.float32)
        dv = dv * gamma
        dk = dk * gamma
    dv_ptrs = DV_OUT + b * stride_hb + offs_n[:, None] * stride_hn + offs_v[None, :]
    tl.store(dv_ptrs, dv.to(DV_OUT.dtype.element_ty), mask=n_ok[:, None] & v_ok[None, :])
    if pid_v == 0:
        dk_ptrs = DK + b * stride_gb + offs_n[:, None] * stride_gn + offs_d[None, :]
        tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=n_ok[:, None] & d_ok[None, :])


@triton.jit
def _dq_program(Q, K, V, O, DO, LSE, DQ, GAMMA, DELTA,
                pid_m, b,
                stride_qb, stride_qn, stride_qd,
                stride_kb, stride_kn, stride_kd,
                stride_vb, stride_vn, stride_vd,
                stride_dob, stride_don, stride_dod,
                stride_gb, stride_gn,
                N, DQK, DV,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                EVEN: tl.constexpr, EXP2: tl.constexpr, SCALE: tl.constexpr,
                STORE_DELTA: tl.constexpr):
    # One query block (pid_m): dQ = dS K, summed over key blocks. DQ rows: (stride_gb, stride_gn).
    DT = V.dtype.element_ty
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_DQK)
    m_ok = offs_m < N
    d_ok = offs_d < DQK

    q = tl.load(Q + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)              # (BLOCK_M, BLOCK_DQK)
    lse_r = _row_offset(tl.load(LSE + b * N + offs_m, mask=m_ok, other=0.0), EXP2)
    delta = tl.zeros([BLOCK_M], tl.float32)  # delta_i = dO_i . O_i, once per query block
    for start_v in range(0, DV, BLOCK_DV):
        offs_c = start_v + tl.arange(0, BLOCK_DV)
        ok = m_ok[:, None] & (offs_c < DV)[None, :]
        o = tl.load(O + b * N * DV + offs_m[:, None] * DV + offs_c[None, :], mask=ok, other=0.0)
        doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_c[None, :] * stride_dod,
                      mask=ok, other=0.0)
        delta += tl.sum(o.to(tl.float32) * doc.to(tl.float32), 1)
    if STORE_DELTA:
        tl.store(DELTA + b * N + offs_m, delta, mask=m_ok)
    dq = tl.zeros([BLOCK_M, BLOCK_DQK], tl.float32)
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        kT = tl.load(K + b * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=d_ok[:, None] & n_ok[None, :], other=0.0)         # (BLOCK_DQK, BLOCK_N)
        s = _dot(q, kT, DT, UPCAST)
        p = _exp_minus(s, lse_r[:, None], EXP2)                             # (BLOCK_M, BLOCK_N)
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

    if SCALE:
        dq = dq * tl.load(GAMMA).to(tl.float32)
    dq_ptrs = DQ + b * stride_gb + offs_m[:, None] * stride_gn + offs_d[None, :]
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, O, DO, LSE, DK, DV_OUT, DQ_ACC, GAMMA, DELTA,
                     stride_qb, stride_qn, stride_qd,
                     stride_kb, stride_kn, stride_kd,
                     stride_vb, stride_vn, stride_vd,
                     stride_dob, stride_don, stride_dod,
                     stride_gb, stride_gn, stride_hb, stride_hn,
                     N, DQK, DV,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                     EVEN: tl.constexpr, ATOMIC_DQ: tl.constexpr, EXP2: tl.constexpr,
                     SCALE: tl.constexpr, STORE_DELTA: tl.constexpr):
    # grid: (key blocks, Dv chunks, batch); see _dkdv_program.
    _dkdv_program(Q, K, V, O, DO, LSE, DK, DV_OUT, DQ_ACC, GAMMA, DELTA,
                  tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64),
                  stride_qb, stride_qn, stride_qd, stride_kb, stride_kn, stride_kd,
                  stride_vb, stride_vn, stride_vd, stride_dob, stride_don, stride_dod,
                  stride_gb, stride_gn, stride_hb, stride_hn, N, DQK, DV,
                  BLOCK_M, BLOCK_N, BLOCK_DQK, BLOCK_DV, UPCAST, EVEN, ATOMIC_DQ, EXP2, SCALE,
                  STORE_DELTA)


@triton.jit
def _bwd_dq_kernel(Q, K, V, O, DO, LSE, DQ, GAMMA, DELTA,
                   stride_qb, stride_qn, stride_qd,
                   stride_kb, stride_kn, stride_kd,
                   stride_vb, stride_vn, stride_vd,
                   stride_dob, stride_don, stride_dod,
                   stride_gb, stride_gn,
                   N, DQK, DV,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                   EVEN: tl.constexpr, EXP2: tl.constexpr, SCALE: tl.constexpr,
                   STORE_DELTA: tl.constexpr):
    # grid: (query blocks, batch); see _dq_program.
    _dq_program(Q, K, V, O, DO, LSE, DQ, GAMMA, DELTA,
                tl.program_id(0), tl.program_id(1).to(tl.int64),
                stride_qb, stride_qn, stride_qd, stride_kb, stride_kn, stride_kd,
                stride_vb, stride_vn, stride_vd, stride_dob, stride_don, stride_dod,
                stride_gb, stride_gn, N, DQK, DV,
                BLOCK_M, BLOCK_N, BLOCK_DQK, BLOCK_DV, UPCAST, EVEN, EXP2, SCALE, STORE_DELTA)


@triton.jit
def _bwd_one_launch_kernel(Q, K, V, O, DO, LSE, DQ, DK, DV_OUT, GAMMA, DELTA,
                           stride_qb, stride_qn, stride_qd,
                           stride_kb, stride_kn, stride_kd,
                           stride_vb, stride_vn, stride_vd,
                           stride_dob, stride_don, stride_dod,
                           stride_gb, stride_gn, stride_hb, stride_hn,
                           N, DQK, DV,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr,
                           UPCAST: tl.constexpr, EVEN: tl.constexpr, EXP2: tl.constexpr,
                           SCALE: tl.constexpr, STORE_DELTA: tl.constexpr):
    # grid: (max(key blocks, query blocks), Dv chunks, batch). The whole backward in one
    # launch and without atomics: program i first computes dK/dV for key block i (exactly as
    # the dK/dV kernel), then, if it is a Dv-chunk-0 program, dQ for query block i (exactly as
    # the dQ kernel). The two phases read only the forward's outputs and dO, never each
    # other's results, so no program waits for another and the result is bitwise
    # deterministic. The structure of Triton's fused-attention tutorial backward; it saves the
    # second launch of "two-kernel" (P and dP are still computed twice: 3 exps per score).
    pid = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    if pid * BLOCK_N < N:
        _dkdv_program(Q, K, V, O, DO, LSE, DK, DV_OUT, DQ, GAMMA, DELTA, pid, pid_v, b,
                      stride_qb, stride_qn, stride_qd, stride_kb, stride_kn, stride_kd,
                      stride_vb, stride_vn, stride_vd, stride_dob, stride_don, stride_dod,
                      stride_gb, stride_gn, stride_hb, stride_hn, N, DQK, DV,
                      BLOCK_M, BLOCK_N, BLOCK_DQK, BLOCK_DV, UPCAST, EVEN, False, EXP2, SCALE,
                      False)
    if pid_v == 0:
        if pid * BLOCK_M < N:
            _dq_program(Q, K, V, O, DO, LSE, DQ, GAMMA, DELTA, pid, b,
                        stride_qb, stride_qn, stride_qd, stride_kb, stride_kn, stride_kd,
                        stride_vb, stride_vn, stride_vd, stride_dob, stride_don, stride_dod,
                        stride_gb, stride_gn, N, DQK, DV,
                        BLOCK_M, BLOCK_N, BLOCK_DQK, BLOCK_DV, UPCAST, EVEN, EXP2, SCALE,
                        STORE_DELTA)


# ------------------------------------------------------------------------------------------
# Host side: options, plans (tiles per shape), launches
# ------------------------------------------------------------------------------------------
VARIANTS = ("auto", "small-n", "tiled")
BACKWARDS = ("auto", "one-launch", "two-kernel", "atomic")  # the tiled variant's dQ schemes
SMALL_N_MAX = 256  # small-n holds every key of a batch element in one tile: see small_n.py


class Options(NamedTuple):
    """What a configured attend_triton runs; hashable, so plans and bindings cache on it.

    variant: "auto" (small-n for N <= SMALL_N_MAX, else tiled), "small-n" or "tiled".
    backward: the tiled variant's backward, "auto" (= "one-launch"), "one-launch",
    "two-kernel" or "atomic" (small-n has exactly one backward: one launch, no atomics).
    exp2: exponentials as exp2(s*log2e - r*log2e), one FMA per score (False: tl.exp(s - r)).
    prebind: launch through kernels bound once per configuration (CUDA only; see _launch).
    tiles: sorted (KEY, value) pairs overriding the per-shape tiles (TILE_CHOICES).
    """

    variant: str = "auto"
    backward: str = "auto"
    exp2: bool = True
    prebind: bool = True
    tiles: tuple = ()


DEFAULT_OPTIONS = Options()


def check_options(variant: str = "auto", backward: str = "auto", exp2: bool = True,
                  prebind: bool = True, tiles: Optional[dict] = None) -> Options:
    """An :class:`Options`, or ValueError with one line naming the bad value and the choices."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    check_backward(backward)
    if variant == "small-n" and backward != "auto":
        raise ValueError(f"backward={backward!r} is a tiled-variant backward; variant='small-n' "
                         "has its own one-launch backward (leave backward='auto')")
    for name, value in (("exp2", exp2), ("prebind", prebind)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false; got {value!r}")
    return Options(variant, backward, exp2, prebind, tuple(sorted(check_tiles(tiles).items())))


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _config(N: int, Dqk: int, Dv: int, tiles: Optional[dict] = None) -> dict:
    """Tile sizes and launch parameters of the tiled variant for one shape (powers of two).

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


def _small_config(N: int, Dqk: int, Dv: int, tiles: Optional[dict] = None) -> dict:
    """Tiles of the small-n variant (N <= SMALL_N_MAX): N_PAD = all keys in one tile.

    * N_PAD: N rounded up to a power of two >= 16 (tl.arange and tl.dot sizes).
    * FWD_BLOCK_M = min(N_PAD, 64) query rows per forward program: the score tile is then at
      most 64 x 256 fp32 = 64 KB, 64 registers per thread at 8 warps.
    * BWD_BLOCK_M: N_PAD when N_PAD <= 64 (one query block: dV comes from the same P, no
      second pass), else 8192 / N_PAD (32 at N = 256): the backward holds four such score-sized
      tiles (P, dP, dS and S) at once, 4 x 32 x 256 fp32 = 128 KB over 8 warps.
    * BLOCK_N (pass 2's key block) 64. BLOCK_DV <= 128 and N_PAD * BLOCK_DV <= 16384: the V
      chunk (N_PAD x BLOCK_DV) is a tl.dot operand staged in shared memory; at N = 256 in fp32
      a 128-wide chunk would be 128 KB next to a 64 KB P, near the H100's 227 KB per block, so
      N = 256 takes 64-wide chunks (P is still computed once and reused for each).
    First guesses, like _config's: ``tiles`` overrides them (FWD_BLOCK_M, BWD_BLOCK_M, BLOCK_N,
    BLOCK_DV, warps, stages).
    """
    n_pad = max(16, _next_pow2(N))
    block_dqk = max(16, _next_pow2(Dqk))
    block_dv = min(128, max(16, _next_pow2(Dv)), max(16, 16384 // n_pad))
    fwd_m = min(n_pad, 64)
    bwd_m = n_pad if n_pad <= 64 else max(16, 8192 // n_pad)
    cfg = dict(N_PAD=n_pad, BLOCK_DQK=block_dqk, BLOCK_DV=block_dv, BLOCK_N=min(n_pad, 64),
               FWD_BLOCK_M=fwd_m, FWD_WARPS=4 if fwd_m * n_pad <= 4096 else 8, FWD_STAGES=1,
               BWD_BLOCK_M=bwd_m, BWD_WARPS=4 if n_pad <= 64 else 8, BWD_STAGES=1)
    cfg.update(tiles or {})
    return cfg


class Plan(NamedTuple):
    variant: str   # "small-n" or "tiled"
    backward: str  # "small-n" (its own), "one-launch", "two-kernel" or "atomic"
    cfg: dict


@functools.lru_cache(maxsize=256)
def plan(N: int, Dqk: int, Dv: int, options: Options = DEFAULT_OPTIONS) -> Plan:
    """Which kernels and tiles run for one shape: ``auto`` resolved. Cached: this runs on every
    call, and the call's host time is what SAGAN's shapes are bound by (NOTES.md).

    Why ``auto`` picks small-n up to N = 256 and the tiled kernels with the one-launch backward
    above: NOTES.md, section 4.
    """
    variant = options.variant
    if variant == "auto":
        variant = "small-n" if N <= SMALL_N_MAX else "tiled"
    tiles = dict(options.tiles)
    if variant == "small-n":
        if N > SMALL_N_MAX:
            raise ValueError(f"variant='small-n' supports N <= {SMALL_N_MAX}; got N={N} "
                             "(use variant='auto', which runs the tiled kernels there)")
        return Plan("small-n", "small-n", _small_config(N, Dqk, Dv, tiles))
    backward = "one-launch" if options.backward == "auto" else options.backward
    return Plan("tiled", backward, _config(N, Dqk, Dv, tiles))


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


def check_backward(backward: str) -> str:
    """``backward`` if it names a backward of this module, else ValueError listing them."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(BACKWARDS)}; got {backward!r}")
    return backward


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


# The pre-bound launcher. ``kernel[grid](*args, **meta)`` makes Triton's JIT bind every
# argument, compute the specialization key (dtype, 16-byte alignment, ==1 for each int and
# pointer), hash it and look the compiled kernel up, on every call. At SAGAN's sizes the call
# is launch-bound, so _launch does that once per configuration: it keys on what decides the
# specialization here (each int's value, each tensor's dtype, all pointers 16-byte aligned,
# the constexprs, the grid's batch/chunk dims) and afterwards calls the compiled kernel's
# launcher directly on the current device and stream (so CUDA-graph capture still works).
# Measured on the CPU with launches stubbed (host_cost.py): NOTES.md, section 2.
# Under the interpreter, with a launch hook installed (profilers), or with prebind off it
# takes Triton's normal path.
_BOUND: dict = {}


def _launch_hooks_installed() -> bool:
    """True when a launch hook is set (Triton 3.6 keeps an empty HookChain otherwise)."""
    hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    return any(h is not None and getattr(h, "calls", True) for h in hooks)


def _launch(kernel, grid, tensors: tuple, ints: tuple, meta: dict, prebind: bool):
    """``kernel[grid](*tensors, *ints, **meta)``, pre-bound where possible (see above).

    ``tensors`` are the pointer arguments, ``ints`` the integer ones, in the kernel's order
    (every kernel here takes its pointers first). A tensor that is not 16-byte aligned (a
    view at an odd offset) takes Triton's path, which specializes on alignment.
    """
    if not prebind or _INTERPRETING or _launch_hooks_installed():
        return kernel[grid](*tensors, *ints, **meta)
    aligned = not any(t.data_ptr() & 15 for t in tensors)
    device = driver.active.get_current_device()  # a compiled handle belongs to one device
    key = (kernel, device, grid[1:], ints, tuple(t.dtype for t in tensors), aligned,
           tuple(meta.items()))
    bound = _BOUND.get(key) if aligned else None
    if bound is None:
        compiled = kernel[grid](*tensors, *ints, **meta)  # compiles (or finds) and launches
        if aligned:
            n_args = len(tensors) + len(ints)
            _BOUND[key] = (compiled, tuple(meta[name] for name in kernel.arg_names[n_args:]))
        return compiled
    compiled, constexprs = bound
    compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                 driver.active.get_current_stream(device), compiled.function,
                 compiled.packed_metadata, None, None, None, *tensors, *ints, *constexprs)
    return compiled


# FMA contraction (a*b - c as one fma) is what makes "s*log2e - r" one instruction; Triton 3.6
# enables it by default but warns that 3.10 will not (TRITON_DEFAULT_FP_FUSION), so it is
# requested explicitly. The interpreter takes no such option (numpy rounds each step).
_GPU_META = {} if _INTERPRETING else {"enable_fp_fusion": True}


def _small_n():
    from ganbench.kernels.attention import small_n  # imports this module's jit helpers

    return small_n


def _forward(q, k, v, options: Options = DEFAULT_OPTIONS, residual=None):
    """Launch the forward: returns O (B, N, Dv) contiguous in v's dtype and the natural-log LSE
    (B, N) fp32. ``residual=(x, gamma, y)``: also write y = x + gamma * O, where x and y are
    (B, N, Dv) views with the same strides and gamma a one-element tensor (the fused block)."""
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    p = plan(N, Dqk, Dv, options)
    cfg = p.cfg
    o = torch.empty((B, N, Dv), device=v.device, dtype=v.dtype)
    lse = torch.empty((B, N), device=v.device, dtype=torch.float32)
    x, gamma, y = residual if residual is not None else (o, lse, o)  # unused when not RESIDUAL
    tensors = (q, k, v, o, lse, x, y, gamma)
    ints = (*q.stride(), *k.stride(), *v.stride(), *o.stride(), *y.stride(), N, Dqk, Dv)
    if p.variant == "small-n":
        meta = dict(BLOCK_M=cfg["FWD_BLOCK_M"], N_PAD=cfg["N_PAD"], BLOCK_DQK=cfg["BLOCK_DQK"],
                    BLOCK_DV=cfg["BLOCK_DV"], UPCAST=_INTERPRETING, EVEN=N == cfg["N_PAD"],
                    EXP2=options.exp2, RESIDUAL=residual is not None,
                    num_warps=cfg["FWD_WARPS"], num_stages=cfg["FWD_STAGES"], **_GPU_META)
        grid = (triton.cdiv(N, cfg["FWD_BLOCK_M"]), B)
        _launch(_small_n()._small_fwd_kernel, grid, tensors, ints, meta, options.prebind)
        return o, lse
    meta = dict(BLOCK_M=cfg["FWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], UPCAST=_INTERPRETING, EVEN=N % cfg["BLOCK_N"] == 0,
                EXP2=options.exp2, RESIDUAL=residual is not None,
                num_warps=cfg["FWD_WARPS"], num_stages=cfg["FWD_STAGES"], **_GPU_META)
    grid = (triton.cdiv(N, cfg["FWD_BLOCK_M"]), triton.cdiv(Dv, cfg["BLOCK_DV"]), B)
    _launch(_fwd_kernel, grid, tensors, ints, meta, options.prebind)
    return o, lse


def _backward(q, k, v, o, lse, do, options: Options = DEFAULT_OPTIONS, grads=None,
              gamma=None, delta=None):
    """Launch the backward: returns dq, dk, dv in the inputs' dtype.

    ``grads=(dq, dk, dv)``: write into these (last dim contiguous; dq and dk with equal
    strides), else allocate contiguous ones. ``gamma`` (one-element tensor): every gradient is
    multiplied by it, i.e. the gradients for dO = gamma * do. ``delta`` ((B, N) fp32): receives
    rowsum(do * O). The last two serve the fused SAGAN block (block.py).

    Launch count matters more than arithmetic at SAGAN's sizes: on the H100 every kernel,
    eager and cuDNN included, took 0.24-0.83 ms per fwd+bwd at N <= 1024, batch 64, where the
    arithmetic and memory floors are 2-34 us (results/gpu-h100-80gb/README.md, kernels/
    attention/NOTES.md). So delta = rowsum(dO * O) is computed inside the kernels that use it
    (FlashAttention-2 spends a launch on it), and the whole backward is one launch (small-n,
    one-launch), two (two-kernel) or one plus a zero-fill (atomic).
    """
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    p = plan(N, Dqk, Dv, options)
    cfg = p.cfg
    if grads is None:
        grads = (torch.empty((B, N, Dqk), device=q.device, dtype=q.dtype),
                 torch.empty((B, N, Dqk), device=k.device, dtype=k.dtype),
                 torch.empty((B, N, Dv), device=v.device, dtype=v.dtype))
    dq, dk, dv = grads
    atomic = p.backward == "atomic"
    # atomic: dQ is summed over key blocks in fp32 (16-bit partial sums would lose bits), then
    # rounded once to q's dtype.
    dq_out = (torch.zeros((B, N, Dqk), device=q.device, dtype=torch.float32) if atomic else dq)
    common = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    flags = dict(UPCAST=_INTERPRETING, EXP2=options.exp2, SCALE=gamma is not None,
                 STORE_DELTA=delta is not None)
    g = gamma if gamma is not None else lse  # any tensor: unread when SCALE is off
    dl = delta if delta is not None else lse
    if p.variant == "small-n":
        meta = dict(BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], N_PAD=cfg["N_PAD"],
                    BLOCK_DQK=cfg["BLOCK_DQK"], BLOCK_DV=cfg["BLOCK_DV"], **flags,
                    ONE_M=cfg["N_PAD"] <= cfg["BWD_BLOCK_M"],
                    num_warps=cfg["BWD_WARPS"], num_stages=cfg["BWD_STAGES"], **_GPU_META)
        _launch(_small_n()._small_bwd_kernel, (B,), (q, k, v, o, do, lse, dq, dk, dv, g, dl),
                (*common, *dk.stride()[:2], *dv.stride()[:2], N, Dqk, Dv), meta, options.prebind)
        return dq, dk, dv
    even = N % cfg["BWD_BLOCK_M"] == 0 and N % cfg["BLOCK_N"] == 0  # no padded tile anywhere
    meta = dict(BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], EVEN=even, **flags,
                num_warps=cfg["BWD_WARPS"], num_stages=cfg["BWD_STAGES"], **_GPU_META)
    n_chunks = triton.cdiv(Dv, cfg["BLOCK_DV"])
    if p.backward == "one-launch":
        blocks = max(triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(N, cfg["BWD_BLOCK_M"]))
        _launch(_bwd_one_launch_kernel, (blocks, n_chunks, B),
                (q, k, v, o, do, lse, dq, dk, dv, g, dl),
                (*common, *dk.stride()[:2], *dv.stride()[:2], N, Dqk, Dv), meta, options.prebind)
        return dq, dk, dv
    _launch(_bwd_dkdv_kernel, (triton.cdiv(N, cfg["BLOCK_N"]), n_chunks, B),
            (q, k, v, o, do, lse, dk, dv, dq_out, g, dl),
            (*common, *dk.stride()[:2], *dv.stride()[:2], N, Dqk, Dv),
            dict(meta, ATOMIC_DQ=atomic), options.prebind)
    if atomic:
        if gamma is not None:
            dq_out = dq_out * gamma  # the kernel scaled dK and dV; the fp32 dQ sum is scaled here
        if dq.is_contiguous() and dq.dtype == torch.float32:
            return dq_out, dk, dv  # no copy for fp32
        dq.copy_(dq_out)  # one rounding to q's dtype
        return dq, dk, dv
    _launch(_bwd_dq_kernel, (triton.cdiv(N, cfg["BWD_BLOCK_M"]), B),
            (q, k, v, o, do, lse, dq, g, dl), (*common, *dq.stride()[:2], N, Dqk, Dv), meta,
            options.prebind)
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
# the second-order terms. Custom ops take schema types only: the options travel as one string
# (_options_to_str), the tile overrides inside it.
class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, options):
        o, lse = _forward(q, k, v, options)  # o is contiguous: the backward kernels index it so
        ctx.save_for_backward(q, k, v, o, lse)  # O(B*N*D): no N x N tensor is kept
        ctx.options = options
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
        return (*_backward(q, k, v, o, lse, do, ctx.options), None)


def _options_to_str(options: Options) -> str:
    return repr(tuple(options))


@functools.lru_cache(maxsize=64)
def _options_from_str(text: str) -> Options:
    import ast

    return Options(*ast.literal_eval(text))


@torch.library.custom_op("ganbench::triton_attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  options: str) -> tuple[torch.Tensor, torch.Tensor]:
    """O and the natural-log LSE; ``options`` is carried for the backward op (see _setup)."""
    return _forward(q, k, v, _options_from_str(options))  # o is contiguous: the backward relies on it


@_attention_op.register_fake
def _attention_op_shapes(q, k, v, options):
    B, N, _ = q.shape
    return (v.new_empty((B, N, v.shape[-1])), q.new_empty((B, N), dtype=torch.float32))


@torch.library.custom_op("ganbench::triton_attention_backward", mutates_args=())
def _attention_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                           lse: torch.Tensor, do: torch.Tensor,
                           options: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv, contiguous. No autograd is registered for it, so a double backward (e.g. a
    WGAN-GP penalty through D) raises instead of silently dropping second-order terms."""
    return tuple(t.contiguous() for t in _backward(q, k, v, o, lse, do,
                                                   _options_from_str(options)))


@_attention_backward_op.register_fake
def _attention_backward_op_shapes(q, k, v, o, lse, do, options):
    return tuple(torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))


def _setup(ctx, inputs, output):
    q, k, v, options = inputs
    o, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, o, lse)  # O(B*N*D): no N x N tensor is kept
    ctx.options = options


def _gradients(ctx, do, _dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = _attention_backward_op(q, k, v, o, lse, do, ctx.options)
    return dq, dk, dv, None


_attention_op.register_autograd(_gradients, setup_context=_setup)


def attend_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                  variant: str = "auto", backward: str = "auto", exp2: bool = True,
                  prebind: bool = True, tiles: Optional[dict] = None,
                  options: Optional[Options] = None) -> torch.Tensor:
    """softmax(q @ k^T) @ v without a 1/sqrt(d) scale, fused; differentiable in q, k and v.

    q, k: (B, N, Dqk), v: (B, N, Dv); one dtype among fp32, fp16, bf16 (fp32 accumulation);
    any strides; any N >= 1; Dqk <= 256; any Dv. Returns a contiguous (B, N, Dv) tensor in v's
    dtype. Runs on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (see
    :func:`why_triton_unavailable`). Memory: O(B * N * (Dqk + Dv)), never O(N^2).

    ``variant``: "auto" (small-n for N <= 256, else tiled), "small-n" (small_n.py; N <= 256)
    or "tiled". ``backward``: the tiled variant's dQ scheme, "auto" (= "one-launch"),
    "one-launch", "two-kernel" (both deterministic) or "atomic" (one pass over the scores; dQ
    varies between runs at fp32 rounding level): see the module docstring. ``exp2``: exponent
    as one FMA + exp2 (default) or tl.exp. ``prebind``: bind the compiled kernels once per
    configuration (CUDA). ``tiles`` overrides the per-shape tiles (:data:`TILE_CHOICES`); the
    result is the same up to summation order. ``options``: all of these, pre-checked (what
    :class:`TritonAttend` passes: the per-call checks are then skipped).
    """
    _check_inputs(q, k, v)
    if options is None:
        options = check_options(variant, backward, exp2, prebind, tiles)
    if torch.compiler.is_compiling():  # see "The op, as torch sees it" above
        o, _ = _attention_op(q, k, v, _options_to_str(options))
        return o
    return _TritonAttention.apply(q, k, v, options)


def sagan_layout_inputs(B: int, N: int, Dqk: int, Dv: int, dtype, device):
    """q, k, v and dO laid out as SAGAN's attention module produces them: a 1x1 conv's output
    (B, C, N) viewed as (B, N, C), strides (C*N, 1, N). Triton specializes on strides (== 1,
    divisible by 16), so compiling with another layout would compile a kernel the run never
    uses."""
    def make(d):
        return torch.randn(B, d, N, device=device, dtype=dtype).transpose(1, 2)

    return make(Dqk), make(Dqk), make(Dv), make(Dv)


class TritonAttend:
    """``attend(q, k, v)`` with its options bound, as the triton-attn factory returns it.

    Optional attributes of the attention contract (docs/plugins.md): ``prepare(shapes, dtype,
    device) -> seconds`` compiles the kernels for the given (B, N, Dqk, Dv) shapes ahead of the
    first step; ``options`` is the :class:`Options` it runs with.
    """

    def __init__(self, options: Options = DEFAULT_OPTIONS):
        self.options = options

    def __call__(self, q, k, v):
        return attend_triton(q, k, v, options=self.options)

    def __repr__(self):
        return f"TritonAttend({self.options})"

    def prepare(self, shapes, dtype, device) -> float:
        """Compile (and run once) forward and backward for each (B, N, Dqk, Dv) in ``shapes``,
        in SAGAN's input layout (:func:`sagan_layout_inputs`) and ``dtype`` (a torch dtype or
        "fp32"/"bf16"/"fp16"); returns the seconds spent. A no-op returning 0.0 off CUDA
        (the interpreter compiles nothing). Raises ValueError for a shape the options reject
        (variant='small-n' with N > 256) here, at planning time, not mid-run."""
        for shape in shapes:
            plan(int(shape[1]), int(shape[2]), int(shape[3]), self.options)
        if not str(device).startswith("cuda") or _INTERPRETING:
            return 0.0
        import time

        dtype = _DTYPES.get(dtype, dtype)
        start = time.perf_counter()
        for B, N, Dqk, Dv in {tuple(int(x) for x in s) for s in shapes}:
            q, k, v, do = sagan_layout_inputs(1, N, Dqk, Dv, dtype, device)
            o, lse = _forward(q, k, v, self.options)
            _backward(q, k, v, o, lse, do, self.options)
        torch.cuda.synchronize(device)
        return time.perf_counter() - start


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
