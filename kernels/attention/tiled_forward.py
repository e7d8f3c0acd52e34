"""The tiled forward (N > 256, or ``variant="tiled"``): FlashAttention-2's (Dao 2023).

Each program owns a block of query rows and one chunk of Dv columns and streams over the key
blocks with an online softmax: a running row max m, a running sum l of exp(s - m) and an
accumulator of exp(s - m) v, both rescaled by exp(m_old - m_new) whenever the max grows. It
writes O and the row's log-sum-exp LSE = m + log(l) in natural-log units, which every backward
(tiled_backward.py) reads to recompute P exactly. With ``residual`` it also writes SAGAN's
y = x + gamma * o (the fused block, block.py). Tiles: plan.tiled_config.

Layout: the kernel, then its launcher :func:`forward`, which triton_attn.py calls.
"""

from __future__ import annotations

from ganbench.kernels.attention.launch import launch
from ganbench.kernels.attention.plan import Options
from ganbench.kernels.attention.triton_common import (GPU_META, INTERPRETING, dot, exp_minus,
                                                      forward_operands, load_tile, row_offset,
                                                      store_tile, tl, triton)


@triton.jit
def _tiled_fwd_kernel(Q, K, V, O, LSE, X, Y, GAMMA,
                      stride_qb, stride_qn, stride_qd,
                      stride_kb, stride_kn, stride_kd,
                      stride_vb, stride_vn, stride_vd,
                      stride_ob, stride_on, stride_od,
                      stride_yb, stride_yn, stride_yd,
                      N, DQK, DV,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, UPCAST: tl.constexpr,
                      EVEN: tl.constexpr, EXP2: tl.constexpr, RESIDUAL: tl.constexpr):
    # Arguments: triton_common.forward_operands. grid: (query blocks, Dv chunks, batch).
    # EVEN: N % BLOCK_N == 0, so no key tile is padded and the score mask (a select per score)
    # is compiled out; SAGAN's N are powers of two. RESIDUAL (the fused SAGAN block): also
    # writes Y = X + gamma * O, X and Y sharing strides.
    pid_m = tl.program_id(0)
    pid_v = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    DT = V.dtype.element_ty
    Q += b * stride_qb
    K += b * stride_kb
    V += b * stride_vb
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_DQK)  # Dqk padded to BLOCK_DQK >= 16 with zeros: q . k unchanged
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)

    q = load_tile(Q, offs_m, offs_d, stride_qn, stride_qd, N, DQK)          # (BLOCK_M, BLOCK_DQK)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max of the raw scores
    l_i = tl.zeros([BLOCK_M], tl.float32)                # running sum of exp(s - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)      # running sum of exp(s - m_i) * v
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kT = load_tile(K, offs_d, offs_n, stride_kd, stride_kn, DQK, N)     # (BLOCK_DQK, BLOCK_N)
        s = dot(q, kT, DT, UPCAST)                                          # (BLOCK_M, BLOCK_N)
        if not EVEN:
            s = tl.where((offs_n < N)[None, :], s, float("-inf"))  # every block has a real key
        m_new = tl.maximum(m_i, tl.max(s, 1))
        r = row_offset(m_new, EXP2)
        alpha = exp_minus(m_i, r, EXP2)  # rescales what was summed
        p = exp_minus(s, r[:, None], EXP2)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_tile(V, offs_n, offs_v, stride_vn, stride_vd, N, DV)      # (BLOCK_N, BLOCK_DV)
        acc = acc * alpha[:, None] + dot(p, v, DT, UPCAST)
        m_i = m_new

    o = acc / l_i[:, None]
    store_tile(O + b * stride_ob, o, offs_m, offs_v, stride_on, stride_od, N, DV)
    if RESIDUAL:
        x = load_tile(X + b * stride_yb, offs_m, offs_v, stride_yn, stride_yd, N, DV)
        gamma = tl.load(GAMMA).to(tl.float32)
        store_tile(Y + b * stride_yb, x.to(tl.float32) + gamma * o, offs_m, offs_v, stride_yn,
                   stride_yd, N, DV)
    if pid_v == 0:  # every Dv chunk computes the same LSE; one writes it (natural-log units)
        tl.store(LSE + b * N + offs_m, m_i + tl.log(l_i), mask=offs_m < N)


def forward(q, k, v, o, lse, cfg: dict, options: Options, residual=None) -> None:
    """One launch writes o (contiguous (B, N, Dv)) and the natural-log LSE ((B, N) fp32);
    ``cfg`` is plan.tiled_config's, ``residual`` as in triton_common.forward_operands."""
    B, N = q.shape[:2]
    pointers, ints = forward_operands(q, k, v, o, lse, residual)
    meta = dict(BLOCK_M=cfg["FWD_BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_DQK=cfg["BLOCK_DQK"],
                BLOCK_DV=cfg["BLOCK_DV"], UPCAST=INTERPRETING, EVEN=N % cfg["BLOCK_N"] == 0,
                EXP2=options.exp2, RESIDUAL=residual is not None,
                num_warps=cfg["FWD_WARPS"], num_stages=cfg["FWD_STAGES"], **GPU_META)
    grid = (triton.cdiv(N, cfg["FWD_BLOCK_M"]), triton.cdiv(v.shape[2], cfg["BLOCK_DV"]), B)
    launch(_tiled_fwd_kernel, grid, pointers, ints, meta, options.prebind)
