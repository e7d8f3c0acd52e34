"""The specification of SAGAN's attention op, in plain PyTorch, and its cost model.

Every attention kernel in ganbench (``eager-attn``, ``sdpa-attn``, ``compile-attn``,
``triton-attn``, third-party ones) is tested against :func:`attend_reference`, forward and all
three gradients. The cost helpers (FLOPs, bytes, exponentials) feed the benchmark's TFLOP/s,
GB/s and roofline columns.
"""

from __future__ import annotations

import torch

_SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def attend_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Single-head self-attention as SAGAN uses it, with no :math:`1/\sqrt{d}` scale.

    .. math::
        S = Q K^\top \in \mathbb{R}^{N \times N}, \qquad
        P_{ij} = \frac{\exp S_{ij}}{\sum_{j'} \exp S_{ij'}}, \qquad
        O = P V,

    batched over the leading dimension: ``q`` and ``k`` are :math:`(B, N, D_{qk})`, ``v`` is
    :math:`(B, N, D_v)` and the result is :math:`(B, N, D_v)`. Row :math:`i` of :math:`O` is a
    convex combination of the rows of :math:`V`, weighted by how well query :math:`i` matches
    every key (softmax over the key axis, ``dim=-1`` of :math:`S`).

    Behaviour notes:

    * SAGAN (Zhang et al. 2019, eq. 1) applies no temperature: the scores are raw dot products.
      With :math:`D_{qk} = 64` and unit-variance inputs they have standard deviation 8, so the
      softmax is sharp; it is computed with the max subtracted (``torch.softmax`` does this),
      so scores in the hundreds do not overflow.
    * ``float16`` and ``bfloat16`` inputs are computed in ``float32`` and the result is rounded
      once to ``v.dtype``: this is the accuracy a fused kernel with fp32 accumulation should
      reach, so it is the fair specification. ``float32`` and ``float64`` are computed as given
      (tests call this in ``float64`` to get a near-exact answer).
    * It materialises the :math:`B \times N \times N` score matrix: at :math:`N = 1024`,
      :math:`B = 64` that is 268 MB in fp32. It is the specification, not a fast path.
    * Differentiable in ``q``, ``k`` and ``v`` through autograd.

    Example::

        >>> q, k, v = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 4)
        >>> o = attend_reference(q, k, v)
        >>> o.shape
        torch.Size([2, 5, 4])
        >>> # with a constant V every row of O is that constant: the weights sum to one
        >>> ones = torch.ones(2, 5, 4)
        >>> torch.allclose(attend_reference(q, k, ones), ones)
        True
    """
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(
            f"attend expects q, k of shape (B, N, Dqk) and v of shape (B, N, Dv); "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    compute = torch.float32 if v.dtype in _SIXTEEN_BIT else v.dtype
    scores = torch.bmm(q.to(compute), k.to(compute).transpose(1, 2))  # (B, N, N)
    weights = torch.softmax(scores, dim=-1)                           # over keys
    return torch.bmm(weights, v.to(compute)).to(v.dtype)              # (B, N, Dv)


# ------------------------------------------------------------------------------------------
# Cost model (used for TFLOP/s, GB/s and roofline columns)
# ------------------------------------------------------------------------------------------
def attention_flops(B: int, N: int, Dqk: int, Dv: int, backward: bool = False) -> float:
    """Matmul FLOPs of one call (forward, or forward + backward when ``backward``).

    Forward: S = Q K^T costs 2*N*N*Dqk per batch element (one multiply and one add per term)
    and O = P V costs 2*N*N*Dv, so ``2*B*N*N*(Dqk + Dv)``; the softmax's O(N*N) exps are not
    counted, as in FlashAttention's convention (Dao et al. 2022, benchmarks section).
    Backward: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q are 2.0x the forward's matmuls;
    a fused kernel also recomputes S (0.5x when Dqk == Dv), which FlashAttention counts, giving
    the conventional backward = 2.5x forward. So ``backward=True`` returns 3.5x the forward.
    """
    forward = 2.0 * B * N * N * (Dqk + Dv)
    return forward * (1.0 + 2.5) if backward else forward


def attention_min_bytes(B: int, N: int, Dqk: int, Dv: int, element_size: int,
                        backward: bool = False) -> float:
    """The fewest bytes any implementation must move to and from memory for one call.

    Forward reads Q, K (B*N*Dqk each) and V (B*N*Dv) and writes O (B*N*Dv):
    ``element_size * B*N*(2*Dqk + 2*Dv)``. Backward additionally reads Q, K, V, O, dO and writes
    dQ, dK, dV: ``element_size * B*N*(4*Dqk + 4*Dv)`` (the LSE and delta vectors, 4 bytes per
    row, are ignored). Nothing N x N is counted: a fused kernel never stores it.
    """
    forward = element_size * B * N * (2 * Dqk + 2 * Dv)
    backward_extra = element_size * B * N * (4 * Dqk + 4 * Dv)
    return float(forward + (backward_extra if backward else 0))


def attention_exps(B: int, N: int, backward: bool = False) -> float:
    """The fewest exponentials one call computes (forward, or forward + backward).

    The softmax needs ``exp(S_ij - m_i)`` for each of the B*N*N scores: ``B*N*N`` forward. The
    backward needs P again (dV = P^T dO, dS = P * (dP - delta)); a kernel that does not store
    the N x N matrix P (a fused, FlashAttention-style kernel, the only kind this cost model
    describes: see :func:`attention_min_bytes`) must recompute it at least once, another
    ``B*N*N``, so ``backward=True`` returns ``2*B*N*N``. More is common: a backward that computes
    dK, dV and dQ in two passes over the scores recomputes P twice (3*B*N*N in all). An eager
    kernel that stores P does no backward exps, but pays N x N memory traffic instead.

    The exps run on the special-function units, whose rate is far below the tensor cores'
    (FlashAttention-3, Shah et al. 2024, sec. 3): when Dqk + Dv is small they, not the
    matmuls, bound the kernel. A kernel computing some exps with FMA polynomials instead of
    those units is not bound by this count.
    """
    forward = float(B * N * N)
    return 2.0 * forward if backward else forward
