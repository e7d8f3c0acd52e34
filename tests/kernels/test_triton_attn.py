"""attend_triton against the float64 reference: forward and dq, dk, dv.

On a CPU-only machine these run under the Triton interpreter (tests/kernels/conftest.py), which
executes the same kernel code tile by tile in numpy; with CUDA present they run compiled.
Batch sizes are 1-2 so the interpreter stays fast (the whole file takes well under a minute
on 2 cores); batch only multiplies the grid, and B=2 checks the batch stride.
"""

import functools

import pytest
import torch

from ganbench.kernels.attention import triton_attn
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
    "G16x16": (2, 256, 16, 128),
    "G32x32": (1, 1024, 8, 64),
    "D8x8": (2, 64, 32, 256),
    "D4x4": (2, 16, 64, 512),
    "N1": (2, 1, 8, 16),       # one key: softmax is 1, so dq = dk = 0 exactly
    "N63-Dv24": (2, 63, 8, 24),  # partial query and key tiles; Dv not a power of two
    "N257": (2, 257, 16, 128),   # one real row in the last tile
}


def _check(o, grads, ref_o, ref_grads, atol, rtol):
    torch.testing.assert_close(o.double(), ref_o, atol=atol, rtol=rtol, msg=lambda m: "o: " + m)
    for name, g, ref_g in zip(("dq", "dk", "dv"), grads, ref_grads):
        torch.testing.assert_close(g.double(), ref_g, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", TOLERANCES, ids=TOL_IDS)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_forward_and_gradients_match_reference(shape, dtype, atol, rtol, device, make_inputs,
                                               float64_reference, output_and_grads,
                                               skip_unless_runnable):
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(*shape, dtype, device)
    o, grads = output_and_grads(triton_attn.attend_triton, q, k, v, do)
    assert o.shape == v.shape and o.dtype == dtype
    assert all(g.dtype == dtype and g.shape == t.shape for g, t in zip(grads, (q, k, v)))
    ref_o, ref_grads = float64_reference(q, k, v, do)
    _check(o, grads, ref_o, ref_grads, atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", [TOLERANCES[0], TOLERANCES[2]], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_atomic_backward_matches_reference(shape, dtype, atol, rtol, device, make_inputs,
                                           float64_reference, output_and_grads,
                                           skip_unless_runnable):
    """backward="atomic": dQ summed over key blocks with atomic adds, at the same tolerances.

    Its dk, dv and forward are the default's code; what differs is dQ's accumulation (an fp32
    buffer zeroed by the delta kernel, one rounding to the input dtype at the end). fp32 and
    bf16 bound the two roundings; fp16 takes the bf16 path with a smaller unit.
    """
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(*shape, dtype, device)
    attend = functools.partial(triton_attn.attend_triton, backward="atomic")
    o, grads = output_and_grads(attend, q, k, v, do)
    assert all(g.dtype == dtype and g.shape == t.shape for g, t in zip(grads, (q, k, v)))
    _check(o, grads, *float64_reference(q, k, v, do), atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_two_kernel_backward_is_deterministic(device, make_inputs, output_and_grads,
                                              skip_unless_runnable):
    """The default backward uses no atomics: two runs give bitwise-equal gradients."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 257, 16, 24, torch.float32, device)
    first = output_and_grads(triton_attn.attend_triton, q, k, v, do)[1]
    second = output_and_grads(triton_attn.attend_triton, q, k, v, do)[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_unknown_backward_is_rejected():
    q = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="backward must be one of"):
        triton_attn.attend_triton(q, q, torch.zeros(1, 4, 16), backward="fast")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", TOLERANCES, ids=TOL_IDS)
def test_scaled_shape_n4096(dtype, atol, rtol, device, make_inputs, float64_reference,
                            output_and_grads, skip_unless_runnable):
    """The 128x128-image site: N=4096, Dqk=8, Dv=64 (also checks 32-bit offsets stay in range).

    The interpreter needs ~10 s per forward here and ~50 s for the backward, so on the CPU only
    the bf16 forward runs; the backward's code path (tile sizes, masks) is the one N=1024 covers.
    On CUDA everything runs.
    """
    skip_unless_runnable(device)
    on_cpu = device == "cpu"
    if on_cpu and dtype != torch.bfloat16:
        pytest.skip("interpreter time budget: on the CPU only bf16 runs at N=4096")
    q, k, v, do = make_inputs(1, 4096, 8, 64, dtype, device)
    ref_o, ref_grads = float64_reference(q, k, v, do)
    if on_cpu:
        o = triton_attn.attend_triton(q, k, v)
        torch.testing.assert_close(o.double(), ref_o, atol=atol, rtol=rtol)
        return
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
def test_never_allocates_n_by_n(device, make_inputs, skip_unless_runnable):
    """Every tensor torch allocates during forward and backward is smaller than N x N.

    A TorchDispatchMode sees every aten op the host code runs (empty, zeros, casts); the Triton
    kernels themselves hold only BLOCK-sized tiles and write into those buffers. The mode is
    set around the launchers (_forward, _backward) directly: around attend_triton it would see
    only the custom op's outputs, since a dispatch mode is off while an op it intercepted runs.
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
    q, k, v, do = make_inputs(B, N, 8, 64, torch.float32, device)
    for backward in triton_attn.BACKWARDS:
        with LargestTensor() as mode:
            o, lse = triton_attn._forward(q, k, v)
            triton_attn._backward(q, k, v, o, lse, do, backward)
        assert mode.largest < N * N, (backward, mode.largest)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with LargestTensor() as mode:
        attend_reference(*leaves).backward(do)
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


def test_tile_sizes_obey_gpu_constraints():
    """What the interpreter does not enforce: power-of-two tiles, dot dims >= 16, Dv chunks."""
    shapes = [(n, dqk, dv) for n in (1, 16, 63, 64, 257, 1024, 4096)
              for dqk, dv in ((8, 64), (16, 128), (32, 256), (64, 512), (8, 24))]
    for n, dqk, dv in shapes:
        cfg = triton_attn._config(n, dqk, dv)
        for key in ("BLOCK_DQK", "BLOCK_DV", "BLOCK_N", "FWD_BLOCK_M", "BWD_BLOCK_M"):
            value = cfg[key]
            assert value >= 16 and value & (value - 1) == 0, (n, dqk, dv, key, value)
        assert cfg["BLOCK_DQK"] >= dqk and cfg["BLOCK_DV"] <= 128
        assert cfg["FWD_WARPS"] in (4, 8) and cfg["BWD_WARPS"] in (4, 8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", ["two-kernel", "atomic"])
def test_tile_overrides_give_the_same_answer(backward, device, make_inputs, float64_reference,
                                             output_and_grads, skip_unless_runnable):
    """Tiles other than _config's (key and query blocks of different sizes, Dv in 16-wide
    chunks, other warps/stages) at N=257: every mask and loop bound still holds."""
    skip_unless_runnable(device)
    q, k, v, do = make_inputs(2, 257, 16, 40, torch.float32, device)
    tiles = dict(block_n=32, fwd_block_m=16, bwd_block_m=128, block_dv=16, fwd_warps=2,
                 bwd_warps=8, fwd_stages=2, bwd_stages=1)
    attend = functools.partial(triton_attn.attend_triton, backward=backward, tiles=tiles)
    o, grads = output_and_grads(attend, q, k, v, do)
    _check(o, grads, *float64_reference(q, k, v, do), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("tiles, message", [
    ({"block_m": 64}, "unknown tile setting 'block_m'; known: block_n, fwd_block_m"),
    ({"block_n": 48}, "block_n must be one of 16, 32, 64, 128, 256; got 48"),
    ({"block_dv": 256}, "block_dv must be one of 16, 32, 64, 128; got 256"),
    ({"fwd_warps": True}, "fwd_warps must be one of"),
    ({"bwd_stages": "2"}, "bwd_stages must be one of"),
])
def test_bad_tiles_are_rejected(tiles, message):
    with pytest.raises(ValueError, match=message):
        triton_attn.check_tiles(tiles)


def test_tile_overrides_replace_only_what_they_name():
    default = triton_attn._config(1024, 8, 64)
    assert default["BWD_WARPS"] == 4 and default["BLOCK_N"] == 64
    tuned = triton_attn._config(1024, 8, 64,
                                triton_attn.check_tiles({"bwd_warps": 8, "BLOCK_N": 128}))
    assert tuned == {**default, "BWD_WARPS": 8, "BLOCK_N": 128}


def test_why_unavailable_explains_the_cpu(monkeypatch):
    monkeypatch.setattr(triton_attn, "_INTERPRETING", False)
    reason = triton_attn.why_triton_unavailable("cpu")
    assert reason and "TRITON_INTERPRET=1" in reason and "\n" not in reason
    monkeypatch.setattr(triton_attn, "_INTERPRETING", True)
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


@pytest.mark.parametrize("backward, bwd_triton, bwd_torch", [
    ("two-kernel", 2, []), ("atomic", 1, ["zeros"])])
def test_launches_per_forward_and_backward(backward, bwd_triton, bwd_torch, monkeypatch,
                                           make_inputs, skip_unless_runnable):
    """At SAGAN's sizes the call is launch-bound (NOTES.md), so the launch count is a contract:
    forward 1 Triton kernel; backward 2 ("two-kernel") or 1 plus a zero-fill ("atomic"), fp32.

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
    for name in ("_fwd_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel"):
        monkeypatch.setattr(triton_attn, name,
                            _CountLaunches(getattr(triton_attn, name), triton_launches))
    q, k, v, do = make_inputs(1, 40, 8, 24, torch.float32, "cpu")
    # The launchers directly: a dispatch mode around the custom op would not see inside it.
    with TorchOps() as ops:
        o, lse = triton_attn._forward(q, k, v)
    assert (len(triton_launches), ops.names) == (1, [])
    with TorchOps() as ops:
        triton_attn._backward(q, k, v, o, lse, do, backward)
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
        return (triton_attn.attend_triton(q, k, v, backward="atomic") * do).sum()

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
