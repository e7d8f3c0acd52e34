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

Numerics are the tiled kernels': every product through triton_common.dot (fp32 accumulation,
operands rounded to the input dtype, fp32 "ieee"), raw scores with exp2(s*log2e - r*log2e)
(option exp2), natural-log LSE. Dqk is padded with zeros to a power of two >= 16 (exact: zero
terms add nothing to q . k), Dv is looped in chunks of <= 128, N is padded to a power of two
and masked. Tiles: plan.small_n_config.

Layout: the two kernels, then their launchers :func:`forward` and :func:`backward`, which
triton_attn.py (the op) calls after :func:`..plan.plan` picks this variant.
"""

from __future__ import annotations

from ganbench.kernels.attention.launch import launch
from ganbench.kernels.attention.plan import Options
from ganbench.kernels.attention.triton_common import (GPU_META, INTERPRETING, backward_operands,
                                                      dot, exp_minus, forward_operands,
                                                      load_tile, row_offset, store_tile, tl,
                                                      triton)


# ------------------------------------------------------------------------------------------
# Kernels. Arguments: triton_common.forward_operands / backward_operands, then constexprs.
# ------------------------------------------------------------------------------------------
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
    Q += b * stride_qb
    K += b * stride_kb
    V += b * stride_vb
    O += b * stride_ob
    LSE += b * N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, N_PAD)
    offs_d = tl.arange(0, BLOCK_DQK)

    q = load_tile(Q, offs_m, offs_d, stride_qn, stride_qd, N, DQK)          # (BLOCK_M, BLOCK_DQK)
    kT = load_tile(K, offs_d, offs_n, stride_kd, stride_kn, DQK, N)         # (BLOCK_DQK, N_PAD)
    s = dot(q, kT, DT, UPCAST)                                              # (BLOCK_M, N_PAD)
    if not EVEN:
        s = tl.where((offs_n < N)[None, :], s, float("-inf"))
    m = tl.max(s, 1)                                  # the exact row max: every key is here
    p = exp_minus(s, row_offset(m, EXP2)[:, None], EXP2)
    l_row = tl.sum(p, 1)
    inv_l = 1.0 / l_row
    tl.store(LSE + offs_m, m + tl.log(l_row), mask=offs_m < N)  # natural-log units
    if RESIDUAL:
        X += b * stride_yb
        Y += b * stride_yb
        gamma = tl.load(GAMMA).to(tl.float32)
    for start_v in range(0, DV, BLOCK_DV):  # P stays on chip; one chunk of Dv at a time
        offs_v = start_v + tl.arange(0, BLOCK_DV)
        v = load_tile(V, offs_n, offs_v, stride_vn, stride_vd, N, DV)      # (N_PAD, BLOCK_DV)
        o = dot(p, v, DT, UPCAST) * inv_l[:, None]
        store_tile(O, o, offs_m, offs_v, stride_on, stride_od, N, DV)
        if RESIDUAL:
            x = load_tile(X, offs_m, offs_v, stride_yn, stride_yd, N, DV).to(tl.float32)
            store_tile(Y, x + gamma * o, offs_m, offs_v, stride_yn, stride_yd, N, DV)


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
    Q += b * stride_qb
    K += b * stride_kb
    V += b * stride_vb
    O += b * N * DV
    DO += b * stride_dob
    LSE += b * N
    DELTA += b * N
    DQ += b * stride_gb
    DK += b * stride_gb
    DV_OUT += b * stride_hb
    offs_n = tl.arange(0, N_PAD)
    offs_d = tl.arange(0, BLOCK_DQK)
    n_ok = offs_n < N
    gamma = 1.0
    if SCALE:
        gamma = tl.load(GAMMA).to(tl.float32)

    k = load_tile(K, offs_n, offs_d, stride_kn, stride_kd, N, DQK)          # (N_PAD, BLOCK_DQK)
    dk = tl.zeros([N_PAD, BLOCK_DQK], tl.float32)
    # pass 1: query blocks -> dQ (complete per block), dK (accumulated), dV if ONE_M
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < N
        q = load_tile(Q, offs_m, offs_d, stride_qn, stride_qd, N, DQK)      # (BLOCK_M, BLOCK_DQK)
        lse = tl.load(LSE + offs_m, mask=m_ok, other=0.0)
        s = dot(q, tl.trans(k), DT, UPCAST)                                 # (BLOCK_M, N_PAD)
        p = exp_minus(s, row_offset(lse, EXP2)[:, None], EXP2)
        p = tl.where(m_ok[:, None] & n_ok[None, :], p, 0.0)  # padded rows and keys carry no P
        dp = tl.zeros([BLOCK_M, N_PAD], tl.float32)
        delta = tl.zeros([BLOCK_M], tl.float32)
        for start_v in range(0, DV, BLOCK_DV):  # dP = dO V^T over all of Dv, chunk by chunk
            offs_c = start_v + tl.arange(0, BLOCK_DV)
            doc = load_tile(DO, offs_m, offs_c, stride_don, stride_dod, N, DV)  # (M, BLOCK_DV)
            vc = load_tile(V, offs_n, offs_c, stride_vn, stride_vd, N, DV)      # (N_PAD, BLOCK_DV)
            oc = load_tile(O, offs_m, offs_c, DV, 1, N, DV)
            dp += dot(doc, tl.trans(vc), DT, UPCAST)
            delta += tl.sum(oc.to(tl.float32) * doc.to(tl.float32), 1)
            if ONE_M:  # all query rows are in this block: P^T dO is dV's whole chunk
                dvc = dot(tl.trans(p), doc, DT, UPCAST) * gamma             # (N_PAD, BLOCK_DV)
                store_tile(DV_OUT, dvc, offs_n, offs_c, stride_hn, 1, N, DV)
        if STORE_DELTA:
            tl.store(DELTA + offs_m, delta, mask=m_ok)
        ds = p * (dp - delta[:, None])                                      # (BLOCK_M, N_PAD)
        dq = dot(ds, k, DT, UPCAST) * gamma                                 # every key: complete
        store_tile(DQ, dq, offs_m, offs_d, stride_gn, 1, N, DQK)
        dk += dot(tl.trans(ds), q, DT, UPCAST)
    dk = dk * gamma
    store_tile(DK, dk, offs_n, offs_d, stride_gn, 1, N, DQK)
    if not ONE_M:
        # pass 2: dV = P^T dO per (key block, Dv chunk), P recomputed from q, k and the LSE
        for start_n in range(0, N, BLOCK_N):
            offs_j = start_n + tl.arange(0, BLOCK_N)
            kj = load_tile(K, offs_j, offs_d, stride_kn, stride_kd, N, DQK)  # (BLOCK_N, BLOCK_DQK)
            for start_v in range(0, DV, BLOCK_DV):
                offs_c = start_v + tl.arange(0, BLOCK_DV)
                dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
                for start_m in range(0, N, BLOCK_M):
                    offs_m = start_m + tl.arange(0, BLOCK_M)
                    m_ok = offs_m < N
                    qT = load_tile(Q, offs_d, offs_m, stride_qd, stride_qn, DQK, N)  # (DQK, M)
                    lse = tl.load(LSE + offs_m, mask=m_ok, other=0.0)
                    sT = dot(kj, qT, DT, UPCAST)                            # (BLOCK_N, BLOCK_M)
                    pT = exp_minus(sT, row_offset(lse, EXP2)[None, :], EXP2)
                    pT = tl.where(m_ok[None, :], pT, 0.0)
                    doc = load_tile(DO, offs_m, offs_c, stride_don, stride_dod, N, DV)
                    dv += dot(pT, doc, DT, UPCAST)
                dv = dv * gamma
                store_tile(DV_OUT, dv, offs_j, offs_c, stride_hn, 1, N, DV)


# ------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------
def forward(q, k, v, o, lse, cfg: dict, options: Options, residual=None) -> None:
    """One launch writes o (contiguous (B, N, Dv)) and the natural-log LSE ((B, N) fp32) for
    q, k, v with N <= SMALL_N_MAX; ``cfg`` is plan.small_n_config's, ``residual`` as in
    triton_common.forward_operands."""
    B, N = q.shape[:2]
    pointers, ints = forward_operands(q, k, v, o, lse, residual)
    meta = dict(BLOCK_M=cfg["FWD_BLOCK_M"], N_PAD=cfg["N_PAD"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], UPCAST=INTERPRETING, EVEN=N == cfg["N_PAD"],
                EXP2=options.exp2, RESIDUAL=residual is not None,
                num_warps=cfg["FWD_WARPS"], num_stages=cfg["FWD_STAGES"], **GPU_META)
    grid = (triton.cdiv(N, cfg["FWD_BLOCK_M"]), B)
    launch(_small_fwd_kernel, grid, pointers, ints, meta, options.prebind)


def backward(q, k, v, o, lse, do, grads: tuple, cfg: dict, options: Options, gamma=None,
             delta=None) -> None:
    """One launch, one program per batch element, writes ``grads = (dq, dk, dv)`` (and
    ``delta`` if given); arguments as in triton_common.backward_operands."""
    pointers, ints = backward_operands(q, k, v, o, lse, do, *grads, gamma, delta)
    meta = dict(BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], N_PAD=cfg["N_PAD"],
                BLOCK_DQK=cfg["BLOCK_DQK"], BLOCK_DV=cfg["BLOCK_DV"], UPCAST=INTERPRETING,
                EXP2=options.exp2, SCALE=gamma is not None, STORE_DELTA=delta is not None,
                ONE_M=cfg["N_PAD"] <= cfg["BWD_BLOCK_M"],
                num_warps=cfg["BWD_WARPS"], num_stages=cfg["BWD_STAGES"], **GPU_META)
    launch(_small_bwd_kernel, (q.shape[0],), pointers, ints, meta, options.prebind)
