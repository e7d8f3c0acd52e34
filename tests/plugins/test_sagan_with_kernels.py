"""A SAGAN training step gives the same losses and gradients whichever attention kernel runs.

On a CPU-only machine triton-attn runs under the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before anything imports the kernel); with CUDA it runs compiled.
"""

import functools

import pytest
import torch

from ganbench.plugins import sagan
from ganbench.plugins.losses import HingeLoss
from ganbench.registry import get_registry, why_unavailable
from ganbench.specs import LossInputs, ModelRequest

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32 end to end. The kernels agree with the float64 reference to ~4e-6 at these shapes
# (tests/kernels); through SAGAN's layers and the loss the per-element gradient difference
# stays a few times larger, well inside 1e-4. A wrong kernel (a missed scale, a masking or LSE
# bug, a dropped gradient term) changes gradients at order 1e-2 or more: gamma is set to 0.5 so
# that the attention output really reaches the losses (at gamma = 0 every kernel would agree).
ATOL, RTOL = 1e-4, 1e-4


def _build(kernel: str, **options):
    spec = get_registry().attention[kernel]
    reason = why_unavailable(spec, DEVICE)
    if reason:
        pytest.skip(f"{kernel}: {reason}")
    torch.manual_seed(0)
    return sagan.build(ModelRequest(32, 20, attend=spec.factory(**options)))


@functools.lru_cache(maxsize=None)
def eager_step():
    return one_step("eager-attn")


def one_step(kernel: str, **options):
    """D step and G step of SAGAN at 32x32 (attention at N = 64, 256 in G; 64, 16 in D)."""
    G, D = _build(kernel, **options)
    G, D = G.to(DEVICE), D.to(DEVICE)
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, sagan.SelfAttention):
            m.gamma.data.fill_(0.5)
    gen = torch.Generator().manual_seed(1)
    real = (torch.rand(2, 1, 32, 32, generator=gen) * 2 - 1).to(DEVICE)
    z1, z2 = (torch.randn(2, 20, 1, 1, generator=gen).to(DEVICE) for _ in range(2))
    loss = HingeLoss()
    fake = G(z1).detach()
    d_loss = loss.d_loss(LossInputs(fake_logits=D(fake), real_logits=D(real)))
    d_grads = dict(zip([n for n, _ in D.named_parameters()],
                       torch.autograd.grad(d_loss, list(D.parameters()))))
    g_loss = loss.g_loss(LossInputs(fake_logits=D(G(z2))))
    g_grads = dict(zip([n for n, _ in G.named_parameters()],
                       torch.autograd.grad(g_loss, list(G.parameters()))))
    return d_loss.detach(), g_loss.detach(), d_grads, g_grads


@pytest.mark.parametrize("kernel, options", [
    ("sdpa-attn", {}), ("triton-attn", {}), ("triton-attn", {"variant": "tiled"}),
    ("triton-block", {})],
    ids=["sdpa-attn", "triton-attn", "triton-attn-tiled", "triton-block"])
def test_training_step_matches_eager(kernel, options):
    """triton-attn: small-n at every site of 32x32 SAGAN (N <= 256); tiled: the one-launch
    backward; triton-block: the fused block (one matmul for q, k, v; attention + residual in
    one launch) in all four attention modules."""
    ref = eager_step()
    out = one_step(kernel, **options)
    torch.testing.assert_close(out[0], ref[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out[1], ref[1], atol=ATOL, rtol=RTOL)
    for got, want in ((out[2], ref[2]), (out[3], ref[3])):
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=ATOL, rtol=RTOL,
                                       msg=lambda m, name=name: f"{name}: {m}")
    # Not vacuous: attention reaches the losses (every gamma and q/k weight gets gradient; the
    # key bias does not, by design: q.(k + b) shifts every score of a row equally).
    attention_grads = [g for grads in (ref[2], ref[3]) for n, g in grads.items()
                       if n.endswith(("gamma", "query.weight", "key.weight"))]
    assert len(attention_grads) == 4 * 3
    assert all(g.abs().sum() > 1e-6 for g in attention_grads)


def test_fused_block_keeps_checkpoints_and_attention_maps():
    """With triton-block, G and D have the eager model's parameters and state_dict keys (a
    checkpoint loads across kernels), and report.py's attention maps still work: they record
    q and k through the unfused path."""
    from ganbench.results.figures import centre_attention

    G, D = _build("triton-block")
    G_ref, D_ref = _build("eager-attn")
    for net, ref in ((G, G_ref), (D, D_ref)):
        assert list(net.state_dict()) == list(ref.state_dict())
        net.load_state_dict(ref.state_dict())
    G, G_ref = G.to(DEVICE), G_ref.to(DEVICE)
    z = torch.randn(2, 20, 1, 1, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    images, maps = centre_attention(G, z)
    ref_images, ref_maps = centre_attention(G_ref, z)
    torch.testing.assert_close(images, ref_images, atol=ATOL, rtol=RTOL)
    assert [name for name, _ in maps] == [name for name, _ in ref_maps] and len(maps) == 2
    for (_, got), (_, want) in zip(maps, ref_maps):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
