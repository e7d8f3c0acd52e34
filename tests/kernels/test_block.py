"""The fused SAGAN attention block (kernels/attention/block.py) against the unfused module.

Reference: plugins/sagan.py's SelfAttention (three 1x1 convs, the reference attention op,
x + gamma * o) run in float64. The block runs in fp32 (the interpreter on a CPU, compiled on
CUDA) and must match in y and in the gradients of x, all three weights and biases and gamma.
"""

import pytest
import torch

from ganbench.kernels.attention import block, small_n, triton_attn
from ganbench.kernels.attention.plan import DEFAULT_OPTIONS
from ganbench.kernels.attention.reference import attend_reference
from ganbench.plugins import sagan

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# fp32 against float64: the attention itself is held to 2e-5 in test_triton_attn.py; the 1x1
# projections add dot products over C <= 512 channels. Measured worst relative error here
# 6e-6 (dx, dW); 2e-5 of each tensor's largest value is allowed (a wrong term is order 1).
TOL = 2e-5


def _reference_module(C, gamma, seed, device):
    """SelfAttention(C) in float64 with weights that give unit-variance scores (SAGAN's init,
    N(0, 0.02) and gamma = 0, makes attention uniform and invisible: every kernel would pass)."""
    torch.manual_seed(seed)
    m = sagan.SelfAttention(C, attend_reference).double().to(device)
    dqk = m.query.weight.shape[0]
    std = (C * dqk ** 0.5) ** -0.5
    with torch.no_grad():
        for conv in (m.query, m.key, m.value):
            conv.weight.normal_(0.0, std if conv is not m.value else C ** -0.5)
            conv.bias.normal_(0.0, 0.1)
        m.gamma.fill_(gamma)
    return m


def _run_reference(m, x, dy):
    x = x.clone().requires_grad_()
    y = m(x)
    y.backward(dy)
    return y.detach(), {"x": x.grad, **{n: p.grad for n, p in m.named_parameters()}}


def _run_block(m, x, dy, dtype, options):
    params = {n: p.detach().to(dtype).requires_grad_() for n, p in m.named_parameters()}
    x = x.detach().to(dtype).requires_grad_()
    y = block.fused_block(x, params["query.weight"], params["query.bias"], params["key.weight"],
                          params["key.bias"], params["value.weight"], params["value.bias"],
                          params["gamma"], options)
    y.backward(dy.to(dtype))
    return y.detach(), {"x": x.grad, **{n: p.grad for n, p in params.items()}}


def _attention_output(m, x):
    """o (B, C, H, W) of the reference module: what gamma multiplies."""
    with torch.no_grad():
        q, k, v = (t.flatten(2).transpose(1, 2) for t in (m.query(x), m.key(x), m.value(x)))
        return attend_reference(q, k, v).transpose(1, 2).reshape(x.shape)


def _compare(got_y, got, ref_y, ref, tol, dy, o):
    """Each tensor within tol of its own largest value. Exceptions, where the exact value is 0
    or a sum that cancels: dkey.bias is exactly 0 in exact arithmetic (the softmax is
    shift-invariant) and, at N = 1, so are dq and dk; their rounding is measured against the
    value projection's gradient, which comes through the same products. dgamma = sum(dy * o)
    over B*C*N terms is held to 4e-6 of sum |dy * o| (fp32 summation of those terms)."""
    torch.testing.assert_close(got_y.double(), ref_y, atol=tol * ref_y.abs().max().item(),
                               rtol=tol, msg=lambda msg: "y: " + msg)
    assert got.keys() == ref.keys()
    floor = ref["value.weight"].abs().max().item()
    for name in ref:
        want = ref[name]
        atol = tol * max(want.abs().max().item(),
                         floor if name.startswith(("query", "key")) else 0.0)
        if name == "gamma":
            atol = 4e-6 * (dy * o).abs().sum().item()
        torch.testing.assert_close(got[name].double(), want, atol=atol, rtol=tol,
                                   msg=lambda msg, name=name: f"d{name}: {msg}")


# (B, C, H, W): SAGAN's sites at 64x64 (N = 256, 1024, 64, 16), then odd maps.
SITES = {
    "G16x16": (1, 128, 16, 16),
    "G32x32": (1, 64, 32, 32),
    "D8x8": (2, 256, 8, 8),
    "D4x4": (2, 512, 4, 4),
    "N1": (2, 16, 1, 1),
    "N63": (2, 16, 7, 9),
    "N289": (1, 16, 17, 17),
}


def _options(N, device, **kwargs):
    tiles = ({"BLOCK_N": 256, "FWD_BLOCK_M": 256, "BWD_BLOCK_M": 256}  # see test_triton_attn
             if device == "cpu" and N > 256 and kwargs.get("variant") != "small-n" else None)
    return triton_attn.check_options(tiles=tiles, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("site", list(SITES.values()), ids=list(SITES))
def test_block_matches_the_unfused_module(site, device, skip_unless_runnable):
    skip_unless_runnable(device)
    B, C, H, W = site
    m = _reference_module(C, gamma=0.7, seed=0, device=device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(device)
    dy = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(device)
    ref_y, ref = _run_reference(m, x, dy)
    got_y, got = _run_block(m, x, dy, torch.float32, _options(H * W, device))
    _compare(got_y, got, ref_y, ref, TOL, dy, _attention_output(m, x))
    assert got["gamma"].abs().item() > 0 and got["query.weight"].abs().max() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", [("small-n", "auto"), ("tiled", "one-launch"),
                                    ("tiled", "two-kernel"), ("tiled", "atomic")],
                         ids=["small-n", "one-launch", "two-kernel", "atomic"])
def test_block_with_every_backward_and_gamma_zero(kernel, device, skip_unless_runnable):
    """SAGAN starts at gamma = 0, where dq = dk = dv = 0 but dgamma = sum(dy * o) is not: the
    kernels' gamma-scaled gradients and delta output must give both, with every backward."""
    skip_unless_runnable(device)
    m = _reference_module(32, gamma=0.0, seed=2, device=device)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 32, 7, 9, generator=g, dtype=torch.float64).to(device)
    dy = torch.randn(2, 32, 7, 9, generator=g, dtype=torch.float64).to(device)
    ref_y, ref = _run_reference(m, x, dy)
    options = triton_attn.check_options(*kernel)
    got_y, got = _run_block(m, x, dy, torch.float32, options)
    assert got["gamma"].abs().item() > 1e-3
    assert all(got[n].abs().max() == 0 for n in ("query.weight", "key.weight", "value.weight"))
    _compare(got_y, got, ref_y, ref, TOL, dy, _attention_output(m, x))


def test_block_under_bf16_autocast_matches_the_module_under_autocast(skip_unless_runnable):
    """With autocast the block computes q, k, v and the attention in bf16 as the eager module's
    convs would, and returns y in fp32 (x and gamma are fp32); gradients come back in the
    parameters' fp32. Tolerance: bf16's, as in test_triton_attn.py."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    skip_unless_runnable(device)
    m = _reference_module(32, gamma=0.7, seed=4, device=device).float()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 32, 4, 4, generator=g).to(device)
    dy = torch.randn(2, 32, 4, 4, generator=g).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        y, got = _run_block(m, x, dy, torch.float32, DEFAULT_OPTIONS)
    assert y.dtype == torch.float32 and all(t.dtype == torch.float32 for t in got.values())
    m64 = _reference_module(32, gamma=0.7, seed=4, device=device)
    ref_y, ref = _run_reference(m64, x.double(), dy.double())
    for name, want in ref.items():
        if name != "key.bias":
            torch.testing.assert_close(got[name].double(), want, atol=5e-2 * want.abs().max().item(),
                                       rtol=5e-2, msg=lambda msg, name=name: f"d{name}: {msg}")
    torch.testing.assert_close(y.double(), ref_y, atol=5e-2, rtol=5e-2)


def test_block_launches(monkeypatch, skip_unless_runnable):
    """The launch counts the module docstring promises, on the small-n path (fp32):
    forward 3 torch ops (two concatenations, one matmul) + 1 Triton kernel; backward
    1 Triton kernel + 5 torch ops (dgamma sum, dx matmul, dW matmul + sum, db sum)."""
    skip_unless_runnable("cpu")
    from torch.utils._python_dispatch import TorchDispatchMode

    class TorchOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if not (name.startswith("empty") or func.is_view
                    or name in ("detach", "alias", "promote_types")):  # no kernel launched
                self.names.append(name)
            return func(*args, **(kwargs or {}))

    launches = []
    for name in ("_small_fwd_kernel", "_small_bwd_kernel"):
        kernel = getattr(small_n, name)

        class Counting:
            def __getitem__(self, grid, kernel=kernel, name=name):
                from torch.utils._python_dispatch import _disable_current_modes

                def launch(*args, **kwargs):
                    launches.append(name)
                    with _disable_current_modes():
                        return kernel[grid](*args, **kwargs)
                return launch
        monkeypatch.setattr(small_n, name, Counting())
    m = _reference_module(16, gamma=0.5, seed=0, device="cpu").float()
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    params = [m.query.weight, m.query.bias, m.key.weight, m.key.bias, m.value.weight,
              m.value.bias, m.gamma]
    with TorchOps() as ops:
        y = block.fused_block(x, *params)
    assert launches == ["_small_fwd_kernel"]
    forward_ops = ops.names
    dy = torch.randn_like(y)
    with TorchOps() as ops:
        torch.autograd.grad(y, [x, *params], dy)
    assert launches == ["_small_fwd_kernel", "_small_bwd_kernel"]
    assert sorted(forward_ops) == sorted(["cat", "cat", "convolution"]), forward_ops
    backward_ops = ops.names
    assert sorted(backward_ops) == sorted(["sum", "baddbmm", "bmm", "sum", "sum"]), ops.names


def test_block_rejects_a_double_backward(skip_unless_runnable):
    skip_unless_runnable("cpu")
    m = _reference_module(16, gamma=0.5, seed=0, device="cpu").float()
    x = torch.randn(1, 16, 2, 2, requires_grad=True)
    params = [p for p in m.parameters()]
    y = block.fused_block(x, m.query.weight, m.query.bias, m.key.weight, m.key.bias,
                          m.value.weight, m.value.bias, m.gamma)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(y.sum(), x, create_graph=True)
    assert params


def test_block_rejects_weights_that_do_not_fit_x():
    w = torch.zeros(2, 16, 1, 1)
    with pytest.raises(ValueError, match="do not fit x"):
        block.fused_block(torch.zeros(1, 8, 2, 2), w, torch.zeros(2), w, torch.zeros(2),
                          torch.zeros(16, 16, 1, 1), torch.zeros(16), torch.zeros(1))

