"""attend_triton against the float64 reference: forward and dq, dk, dv.

On a CPU-only machine these run under the Triton interpreter (tests/kernels/conftest.py), which
executes the same kernel code tile by tile in numpy; with CUDA present they run compiled.
Batch sizes are 1-2 so the interpreter stays fast (the whole file takes well under a minute
on 2 cores); batch only multiplies the grid, and B=2 checks the batch stride.
"""

import functools

import pytest
import torch

from ganbench.kernels.attention import (small_n, tiled_backward, tiled_forward, triton_attn,
                                        triton_common)
from ganbench.kernels.attention.plan import SMALL_N_MAX, check_tiles, small_n_config
from ganbench.kernels.attention.reference import attend_reference

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

# (dtype, atol, rtol), chosen together. Measured under the interpreter, which rounds every tl.dot
# operand to the input dtype as the GPU does (P and dS included), over the shapes below and two
# seeds, the smallest t passing atol=rtol=t was: fp32 3.5e-6, fp16 1.8e-3, bf16 2.7e-2. PyTorch's
# own eager attention in the same 16-bit dtype (softmax(q k^T) v, bf16 matmuls) needs 3.7e-3
# (fp16) and 2.4e-2 (bf16) against the same float64 reference: the kernel is as accurate as that.
TOLERANCES = [
    # fp32: unit roundoff 6e-8; dot products of <= 1024 terms and the dP - delta cancellation
    # leave ~1e-6 (needs 3.5e-6). "ieee" tl.dot (no TF32) keeps this tight on the GPU too.
    (torch.float32, 2e-5, 2e-5),
    # fp16: unit roundoff 4.9e-4; the output is rounded once (<= 1 unit) and P, dS, O (through
    # delta) are rounded to 16 bits inside the backward: ~4 units observed, 10 allowed.
    (torch.float16, 5e-3, 5e-3),
    # bf16: unit roundoff 3.9e-3 (8-bit significand), the same roundings as fp16 with 8x the
    # unit: ~7 units observed, 13 allowed (a masking or LSE bug gives errors of order 1).
    (torch.bfloat16, 5e-2, 5e-2),
]
TOL_IDS = ["fp32", "fp16", "bf16"]

# (B, N, Dqk, Dv): SAGAN's attention sites on 64x64 digits (G after 16x16 and 32x32, D at 8x8
# and 4x4: N = H*W, Dqk = C/8, Dv = C), then odd shapes for masked tails.
SHAPES = {
    "G16x16": (1, 256, 16, 128),  # batch 1 for the interpreter's sake; B=2 below checks strides
    "G32x32": (1, 1024, 8, 64),
    "D8x8": (2, 64, 32, 256),
    "D4x4": (2, 16, 64, 512),
    "N1": (2, 1, 8, 16),       # one key: softmax is 1, so dq = dk = 0 up to rounding
    "N63-Dv24": (2, 63, 8, 24),  # partial query and key tiles; Dv not a power of two
    "N257": (1, 257, 16, 128),   # one real row in the last tile; just past small-n's limit
}
SMALL = [name for name, shape in SHAPES.items() if shape[1] <= SMALL_N_MAX]

# (variant, backward): every kernel combination there is. small-n has one backward of its own.
KERNELS = {"small-n": ("small-n", "auto"), "one-launch": ("tiled", "one-launch"),
           "two-kernel": ("tiled", "two-kernel"), "atomic": ("tiled", "atomic")}


def _interpreter_tiles(N: int, device: str) -> dict:
    """Tile overrides for the tiled variant under the interpreter at N > 256, else none.

    The interpreter runs each tile op as a few small numpy calls, so its time grows with the
    number of tiles, not with the arithmetic: at N = 1024 the default 64-wide tiles take ~12 s
    per fwd+bwd on this 2-core machine, 256-wide ones ~4 s. Masks, loop bounds and the EVEN
    switch behave the same (N = 257 still leaves one real row in a padded tile), the default
    tiles are tested at N <= 256 here and at every N on CUDA, and test_tile_overrides_* check
    that tile sizes do not change the answer.
    """
    if device == "cpu" and N > 256:
        return {"BLOCK_N": 256, "FWD_BLOCK_M": 256, "BWD_BLOCK_M": 256}
    return {}


def _attend(kernel: str, N: int, device: str, **extra):
    variant, backward = KERNELS[kernel]
    tiles = _interpreter_tiles(N, device) if variant == "tiled" else {}
    return functools.partial(triton_attn.attend_triton, variant=variant, backward=backward,
                             tiles=tiles, **extra)


def _cases():
    """(shape, dtype row, kernel): every kernel at every shape it supports, fp32 and bf16
    (the two extremes of rounding); fp16 for the default kernel of each shape. Atomic at
    fp32 and bf16 only, as fp16 takes bf16's path with a smaller unit."""
    for name, shape in SHAPES.items():
        for kernel in KERNELS:
            if kernel == "small-n" and shape[1] > SMALL_N_MAX:
                continue
            default = "small-n" if shape[1] <= SMALL_N_MAX else "one-launch"
            for tol, tol_id in zip(TOLERANCES, TOL_IDS):
                if tol_id == "fp16" and kernel != default:
                    continue
                yield pytest.param(shape, *tol, kernel, id=f"{name}-{tol_id}-{kernel}")


def _check(o, grads, ref_o, ref_grads, atol, rtol):
    torch.testing.assert_close(o.double(), ref_o, atol=atol, rtol=rtol, msg=lambda m: "o: " + m)
    for name, g, ref_g in zip(("dq", "dk", "dv"), grads, ref_grads):
        torch.testing.assert_close(g.double(), ref_g, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, dtype, atol, rtol, kernel", list(_cases()))
def test_forward_and_gradients_match_reference(shape, dtype, atol, rtol, kernel, device,
                                               make_inputs, float64_reference,
                                               output_and_grads, skip_unless_runnable):
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(*shape, dtype, device)
    o, grads = output_and_grads(_attend(kernel, shape[1], device), q, k, v, do)
    assert o.shape == v.shape and o.dtype == dtype
    assert all(g.dtype == dtype and g.shape == t.shape for g, t in zip(grads, (q, k, v)))
    ref_o, ref_grads = float64_reference(q, k, v, do)
    _check(o, grads, ref_o, ref_grads, atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("shape", [SHAPES["N63-Dv24"], SHAPES["D4x4"]], ids=["N63-Dv24", "D4x4"])
def test_natural_exp_option_matches_reference(shape, kernel, device, make_inputs,
                                              float64_reference, output_and_grads,
                                              skip_unless_runnable):
    """exp2=False (tl.exp(s - r), the A/B baseline for the FMA-folded exp2) at fp32."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(*shape, torch.float32, device)
    o, grads = output_and_grads(_attend(kernel, shape[1], device, exp2=False), q, k, v, do)
    _check(o, grads, *float64_reference(q, k, v, do), 2e-5, 2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("exp2", [True, False], ids=["exp2", "exp"])
@pytest.mark.parametrize("variant", ["small-n", "tiled"])
def test_saved_lse_is_the_natural_log_sum_exp(variant, exp2, device, make_inputs,
                                              skip_unless_runnable):
    """Every forward saves LSE_i = log sum_j exp(q_i . k_j) in natural-log units, whatever
    its exponential (exp2 folds log2(e) into the FMA; the LSE is converted once per row), so
    any backward can read any forward's LSE. Scores std 12: the max subtraction matters."""
    skip_unless_runnable(device)
    q, k, v, _ = make_inputs(2, 63, 8, 24, torch.float32, device, score_scale=12.0)
    options = triton_attn.check_options(variant=variant, exp2=exp2)
    _, lse = triton_attn.forward(q, k, v, options)
    ref = torch.logsumexp(torch.bmm(q.double(), k.double().transpose(1, 2)), dim=-1)
    torch.testing.assert_close(lse.double(), ref, atol=2e-5, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", ["small-n", "one-launch", "two-kernel"])
def test_backwards_without_atomics_are_deterministic(kernel, device, make_inputs,
                                                     output_and_grads, skip_unless_runnable):
    """Two runs give bitwise-equal gradients (no atomics; the one-launch backward's programs
    never read each other's results)."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 200, 16, 24, torch.float32, device)
    attend = _attend(kernel, 200, device)
    first = output_and_grads(attend, q, k, v, do)[1]
    second = output_and_grads(attend, q, k, v, do)[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_unknown_backward_is_rejected():
    q = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="backward must be one of"):
        triton_attn.attend_triton(q, q, torch.zeros(1, 4, 16), backward="fast")


def test_small_n_refuses_long_sequences_with_a_clear_error(make_inputs, skip_unless_runnable):
    skip_unless_runnable("cpu")
    q, k, v, _ = make_inputs(1, 257, 8, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="variant='small-n' supports N <= 256; got N=257"):
        triton_attn.attend_triton(q, k, v, variant="small-n")
    attend = triton_attn.TritonAttend(triton_attn.check_options(variant="small-n"))
    with pytest.raises(ValueError, match="got N=1024"):  # at planning time, before any step
        attend.prepare([(64, 256, 16, 128), (64, 1024, 8, 64)], torch.float32, "cuda")


def test_prepare_is_a_no_op_off_cuda():
    attend = triton_attn.TritonAttend()
    assert attend.prepare([(64, 256, 16, 128), (64, 1024, 8, 64)], torch.float32, "cpu") == 0.0


@pytest.mark.cuda
def test_prepare_compiles_what_the_first_step_uses(skip_unless_runnable):
    """After prepare, a SAGAN-layout call of the same shapes compiles nothing new."""
    skip_unless_runnable("cuda")
    attend = triton_attn.TritonAttend()
    shapes = [(4, 256, 16, 128), (4, 1024, 8, 64), (4, 64, 32, 256), (4, 16, 64, 512)]
    seconds = attend.prepare(shapes, torch.bfloat16, "cuda")
    assert seconds > 0
    kernels = [tiled_forward._tiled_fwd_kernel, tiled_backward._tiled_bwd_kernel,
               small_n._small_fwd_kernel, small_n._small_bwd_kernel]
    before = [sum(len(c[0]) for c in k.device_caches.values()) for k in kernels]
    for B, N, Dqk, Dv in shapes:
        q, k, v, do = triton_attn.sagan_layout_inputs(B, N, Dqk, Dv, torch.bfloat16, "cuda")
        leaves = [t.requires_grad_() for t in (q, k, v)]
        attend(*leaves).backward(do)
    after = [sum(len(c[0]) for c in k.device_caches.values()) for k in kernels]
    assert after == before


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, atol, rtol", TOLERANCES, ids=TOL_IDS)
def test_scaled_shape_n4096(dtype, atol, rtol, make_inputs, float64_reference,
                            output_and_grads, skip_unless_runnable):
    """The 128x128-image site: N=4096, Dqk=8, Dv=64 (also checks 32-bit offsets stay in range),
    every tiled backward. CUDA only: the interpreter needs ~90 s for one bf16 forward here on
    the loaded 2-core machine; its code paths (tiles, masks) are the ones N = 1024 covers."""
    skip_unless_runnable("cuda")
    q, k, v, do = make_inputs(1, 4096, 8, 64, dtype, "cuda")
    ref_o, ref_grads = float64_reference(q, k, v, do)
    for backward in triton_attn.BACKWARDS:
        attend = functools.partial(triton_attn.attend_triton, backward=backward)
        o, grads = output_and_grads(attend, q, k, v, do)
        _check(o, grads, ref_o, ref_grads, atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_large_scores_do_not_overflow(device, make_inputs, float64_reference, output_and_grads,
                                      skip_unless_runnable):
    """SAGAN has no 1/sqrt(d): raw scores reach the hundreds; exp() of them overflows fp32.

    score_scale=12 gives scores with std 12 (max ~50 over 257^2 pairs). The online softmax
    subtracts the running max, so nothing is inf or NaN and the answer still matches.
    """
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 257, 16, 24, torch.float32, device, score_scale=12.0)
    o, grads = output_and_grads(triton_attn.attend_triton, q, k, v, do)
    ref_o, ref_grads = float64_reference(q, k, v, do)
    assert (ref_o.abs() > 0).all()
    # Sharper softmax -> gradients scale with the scores (|dq| up to ~100 here), so the fp32
    # tolerance is the one above applied to values ~10x larger.
    _check(o, grads, ref_o, ref_grads, atol=2e-4, rtol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs_and_grad_output(device, make_inputs, float64_reference,
                                               skip_unless_runnable):
    """Strided views in, and a stride-0 upstream gradient (what o.sum().backward() sends)."""
    skip_unless_runnable(device)
    B, N, Dqk, Dv = 2, 63, 8, 24
    q, k, v, _ = make_inputs(B, N, Dqk, Dv, torch.float32, device)
    # SAGAN produces q, k, v by permuting a conv output (B, C, H*W) -> (B, N, C): transposed views.
    q_t = q.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()  # strides (N*D, 1, N)
    k_t = k.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    wide = torch.zeros(B, N, 2 * Dv, device=device)
    wide[..., ::2] = v
    v_s = wide[..., ::2].detach().requires_grad_()                          # last-dim stride 2
    assert not (q_t.is_contiguous() or k_t.is_contiguous() or v_s.is_contiguous())
    o = triton_attn.attend_triton(q_t, k_t, v_s)
    o.sum().backward()  # dO = ones expanded: every stride is 0
    ref_o, ref_grads = float64_reference(q, k, v, torch.ones(B, N, Dv, device=device))
    _check(o.detach(), (q_t.grad, k_t.grad, v_s.grad), ref_o, ref_grads, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_never_allocates_n_by_n(device, make_inputs, skip_unless_runnable, monkeypatch):
    """Every tensor torch allocates during forward and backward is smaller than N x N.

    A TorchDispatchMode sees every aten op the host code runs (empty, zeros, casts); the Triton
    kernels themselves hold only BLOCK-sized tiles and write into those buffers. The mode is
    set around the launchers (triton_attn.forward and .backward) directly: around attend_triton
    it would see only the custom op's outputs, since a dispatch mode is off while an op it
    intercepted runs.
    With B=1, N=512, Dqk=8, Dv=64 the largest legitimate tensor is B*N*Dv = 32768 elements; an
    N x N score matrix would be 262144. The reference is checked to trip it.
    """
    skip_unless_runnable(device)
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestTensor(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    B, N = 1, 512
    q0, k0, v0, do0 = make_inputs(B, N, 8, 64, torch.float32, device)
    _wrap_kernels(monkeypatch, [])  # the interpreter's byte-wise copies of the inputs are unseen
    for kernel in KERNELS:
        tiles = _interpreter_tiles(N, device) if kernel != "small-n" else {}  # sizes only
        options = triton_attn.check_options(*KERNELS[kernel], tiles=tiles)
        q, k, v, do = ((q0, k0, v0, do0) if kernel != "small-n"  # N=256: small-n's largest N
                       else make_inputs(B, 256, 8, 64, torch.float32, device))
        with LargestTensor() as mode:
            o, lse = triton_attn.forward(q, k, v, options)
            triton_attn.backward(q, k, v, o, lse, do, options)
        assert mode.largest < q.shape[1] ** 2, (kernel, mode.largest)
    leaves = [t.clone().requires_grad_() for t in (q0, k0, v0)]
    with LargestTensor() as mode:
        attend_reference(*leaves).backward(do0)
    assert mode.largest >= N * N


@pytest.mark.cuda
def test_cuda_peak_memory_is_linear_in_n(make_inputs, skip_unless_runnable):
    """On a GPU, what the allocator actually handed out: far below one N x N matrix.

    B=4, N=4096, bf16: one N x N bf16 matrix per batch is 4*4096^2*2 B = 134 MB; the kernel
    needs O, LSE, delta and the three gradients, ~5 MB. The eager op is checked to exceed it.
    """
    skip_unless_runnable("cuda")
    B, N = 4, 4096
    q, k, v, do = make_inputs(B, N, 8, 64, torch.bfloat16, "cuda")
    nxn_bytes = B * N * N * 2

    def extra_peak(attend):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        attend(*leaves).backward(do)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    assert extra_peak(triton_attn.attend_triton) < nxn_bytes / 8
    eager = lambda q, k, v: torch.softmax(q @ k.transpose(1, 2), -1) @ v  # noqa: E731
    assert extra_peak(eager) > nxn_bytes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", ["one-launch", "two-kernel", "atomic"])
def test_tile_overrides_give_the_same_answer(kernel, device, make_inputs, float64_reference,
                                             output_and_grads, skip_unless_runnable):
    """Tiles other than tiled_config's (key and query blocks of different sizes, Dv in 16-wide
    chunks, other warps/stages) at N=130: every mask and loop bound still holds (partial key
    and query tiles). For the one-launch backward, 32-wide key blocks and 128-row query
    blocks give a grid where most programs have a dK/dV block but no dQ block."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(1, 130, 16, 40, torch.float32, device)
    tiles = dict(block_n=32, fwd_block_m=16, bwd_block_m=128, block_dv=16, fwd_warps=2,
                 bwd_warps=8, fwd_stages=2, bwd_stages=1)
    attend = functools.partial(triton_attn.attend_triton, variant="tiled",
                               backward=KERNELS[kernel][1], tiles=tiles)
    o, grads = output_and_grads(attend, q, k, v, do)
    _check(o, grads, *float64_reference(q, k, v, do), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_small_n_tile_overrides_take_the_two_pass_backward(device, make_inputs,
                                                           float64_reference, output_and_grads,
                                                           skip_unless_runnable):
    """small-n with 16-row query blocks at N = 63: four query blocks, so dV comes from the
    second pass (key blocks of 16, Dv in chunks of 16 for Dv = 40) rather than the first."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 63, 8, 40, torch.float32, device)
    tiles = dict(fwd_block_m=16, bwd_block_m=16, block_n=16, block_dv=16)
    assert small_n_config(63, 8, 40, check_tiles(tiles))["N_PAD"] == 64
    attend = functools.partial(triton_attn.attend_triton, variant="small-n", tiles=tiles)
    o, grads = output_and_grads(attend, q, k, v, do)
    _check(o, grads, *float64_reference(q, k, v, do), atol=2e-5, rtol=2e-5)


def test_why_unavailable_explains_the_cpu(monkeypatch):
    monkeypatch.setattr(triton_common, "INTERPRETING", False)
    reason = triton_attn.why_triton_unavailable("cpu")
    assert reason and "TRITON_INTERPRET=1" in reason and "\n" not in reason
    monkeypatch.setattr(triton_common, "INTERPRETING", True)
    assert triton_attn.why_triton_unavailable("cpu") is None
    if not torch.cuda.is_available():
        assert "CUDA" in triton_attn.why_triton_unavailable("cuda")


def test_rejects_mismatched_inputs():
    q = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError):
        triton_attn.attend_triton(q, torch.zeros(1, 5, 8), torch.zeros(1, 4, 16))
    with pytest.raises(TypeError):
        triton_attn.attend_triton(q, q, torch.zeros(1, 4, 16, dtype=torch.float64))


class _CountLaunches:
    """Stands in for a @triton.jit kernel: counts ``kernel[grid](...)`` launches, then runs it."""

    def __init__(self, kernel, counts):
        self.kernel, self.counts = kernel, counts

    def __getitem__(self, grid):
        from torch.utils._python_dispatch import _disable_current_modes

        def launch(*args, **kwargs):
            self.counts.append(grid)
            with _disable_current_modes():  # the interpreter's own tensor copies are not launches
                return self.kernel[grid](*args, **kwargs)
        return launch


def _wrap_kernels(monkeypatch, counts: list) -> None:
    """Every Triton kernel of triton-attn replaced by a _CountLaunches appending to counts."""
    for module, name in ((tiled_forward, "_tiled_fwd_kernel"),
                         (tiled_backward, "_tiled_bwd_kernel"),
                         (small_n, "_small_fwd_kernel"), (small_n, "_small_bwd_kernel")):
        monkeypatch.setattr(module, name, _CountLaunches(getattr(module, name), counts))


@pytest.mark.parametrize("kernel, bwd_triton, bwd_torch", [
    ("small-n", 1, []), ("one-launch", 1, []), ("two-kernel", 2, []), ("atomic", 1, ["zeros"])])
def test_launches_per_forward_and_backward(kernel, bwd_triton, bwd_torch, monkeypatch,
                                           make_inputs, skip_unless_runnable):
    """At SAGAN's sizes the call is launch-bound (NOTES.md), so the launch count is a contract:
    forward 1 Triton kernel; backward 1 (small-n, one-launch), 2 ("two-kernel") or 1 plus a
    zero-fill ("atomic"), fp32. Nothing else: no torch op besides allocations.

    Torch ops that only allocate or reshape (empty, views) launch nothing and are not counted.
    """
    skip_unless_runnable("cpu")
    from torch.utils._python_dispatch import TorchDispatchMode

    class TorchOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if not (name.startswith("empty") or func.is_view or name in ("detach", "alias")):
                self.names.append(name)
            return func(*args, **(kwargs or {}))

    triton_launches = []
    _wrap_kernels(monkeypatch, triton_launches)
    q, k, v, do = make_inputs(1, 40, 8, 24, torch.float32, "cpu")
    options = triton_attn.check_options(*KERNELS[kernel])
    # The launchers directly: a dispatch mode around the custom op would not see inside it.
    with TorchOps() as ops:
        o, lse = triton_attn.forward(q, k, v, options)
    assert (len(triton_launches), ops.names) == (1, [])
    with TorchOps() as ops:
        triton_attn.backward(q, k, v, o, lse, do, options)
    assert len(triton_launches) == 1 + bwd_triton
    assert ops.names == bwd_torch, ops.names


def test_compiles_as_one_graph_and_matches(make_inputs, float64_reference,
                                           skip_unless_runnable):
    """torch.compile sees the kernel as one opaque op (fullgraph=True raises on any graph
    break), with the right output shapes and gradients. aot_eager: traces forward and backward
    graphs as inductor would, without the C++ build (a CUDA run compiles for real)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 40, 8, 24, torch.float32, device)

    def attend_sum(q, k, v):
        return (triton_attn.attend_triton(q, k, v, variant="tiled", backward="atomic") * do).sum()

    compiled = torch.compile(attend_sum, backend="aot_eager", fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    loss = compiled(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    ref_o, ref_grads = float64_reference(q, k, v, do)
    torch.testing.assert_close(loss.double(), (ref_o * do.double()).sum(), atol=1e-4, rtol=1e-5)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g.double(), ref, atol=2e-5, rtol=2e-5)


def test_double_backward_is_refused(make_inputs, skip_unless_runnable):
    """WGAN-GP's penalty differentiates D twice; the kernel has no second derivative, so that
    must raise, not silently drop the second-order terms. (Eager route; under torch.compile
    the backward custom op has no autograd formula, which raises when backpropagated.)"""
    skip_unless_runnable("cpu")
    q, k, v, _ = make_inputs(1, 16, 8, 16, torch.float32, "cpu")
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    # .sum(): dO is a constant, the case where once_differentiable would not have raised
    with pytest.raises(RuntimeError, match="triton-attn has no second derivative"):
        torch.autograd.grad(triton_attn.attend_triton(*leaves).sum(), leaves[0],
                            create_graph=True)
    # a first derivative alone is fine
    (dq,) = torch.autograd.grad(triton_attn.attend_triton(*leaves).sum(), leaves[0])
    assert dq.shape == q.shape and not dq.requires_grad
