"""The tiled backward: dQ, dK, dV without ever storing an N x N tile, in three schemes.

P is recomputed tile by tile from q, k and the forward's LSE (``P_ij = exp(q_i . k_j -
LSE_i)``), then ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - delta)`` with ``delta_i =
dO_i . O_i``, ``dK = dS^T Q`` and ``dQ = dS K``. One kernel, :func:`_tiled_bwd_kernel`, holds
both halves of that work, each switched on by a constexpr:

* the key phase (KEY_PHASE): program (j, c) owns key block j and Dv chunk c; it writes dV for
  them and, when c == 0, dK for block j (dK needs dP over ALL of Dv, so that program loops over
  every Dv chunk for dP, and for delta from the same dO chunks);
* the query phase (QUERY_PHASE): program i (Dv chunk 0 only) writes dQ for query block i,
  summing dS K over the key blocks.

The ``backward=`` option picks how they are launched (:func:`backward`):

- ``"one-launch"`` (``auto``'s choice): both phases in one grid; program i does key block i,
  then query block i (the structure of Triton's fused-attention tutorial). The phases read
  only the forward's outputs and dO, never each other's results, so no program waits for
  another: one launch, no atomics, bitwise deterministic. P and the Dv-wide dP are computed
  twice (3 exponentials per score for forward + backward).
- ``"two-kernel"``: the same two phases as two launches of the same kernel.
- ``"atomic"``: the key phase alone, also adding its ``dS K`` share into an fp32 dQ buffer with
  atomic adds (ATOMIC_DQ), as FlashAttention-2's backward does: one pass over the N x N tiles
  instead of two (2 exponentials per score instead of 3, one dP instead of two), at the cost
  of B * N * N * Dqk / BLOCK_N atomic adds and run-to-run differences in dQ at fp32 rounding
  level (the adds land in any order).

delta is computed inside the kernel that needs it rather than by a launch of its own (which
FlashAttention-2 spends on it): at SAGAN's sizes launches cost more than arithmetic (NOTES.md,
section 1). Tiles: plan.tiled_config. Layout: the kernel, then its launcher :func:`backward`.
"""

from __future__ import annotations

import torch

from ganbench.kernels.attention.launch import launch
from ganbench.kernels.attention.plan import Options
from ganbench.kernels.attention.triton_common import (GPU_META, INTERPRETING, backward_operands,
                                                      dot, exp_minus, load_tile, row_offset,
                                                      store_tile, tl, triton)


@triton.jit
def _tiled_bwd_kernel(Q, K, V, O, DO, LSE, DQ, DK, DV_OUT, GAMMA, DELTA,
                      stride_qb, stride_qn, stride_qd,
                      stride_kb, stride_kn, stride_kd,
                      stride_vb, stride_vn, stride_vd,
                      stride_dob, stride_don, stride_dod,
                      stride_gb, stride_gn, stride_hb, stride_hn,
                      N, DQK, DV,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                      EVEN: tl.constexpr, EXP2: tl.constexpr, SCALE: tl.constexpr,
                      STORE_DELTA: tl.constexpr, KEY_PHASE: tl.constexpr,
                      QUERY_PHASE: tl.constexpr, ATOMIC_DQ: tl.constexpr):
    # Arguments: triton_common.backward_operands. grid: (blocks, Dv chunks, batch), where
    # blocks counts key blocks for the key phase, query blocks for the query phase, the larger
    # of the two when both run. EVEN: N is a multiple of both block sizes (no padded tile, the
    # masks on P compile out). SCALE: every gradient is multiplied by *GAMMA at the store (the
    # fused block: dO = gamma * dY, and the gradients are linear in dO). STORE_DELTA: the
    # (B, N) fp32 DELTA gets delta_i (the block's dgamma), written by the query phase when it
    # runs, else by the key-block-0 programs. ATOMIC_DQ: DQ is a contiguous fp32 (B, N, DQK)
    # buffer that the key phase adds into; otherwise dQ rows have dK's strides.
    pid = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    DT = V.dtype.element_ty
    Q += b * stride_qb
    K += b * stride_kb
    V += b * stride_vb
    O += b * N * DV  # contiguous
    DO += b * stride_dob
    LSE += b * N
    DELTA += b * N
    DK += b * stride_gb
    DV_OUT += b * stride_hb
    if ATOMIC_DQ:
        DQ += b * N * DQK
    else:
        DQ += b * stride_gb
    offs_d = tl.arange(0, BLOCK_DQK)

    if KEY_PHASE:
        if pid * BLOCK_N < N:  # a one-launch grid may have more query blocks than key blocks
            offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
            offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
            k = load_tile(K, offs_n, offs_d, stride_kn, stride_kd, N, DQK)  # (BLOCK_N, DQK)
            dk = tl.zeros([BLOCK_N, BLOCK_DQK], tl.float32)
            dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
            for start_m in range(0, N, BLOCK_M):
                offs_m = start_m + tl.arange(0, BLOCK_M)
                m_ok = offs_m < N
                qT = load_tile(Q, offs_d, offs_m, stride_qd, stride_qn, DQK, N)  # (DQK, BLOCK_M)
                lse = tl.load(LSE + offs_m, mask=m_ok, other=0.0)
                sT = dot(k, qT, DT, UPCAST)                                 # (BLOCK_N, BLOCK_M)
                pT = exp_minus(sT, row_offset(lse, EXP2)[None, :], EXP2)    # P^T, exact softmax
                if not EVEN:  # padded query rows (q = 0, LSE = 0) would give P = 1
                    pT = tl.where(m_ok[None, :], pT, 0.0)
                doc = load_tile(DO, offs_m, offs_v, stride_don, stride_dod, N, DV)  # (M, DV)
                dv += dot(pT, doc, DT, UPCAST)                              # dV = P^T dO
                if pid_v == 0:
                    dpT = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
                    delta = tl.zeros([BLOCK_M], tl.float32)
                    for start_v in range(0, DV, BLOCK_DV):  # dP^T = V dO^T over all of Dv
                        offs_c = start_v + tl.arange(0, BLOCK_DV)
                        vc = load_tile(V, offs_n, offs_c, stride_vn, stride_vd, N, DV)
                        doT = load_tile(DO, offs_c, offs_m, stride_dod, stride_don, DV, N)
                        dpT += dot(vc, doT, DT, UPCAST)       # (BLOCK_N, DV) @ (DV, BLOCK_M)
                        oT = load_tile(O, offs_c, offs_m, 1, DV, DV, N)
                        delta += tl.sum(oT.to(tl.float32) * doT.to(tl.float32), 0)  # dO_i . O_i
                    if STORE_DELTA:
                        if not QUERY_PHASE:  # else the query phase writes it
                            if pid == 0:  # every key block computes the same delta
                                tl.store(DELTA + offs_m, delta, mask=m_ok)
                    dsT = pT * (dpT - delta[None, :])                       # dS^T
                    q = tl.trans(qT)                                        # (BLOCK_M, BLOCK_DQK)
                    dk += dot(dsT, q, DT, UPCAST)                           # dK = dS^T Q
                    if ATOMIC_DQ:  # this key block's share of dQ = dS K; only the sum matters
                        dq = dot(tl.trans(dsT), k, DT, UPCAST)              # (BLOCK_M, BLOCK_DQK)
                        tl.atomic_add(DQ + offs_m[:, None] * DQK + offs_d[None, :], dq,
                                      mask=m_ok[:, None] & (offs_d < DQK)[None, :],
                                      sem="relaxed")
            if SCALE:
                gamma = tl.load(GAMMA).to(tl.float32)
                dv = dv * gamma
                dk = dk * gamma
            store_tile(DV_OUT, dv, offs_n, offs_v, stride_hn, 1, N, DV)
            if pid_v == 0:
                store_tile(DK, dk, offs_n, offs_d, stride_gn, 1, N, DQK)

    if QUERY_PHASE:
        if pid_v == 0:
            if pid * BLOCK_M < N:  # a one-launch grid may have more key blocks than query blocks
                offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
                m_ok = offs_m < N
                q = load_tile(Q, offs_m, offs_d, stride_qn, stride_qd, N, DQK)  # (BLOCK_M, DQK)
                lse_r = row_offset(tl.load(LSE + offs_m, mask=m_ok, other=0.0), EXP2)
                delta = tl.zeros([BLOCK_M], tl.float32)  # delta_i = dO_i . O_i, once per block
                for start_v in range(0, DV, BLOCK_DV):
                    offs_c = start_v + tl.arange(0, BLOCK_DV)
                    o = load_tile(O, offs_m, offs_c, DV, 1, N, DV)
                    doc = load_tile(DO, offs_m, offs_c, stride_don, stride_dod, N, DV)
                    delta += tl.sum(o.to(tl.float32) * doc.to(tl.float32), 1)
                if STORE_DELTA:
                    tl.store(DELTA + offs_m, delta, mask=m_ok)
                dq = tl.zeros([BLOCK_M, BLOCK_DQK], tl.float32)
                for start_n in range(0, N, BLOCK_N):
                    offs_n = start_n + tl.arange(0, BLOCK_N)
                    kT = load_tile(K, offs_d, offs_n, stride_kd, stride_kn, DQK, N)  # (DQK, N)
                    p = exp_minus(dot(q, kT, DT, UPCAST), lse_r[:, None], EXP2)  # (M, N)
                    if not EVEN:  # padded keys (k = 0) would give P = exp(-LSE)
                        p = tl.where((offs_n < N)[None, :], p, 0.0)
                    dp = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
                    for start_v in range(0, DV, BLOCK_DV):  # dP = dO V^T over all of Dv
                        offs_c = start_v + tl.arange(0, BLOCK_DV)
                        doc = load_tile(DO, offs_m, offs_c, stride_don, stride_dod, N, DV)
                        vT = load_tile(V, offs_c, offs_n, stride_vd, stride_vn, DV, N)
                        dp += dot(doc, vT, DT, UPCAST)        # (BLOCK_M, DV) @ (DV, BLOCK_N)
                    ds = p * (dp - delta[:, None])
                    dq += dot(ds, tl.trans(kT), DT, UPCAST)                 # dQ = dS K
                if SCALE:
                    dq = dq * tl.load(GAMMA).to(tl.float32)
                store_tile(DQ, dq, offs_m, offs_d, stride_gn, 1, N, DQK)


def backward(q, k, v, o, lse, do, grads: tuple, cfg: dict, options: Options, scheme: str,
             gamma=None, delta=None) -> tuple:
    """Launch the backward ``scheme`` ("one-launch", "two-kernel" or "atomic"; see the module
    docstring); ``grads = (dq, dk, dv)`` as in triton_common.backward_operands, ``cfg`` is
    plan.tiled_config's. Returns (dq, dk, dv): the given tensors, except that the atomic scheme
    returns its fp32 dQ sum itself when dq is a contiguous fp32 tensor (no copy).

    Launches: one (one-launch), two (two-kernel), or one plus a zero-fill of the dQ buffer
    (atomic), plus a cast to q's dtype for 16-bit atomic dQ.
    """
    B, N = q.shape[:2]
    dq, dk, dv = grads
    atomic = scheme == "atomic"
    # atomic: dQ is summed over key blocks in fp32 (16-bit partial sums would lose bits), then
    # rounded once to q's dtype.
    dq_out = torch.zeros((B, N, q.shape[2]), device=q.device, dtype=torch.float32) if atomic else dq
    pointers, ints = backward_operands(q, k, v, o, lse, do, dq_out, dk, dv, gamma, delta)
    even = N % cfg["BWD_BLOCK_M"] == 0 and N % cfg["BLOCK_N"] == 0  # no padded tile anywhere
    meta = dict(BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], UPCAST=INTERPRETING, EVEN=even, EXP2=options.exp2,
                SCALE=gamma is not None, STORE_DELTA=delta is not None,
                num_warps=cfg["BWD_WARPS"], num_stages=cfg["BWD_STAGES"], **GPU_META)
    key_blocks = triton.cdiv(N, cfg["BLOCK_N"])
    query_blocks = triton.cdiv(N, cfg["BWD_BLOCK_M"])
    chunks = triton.cdiv(v.shape[2], cfg["BLOCK_DV"])
    if scheme == "one-launch":
        launch(_tiled_bwd_kernel, (max(key_blocks, query_blocks), chunks, B), pointers, ints,
               dict(meta, KEY_PHASE=True, QUERY_PHASE=True, ATOMIC_DQ=False), options.prebind)
        return dq, dk, dv
    launch(_tiled_bwd_kernel, (key_blocks, chunks, B), pointers, ints,
           dict(meta, KEY_PHASE=True, QUERY_PHASE=False, ATOMIC_DQ=atomic), options.prebind)
    if not atomic:  # two-kernel
        launch(_tiled_bwd_kernel, (query_blocks, 1, B), pointers, ints,
               dict(meta, KEY_PHASE=False, QUERY_PHASE=True, ATOMIC_DQ=False), options.prebind)
        return dq, dk, dv
    if gamma is not None:
        dq_out = dq_out * gamma  # the kernel scaled dK and dV; the fp32 dQ sum is scaled here
    if dq.is_contiguous() and dq.dtype == torch.float32:
        return dq_out, dk, dv  # no copy for fp32
    dq.copy_(dq_out)  # one rounding to q's dtype
    return dq, dk, dv
