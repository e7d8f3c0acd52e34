"""SAGAN attention for short sequences (N <= 256): every key of a batch element in one tile.

``softmax(q @ k^T) @ v`` with no scale, as :func:`..reference.attend_reference`. At N <= 256
all N keys fit in one register tile next to a block of query rows, so:

* **forward** (grid: query blocks x batch): S = q K^T over ALL keys at once, then an exact
  softmax (row max, exp, sum: no running max, no rescaling of an accumulator), then O = P V
  chunk by chunk over Dv with P kept on chip (P is computed once whatever Dv is). For
  N <= BLOCK_M (64 by default: D's 8x8 and 4x4 sites) one program owns the whole batch element.
* **backward** (grid: batch): ONE program per batch element computes dQ, dK and dV, so no
  other program ever touches its outputs: one launch, no atomics, bitwise deterministic.
  Pass 1 walks the query blocks: P (recomputed from the LSE), dP = dO V^T over all of Dv,
  delta = rowsum(dO * O), dS = P * (dP - delta); dQ of that block is complete at once
  (every key is in the tile), dK accumulates on chip. When one query block covers N, dV is
  P^T dO per Dv chunk in the same pass (one exponential per score for the whole backward).
  Otherwise pass 2 walks key blocks and Dv chunks for dV = P^T dO, recomputing P (at N = 256,
  Dv <= 128: one more exponential per score).

The cost is parallelism: the backward has only B programs (64 at batch 64, about half an
H100's or H200's 132 SMs), which is what removes every cross-program reduction. At these sizes
the call is launch-bound (NOTES.md), so one launch instead of two or three is the point.

Numerics are triton_attn's: tl.dot in fp32 with operands rounded to the input dtype, fp32
"ieee" dots, raw scores with exp2(s*log2e - r*log2e) (option exp2), natural-log LSE. Dqk is
padded with zeros to a power of two >= 16 (exact: zero terms add nothing to q . k), Dv is
looped in chunks of <= 128, N is padded to a power of two and masked.
"""

from __future__ import annotations

from ganbench.kernels.attention.triton_attn import (_dot, _exp_minus, _row_offset, tl,
                                                    triton)

SMALL_N_MAX = 256  # the largest N whose key tile (and a 32-row score tile) fits on chip


@triton.jit
def _small_fwd_kernel(Q, K, V, O, LSE, X, Y, GAMMA,
                      stride_qb, stride_qn, stride_qd,
                      stride_kb, stride_kn, stride_kd,
                      stride_vb, stride_vn, stride_vd,
                      stride_ob, stride_on, stride_od,
                      stride_yb, stride_yn, stride_yd,
                      N, DQK, DV,
                      BLOCK_M: tl.constexpr, N_PAD: tl.constexpr, BLOCK_DQK: tl.constexpr,
                      BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr, EVEN: tl.constexpr,
                      EXP2: tl.constexpr, RESIDUAL: tl.constexpr):
    # grid: (query blocks, batch). EVEN: N == N_PAD (no padded key). RESIDUAL: also writes
    # Y = X + gamma * O (the fused SAGAN block), X and Y sharing Y's strides.
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    DT = V.dtype.element_ty
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, N_PAD)
    offs_d = tl.arange(0, BLOCK_DQK)
    m_ok = offs_m < N
    n_ok = offs_n < N
    d_ok = offs_d < DQK

    q = tl.load(Q + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)              # (BLOCK_M, BLOCK_DQK)
    kT = tl.load(K + b * stride_kb + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                 mask=d_ok[:, None] & n_ok[None, :], other=0.0)             # (BLOCK_DQK, N_PAD)
    s = _dot(q, kT, DT, UPCAST)                                             # (BLOCK_M, N_PAD)
    if not EVEN:
        s = tl.where(n_ok[None, :], s, float("-inf"))
    m = tl.max(s, 1)                                  # the exact row max: every key is here
    p = _exp_minus(s, _row_offset(m, EXP2)[:, None], EXP2)
    l_row = tl.sum(p, 1)
    inv_l = 1.0 / l_row
    tl.store(LSE + b * N + offs_m, m + tl.log(l_row), mask=m_ok)  # natural-log units
    if RESIDUAL:
        gamma = tl.load(GAMMA).to(tl.float32)
    for start_v in range(0, DV, BLOCK_DV):  # P stays on chip; one chunk of Dv at a time
        offs_v = start_v + tl.arange(0, BLOCK_DV)
        v_ok = offs_v < DV
        v = tl.load(V + b * stride_vb + offs_n[:, None] * stride_vn + offs_v[None, :] * stride_vd,
                    mask=n_ok[:, None] & v_ok[None, :], other=0.0)          # (N_PAD, BLOCK_DV)
        o = _dot(p, v, DT, UPCAST) * inv_l[:, None]
        ok = m_ok[:, None] & v_ok[None, :]
        tl.store(O + b * stride_ob + offs_m[:, None] * stride_on + offs_v[None, :] * stride_od,
                 o.to(O.dtype.element_ty), mask=ok)
        if RESIDUAL:
            y_off = b * stride_yb + offs_m[:, None] * stride_yn + offs_v[None, :] * stride_yd
            x = tl.load(X + y_off, mask=ok, other=0.0).to(tl.float32)
            tl.store(Y + y_off, (x + gamma * o).to(Y.dtype.element_ty), mask=ok)


@triton.jit
def _small_bwd_kernel(Q, K, V, O, DO, LSE, DQ, DK, DV_OUT, GAMMA, DELTA,
                      stride_qb, stride_qn, stride_qd,
                      stride_kb, stride_kn, stride_kd,
                      stride_vb, stride_vn, stride_vd,
                      stride_dob, stride_don, stride_dod,
                      stride_gb, stride_gn, stride_hb, stride_hn,
                      N, DQK, DV,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, N_PAD: tl.constexpr,
                      BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                      EXP2: tl.constexpr, SCALE: tl.constexpr, STORE_DELTA: tl.constexpr,
                      ONE_M: tl.constexpr):
    # grid: (batch,). O is contiguous (B, N, DV); dQ and dK rows have strides (stride_gb,
    # stride_gn), dV rows (stride_hb, stride_hn), last dims contiguous. SCALE multiplies every
    # gradient by *GAMMA (the fused block's dO = gamma * dY; gradients are linear in dO);
    # STORE_DELTA writes delta_i = dO_i . O_i to the (B, N) fp32 DELTA (the block's dgamma).
    # ONE_M (N_PAD <= BLOCK_M): a single query block covers N, so P from pass 1 also gives dV.
    b = tl.program_id(0).to(tl.int64)
    DT = V.dtype.element_ty
    offs_n = tl.arange(0, N_PAD)
    offs_d = tl.arange(0, BLOCK_DQK)
    n_ok = offs_n < N
    d_ok = offs_d < DQK
    gamma = 1.0
    if SCALE:
        gamma = tl.load(GAMMA).to(tl.float32)

    k = tl.load(K + b * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=n_ok[:, None] & d_ok[None, :], other=0.0)              # (N_PAD, BLOCK_DQK)
    dk = tl.zeros([N_PAD, BLOCK_DQK], tl.float32)
    # pass 1: query blocks -> dQ (complete per block), dK (accumulated), dV if ONE_M
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < N
        q = tl.load(Q + b * stride_qb + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                    mask=m_ok[:, None] & d_ok[None, :], other=0.0)          # (BLOCK_M, BLOCK_DQK)
        lse = tl.load(LSE + b * N + offs_m, mask=m_ok, other=0.0)
        s = _dot(q, tl.trans(k), DT, UPCAST)                                # (BLOCK_M, N_PAD)
        p = _exp_minus(s, _row_offset(lse, EXP2)[:, None], EXP2)
        p = tl.where(m_ok[:, None] & n_ok[None, :], p, 0.0)  # padded rows and keys carry no P
        dp = tl.zeros([BLOCK_M, N_PAD], tl.float32)
        delta = tl.zeros([BLOCK_M], tl.float32)
        for start_v in range(0, DV, BLOCK_DV):  # dP = dO V^T over all of Dv, chunk by chunk
            offs_c = start_v + tl.arange(0, BLOCK_DV)
            c_ok = offs_c < DV
            doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_c[None, :] * stride_dod,
                          mask=m_ok[:, None] & c_ok[None, :], other=0.0)    # (BLOCK_M, BLOCK_DV)
            vc = tl.load(V + b * stride_vb + offs_n[:, None] * stride_vn + offs_c[None, :] * stride_vd,
                         mask=n_ok[:, None] & c_ok[None, :], other=0.0)     # (N_PAD, BLOCK_DV)
            oc = tl.load(O + b * N * DV + offs_m[:, None] * DV + offs_c[None, :],
                         mask=m_ok[:, None] & c_ok[None, :], other=0.0)
            dp += _dot(doc, tl.trans(vc), DT, UPCAST)
            delta += tl.sum(oc.to(tl.float32) * doc.to(tl.float32), 1)
            if ONE_M:  # all query rows are in this block: P^T dO is dV's whole chunk
                dvc = _dot(tl.trans(p), doc, DT, UPCAST) * gamma            # (N_PAD, BLOCK_DV)
                tl.store(DV_OUT + b * stride_hb + offs_n[:, None] * stride_hn + offs_c[None, :],
                         dvc.to(DV_OUT.dtype.element_ty), mask=n_ok[:, None] & c_ok[None, :])
        if STORE_DELTA:
            tl.store(DELTA + b * N + offs_m, delta, mask=m_ok)
        ds = p * (dp - delta[:, None])                                      # (BLOCK_M, N_PAD)
        dq = _dot(ds, k, DT, UPCAST) * gamma                                # every key: complete
        tl.store(DQ + b * stride_gb + offs_m[:, None] * stride_gn + offs_d[None, :],
                 dq.to(DQ.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
        dk += _dot(tl.trans(ds), q, DT, UPCAST)
    dk = dk * gamma
    tl.store(DK + b * stride_gb + offs_n[:, None] * stride_gn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=n_ok[:, None] & d_ok[None, :])
    if not ONE_M:
        # pass 2: dV = P^T dO per (key block, Dv chunk), P recomputed from q, k and the LSE
        for start_n in range(0, N, BLOCK_N):
            offs_j = start_n + tl.arange(0, BLOCK_N)
            j_ok = offs_j < N
            kj = tl.load(K + b * stride_kb + offs_j[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                         mask=j_ok[:, None] & d_ok[None, :], other=0.0)     # (BLOCK_N, BLOCK_DQK)
            for start_v in range(0, DV, BLOCK_DV):
                offs_c = start_v + tl.arange(0, BLOCK_DV)
                c_ok = offs_c < DV
                dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
                for start_m in range(0, N, BLOCK_M):
                    offs_m = start_m + tl.arange(0, BLOCK_M)
                    m_ok = offs_m < N
                    qT = tl.load(Q + b * stride_qb + offs_m[None, :] * stride_qn + offs_d[:, None] * stride_qd,
                                 mask=d_ok[:, None] & m_ok[None, :], other=0.0)  # (BLOCK_DQK, BLOCK_M)
                    lse = tl.load(LSE + b * N + offs_m, mask=m_ok, other=0.0)
                    sT = _dot(kj, qT, DT, UPCAST)                           # (BLOCK_N, BLOCK_M)
                    pT = _exp_minus(sT, _row_offset(lse, EXP2)[None, :], EXP2)
                    pT = tl.where(m_ok[None, :], pT, 0.0)
                    doc = tl.load(DO + b * stride_dob + offs_m[:, None] * stride_don + offs_c[None, :] * stride_dod,
                                  mask=m_ok[:, None] & c_ok[None, :], other=0.0)
                    dv += _dot(pT, doc, DT, UPCAST)
                dv = dv * gamma
                tl.store(DV_OUT + b * stride_hb + offs_j[:, None] * stride_hn + offs_c[None, :],
                         dv.to(DV_OUT.dtype.element_ty), mask=j_ok[:, None] & c_ok[None, :])
