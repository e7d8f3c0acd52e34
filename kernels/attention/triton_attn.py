"""Fused SAGAN attention in Triton: ``attend_triton(q, k, v) = softmax(q @ k^T) @ v``, no scale.

The contract is :func:`ganbench.kernels.attention.reference.attend_reference`. The N x N score
matrix is never stored, forward or backward. This module is the op as torch sees it; the
kernels live beside it, one file per job:

* small_n.py: all keys of a batch element in one tile, exact softmax, and a backward of ONE
  launch with one program per batch element (no atomics). ``variant="auto"`` runs it for
  N <= 256 (NOTES.md, section 4 says why);
* tiled_forward.py: FlashAttention-2's forward (Dao 2023), online softmax over key blocks,
  O plus the row's log-sum-exp (LSE);
* tiled_backward.py: P recomputed from q, k and the LSE, dQ by one of three schemes
  (``backward=``: "one-launch", the default, "two-kernel" or "atomic");
* plan.py: the options and, per shape, which variant and tiles run (:func:`plan.plan`);
* triton_common.py: the helpers every kernel file shares (dot, exponentials, tile loads, the
  kernels' argument lists); launch.py: the pre-bound launcher.

Here: :func:`forward` and :func:`backward`, which allocate the outputs and call the planned
variant's launchers (the fused block, block.py, calls them too); the autograd.Function and the
two torch custom ops; :func:`attend_triton`; :class:`TritonAttend`, what the triton-attn
factory returns.

Precision: every tl.dot accumulates in fp32 with operands rounded to the input dtype
(triton_common.dot): fp16/bf16 inputs run 16-bit tensor-core dots on a GPU; fp32 inputs use
``input_precision="ieee"`` (no TF32), so tests hold fp32 to ~1e-5 and fp32 is the debugging
path. (On the one H100 run so far the fp32 CUDA tests failed, cause not yet known: NOTES.md,
section 3; fp32 passes under the interpreter.) Exponentials: one FMA and one exp2 per score
(``exp2=False``: tl.exp); the LSE is in natural-log units either way.
"""

from __future__ import annotations

import ast
import functools
import time
from typing import Optional

import torch

from ganbench.kernels.attention import small_n, tiled_backward, tiled_forward
from ganbench.kernels.attention.plan import (BACKWARDS, DEFAULT_OPTIONS, Options,
                                             check_options, plan)
from ganbench.kernels.attention.triton_common import (INTERPRETING, MAX_DQK,
                                                      why_triton_unavailable)

# The public API. BACKWARDS, Options, check_options and why_triton_unavailable are defined in
# plan.py and triton_common.py and re-exported here because the plugin (plugins/attention.py),
# scripts/profile_attention.py and the plugin tests import them from this module.
__all__ = ["attend_triton", "TritonAttend", "forward", "backward", "sagan_layout_inputs",
           "DTYPES", "BACKWARDS", "Options", "check_options", "why_triton_unavailable"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------------
# Launchers: the planned variant's kernels, on outputs allocated here
# ------------------------------------------------------------------------------------------
def forward(q, k, v, options: Options = DEFAULT_OPTIONS, residual=None):
    """Launch the forward: returns O (B, N, Dv) contiguous in v's dtype and the natural-log LSE
    (B, N) fp32. ``residual=(x, gamma, y)``: also write y = x + gamma * O, where x and y are
    (B, N, Dv) views with the same strides and gamma a one-element tensor (the fused block).
    One Triton launch; the inputs are not checked (attend_triton checks them)."""
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    p = plan(N, Dqk, Dv, options)
    o = torch.empty((B, N, Dv), device=v.device, dtype=v.dtype)
    lse = torch.empty((B, N), device=v.device, dtype=torch.float32)
    variant = small_n if p.variant == "small-n" else tiled_forward
    variant.forward(q, k, v, o, lse, p.cfg, options, residual)
    return o, lse


def backward(q, k, v, o, lse, do, options: Options = DEFAULT_OPTIONS, grads=None,
             gamma=None, delta=None):
    """Launch the backward: returns dq, dk, dv in the inputs' dtype.

    ``o`` and ``lse`` are :func:`forward`'s (o contiguous). ``grads=(dq, dk, dv)``: write into
    these (last dim contiguous; dq and dk with equal strides), else allocate contiguous ones.
    ``gamma`` (one-element tensor): every gradient is multiplied by it, i.e. the gradients for
    dO = gamma * do. ``delta`` ((B, N) fp32): receives rowsum(do * O). The last two serve the
    fused SAGAN block (block.py).

    Launch count matters more than arithmetic at SAGAN's sizes: on the H100 every kernel,
    eager and cuDNN included, took 0.24-0.83 ms per fwd+bwd at N <= 1024, batch 64, where the
    arithmetic and memory floors are 2-34 us (results/gpu-h100-80gb/README.md, NOTES.md). So
    the whole backward is one launch (small-n, one-launch), two (two-kernel) or one plus a
    zero-fill (atomic).
    """
    B, N, Dqk = q.shape
    Dv = v.shape[-1]
    p = plan(N, Dqk, Dv, options)
    if grads is None:
        grads = (torch.empty((B, N, Dqk), device=q.device, dtype=q.dtype),
                 torch.empty((B, N, Dqk), device=k.device, dtype=k.dtype),
                 torch.empty((B, N, Dv), device=v.device, dtype=v.dtype))
    if p.variant == "small-n":
        small_n.backward(q, k, v, o, lse, do, grads, p.cfg, options, gamma, delta)
        return grads
    return tiled_backward.backward(q, k, v, o, lse, do, grads, p.cfg, options, p.backward,
                                   gamma, delta)


# ------------------------------------------------------------------------------------------
# The op, as torch sees it
# ------------------------------------------------------------------------------------------
# Two routes to the same launchers (forward, backward):
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
        o, lse = forward(q, k, v, options)  # o is contiguous: the backward kernels index it so
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
        return (*backward(q, k, v, o, lse, do, ctx.options), None)


def _options_to_str(options: Options) -> str:
    return repr(tuple(options))


@functools.lru_cache(maxsize=64)
def _options_from_str(text: str) -> Options:
    return Options(*ast.literal_eval(text))


@torch.library.custom_op("ganbench::triton_attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  options: str) -> tuple[torch.Tensor, torch.Tensor]:
    """O and the natural-log LSE; ``options`` is carried for the backward op (see _setup)."""
    return forward(q, k, v, _options_from_str(options))  # o contiguous: the backward needs it


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
    return tuple(t.contiguous() for t in backward(q, k, v, o, lse, do,
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
    if q.shape[-1] > MAX_DQK:
        raise ValueError(f"attend_triton supports Dqk <= {MAX_DQK}; got {q.shape[-1]}")
    reason = why_triton_unavailable(str(q.device))
    if reason is not None:
        raise RuntimeError(f"attend_triton cannot run on {q.device}: {reason}")


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
    varies between runs at fp32 rounding level): see tiled_backward.py. ``exp2``: exponent
    as one FMA + exp2 (default) or tl.exp. ``prebind``: bind the compiled kernels once per
    configuration (CUDA; launch.py). ``tiles`` overrides the per-shape tiles
    (plan.TILE_CHOICES); the result is the same up to summation order. ``options``: all of
    these, pre-checked (what :class:`TritonAttend` passes: the per-call checks are skipped).
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
        if not str(device).startswith("cuda") or INTERPRETING:
            return 0.0
        dtype = DTYPES.get(dtype, dtype)
        start = time.perf_counter()
        for B, N, Dqk, Dv in {tuple(int(x) for x in s) for s in shapes}:
            q, k, v, do = sagan_layout_inputs(1, N, Dqk, Dv, dtype, device)
            o, lse = forward(q, k, v, self.options)
            backward(q, k, v, o, lse, do, self.options)
        torch.cuda.synchronize(device)
        return time.perf_counter() - start
