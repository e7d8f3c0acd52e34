"""SAGAN's whole self-attention block, fused around the Triton attention kernels.

The block (plugins/sagan.py, ``SelfAttention``) computes, for x of shape (B, C, H, W) and
N = H * W:

    q = Wq x + bq,  k = Wk x + bk  (C -> Dqk = C/8),   v = Wv x + bv  (C -> C)   1x1 convs
    o = softmax(q^T k) v over keys, no scale
    y = x + gamma * o

:func:`fused_block` does the same with fewer launches (unfused eager: three convs, the
attention, a reshape copy, a multiply and an add forward; about twice that backward):

* forward: the three weight matrices concatenated into one (C', C) = (2 Dqk + C, C) matrix and
  the three projections done as ONE matmul (a 1x1 conv1d with the concatenated bias), then one
  Triton launch that computes the attention and writes y = x + gamma * o directly in x's
  (B, C, N) layout (kernel epilogue). Launches: 2 small concatenations + 1 matmul + 1 Triton.
* backward: one Triton launch (small-n or one-launch tiled) reads dY in place as dO (no
  gamma * dY tensor: the gradients are linear in dO, so the kernel scales dq, dk and dv by
  gamma at the store) and writes dq, dk, dv side by side into one (B, N, C') buffer, plus
  delta_i = dY_i . o_i, whose sum is dgamma. Then dx = dY + W^T d(qkv) is one batched matmul,
  dW = sum_b d(qkv)_b x_b^T one batched matmul and a sum, db one sum, dgamma one sum.

Gradients for x, all three weights and biases and gamma; parameters stay the module's own
(same state_dict keys: the block takes plain tensors). Spectral norm is not applied to SAGAN's
attention 1x1s (plugins/sagan.py), so plain weights are the whole story. Precision: as
triton_attn (fp32 accumulation, operands rounded to the compute dtype); under autocast the
projections and attention run in the autocast dtype as the eager module's convs would, and y
is in promote(x.dtype, gamma.dtype) as ``x + gamma * o`` is.

Not fused (yet): the projections run as a cuBLAS/cuDNN matmul, not inside the attention
kernel; at N <= 256 one program per batch element could also compute q, k, v from x on chip
(one launch forward). Next step once a GPU says how much the remaining launches cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganbench.kernels.attention import triton_attn
from ganbench.kernels.attention.plan import DEFAULT_OPTIONS, Options
from ganbench.kernels.attention.triton_common import INTERPRETING, why_triton_unavailable


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class _FusedBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, wq, bq, wk, bk, wv, bv, gamma, options, cdt):
        B, C, H, W = x.shape
        N, Dqk = H * W, wq.shape[0]
        xc = x.reshape(B, C, N)
        w = torch.cat([wq.reshape(Dqk, C), wk.reshape(Dqk, C), wv.reshape(C, C)]).to(cdt)
        b = torch.cat([bq, bk, bv]).to(cdt)
        xin = xc.to(cdt)
        qkv = F.conv1d(xin, w[:, :, None], b)           # (B, C', N): all three projections
        qkv_t = qkv.transpose(1, 2)                      # (B, N, C') view, strides (C'N, 1, N)
        q, k, v = qkv_t[..., :Dqk], qkv_t[..., Dqk:2 * Dqk], qkv_t[..., 2 * Dqk:]
        y = torch.empty((B, C, N), device=x.device, dtype=torch.promote_types(x.dtype,
                                                                             gamma.dtype))
        o, lse = triton_attn.forward(q, k, v, options,
                                     residual=(xc.transpose(1, 2), gamma, y.transpose(1, 2)))
        ctx.save_for_backward(xin, w, qkv, o, lse, gamma)
        ctx.options, ctx.shapes = options, (B, C, H, W, Dqk)
        ctx.dtypes = (x.dtype, wq.dtype, bq.dtype, gamma.dtype)
        return y.view(B, C, H, W)

    @staticmethod
    def backward(ctx, dy):
        if torch.is_grad_enabled():
            raise RuntimeError("the fused attention block has no second derivative (double "
                               "backward, e.g. a gradient penalty through D); use eager-attn")
        xin, w, qkv, o, lse, gamma = ctx.saved_tensors
        B, C, H, W, Dqk = ctx.shapes
        x_dtype, w_dtype, b_dtype, g_dtype = ctx.dtypes
        N, Cp = H * W, w.shape[0]
        dy = dy.reshape(B, C, N)
        qkv_t = qkv.transpose(1, 2)
        q, k, v = qkv_t[..., :Dqk], qkv_t[..., Dqk:2 * Dqk], qkv_t[..., 2 * Dqk:]
        dqkv = torch.empty((B, N, Cp), device=qkv.device, dtype=qkv.dtype)
        delta = torch.empty((B, N), device=qkv.device, dtype=torch.float32)
        triton_attn.backward(q, k, v, o, lse, dy.transpose(1, 2), ctx.options,
                             grads=(dqkv[..., :Dqk], dqkv[..., Dqk:2 * Dqk], dqkv[..., 2 * Dqk:]),
                             gamma=gamma, delta=delta)
        dgamma = delta.sum().reshape(1).to(g_dtype)      # d/dgamma of sum(dy * o)
        dqkv_t = dqkv.transpose(1, 2)                     # (B, C', N)
        dx = torch.baddbmm(dy.to(w.dtype), w.t().expand(B, C, Cp), dqkv_t)  # dy + W^T d(qkv)
        dw = torch.bmm(dqkv_t, xin.transpose(1, 2)).sum(0)  # (C', C)
        db = dqkv.sum((0, 1))
        dw, db = dw.to(w_dtype), db.to(b_dtype)
        return (dx.to(x_dtype).view(B, C, H, W),
                dw[:Dqk].reshape(Dqk, C, 1, 1), db[:Dqk],
                dw[Dqk:2 * Dqk].reshape(Dqk, C, 1, 1), db[Dqk:2 * Dqk],
                dw[2 * Dqk:].reshape(C, C, 1, 1), db[2 * Dqk:],
                dgamma, None, None)


def fused_block(x, wq, bq, wk, bk, wv, bv, gamma,
                options: Options = DEFAULT_OPTIONS) -> torch.Tensor:
    """y = x + gamma * attend(Wq x + bq, Wk x + bk, Wv x + bv) for 1x1-conv weights.

    x: (B, C, H, W); wq, wk: (Dqk, C, 1, 1); wv: (C, C, 1, 1) (nn.Conv2d weights as stored);
    bq, bk: (Dqk,); bv: (C,); gamma: (1,). Differentiable in all of them (no double backward).
    The attention kernels are chosen by ``options`` per N, as for attend_triton.
    """
    B, C, H, W = x.shape
    if wv.shape[:2] != (C, C) or wq.shape[1] != C or wk.shape != wq.shape:
        raise ValueError(f"fused_block: weights {tuple(wq.shape)}, {tuple(wk.shape)}, "
                         f"{tuple(wv.shape)} do not fit x {tuple(x.shape)}")
    cdt = _compute_dtype(x)
    if cdt not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"fused_block computes in fp32, fp16 or bf16; got {cdt}")
    reason = why_triton_unavailable(str(x.device))
    if reason is not None:
        raise RuntimeError(f"fused_block cannot run on {x.device}: {reason}")
    with torch.autocast(x.device.type, enabled=False):
        return _FusedBlock.apply(x.contiguous(), wq, bq, wk, bk, wv, bv, gamma, options, cdt)


class TritonBlockAttend(triton_attn.TritonAttend):
    """triton-attn's attend plus ``block``: the fused SAGAN block (docs/plugins.md).

    ``block(x, wq, bq, wk, bk, wv, bv, gamma) -> y`` is the optional attribute an architecture
    calls instead of its own 1x1 convs + attend + residual when the kernel offers it.
    ``prepare`` also compiles the block's layouts.
    """

    def block(self, x, wq, bq, wk, bk, wv, bv, gamma):
        return fused_block(x, wq, bq, wk, bk, wv, bv, gamma, self.options)

    def prepare(self, shapes, dtype, device) -> float:
        """As TritonAttend.prepare, for the block's layouts: (B, N, Dqk, Dv) with Dv = C,
        run through the fused block once on a batch of 1 (fwd + bwd)."""
        seconds = super().prepare(shapes, dtype, device)  # the plain op (SAGAN's recording path)
        if not str(device).startswith("cuda") or INTERPRETING:
            return seconds
        import math
        import time

        dtype = triton_attn.DTYPES.get(dtype, dtype)
        start = time.perf_counter()
        for _, N, Dqk, C in {tuple(int(x) for x in s) for s in shapes}:
            side = math.isqrt(N)
            h, w_ = (side, N // side) if side * side == N else (1, N)
            x = torch.randn(1, C, h, w_, device=device, requires_grad=True)
            params = [torch.randn(*s, device=device, requires_grad=True) for s in
                      ((Dqk, C, 1, 1), (Dqk,), (Dqk, C, 1, 1), (Dqk,), (C, C, 1, 1), (C,), (1,))]
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                y = self.block(x, *params)
            y.backward(torch.randn_like(y))  # a dense dY, as a loss sends (sum() would be stride 0)
        torch.cuda.synchronize(device)
        return seconds + time.perf_counter() - start
