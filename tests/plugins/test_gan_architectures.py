"""DCGAN and SAGAN against the textbook's specification (docs/models.md)."""

import math

import pytest
import torch
from torch import nn

from ganbench.plugins import dcgan, sagan
from ganbench.plugins.conv_stacks import hidden_channels
from ganbench.specs import ModelRequest


def reference_attend(q, k, v):
    return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v


def build(module, size):
    torch.manual_seed(0)
    return module.build(ModelRequest(size, 20, attend=reference_attend))


@pytest.mark.parametrize("module", [dcgan, sagan])
@pytest.mark.parametrize("size", [32, 64])
def test_output_shapes(module, size):
    G, D = build(module, size)
    images = G(torch.randn(3, 20, 1, 1))
    assert images.shape == (3, 1, size, size)
    assert images.abs().max() <= 1.0  # Tanh output
    assert D(images).shape == (3,)


def test_channel_plan_is_the_textbooks():
    assert hidden_channels(64) == [64, 128, 256, 512]
    assert hidden_channels(32) == [64, 128, 256]
    G, D = build(dcgan, 64)
    g_convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in g_convs] == [
        (20, 512), (512, 256), (256, 128), (128, 64), (64, 1)]
    d_convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in d_convs] == [
        (1, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert all(isinstance(m.negative_slope, float) and m.negative_slope == 0.1
               for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


def test_weights_start_normal_with_std_002():
    G, D = build(dcgan, 64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001


def _is_sn(module):
    return (hasattr(module, "parametrizations") and "weight" in module.parametrizations
            and any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight))


def test_spectral_norm_exactly_where_sagan_puts_it():
    G, D = build(sagan, 64)
    for net in (G, D):
        convs = {name: m for name, m in net.named_modules()
                 if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
        normed = {name for name, m in convs.items() if _is_sn(m)}
        # Every hidden layer's conv, nothing else: not the output conv, not the attention 1x1s.
        expected = {name for name in convs
                    if name.startswith("hidden.") and name.endswith(".0")
                    and not any(s in name for s in ("query", "key", "value"))}
        assert normed == expected
        assert len(normed) == 4
        assert not _is_sn(net.last[0] if isinstance(net.last, nn.Sequential) else net.last)


def test_no_spectral_norm_in_dcgan():
    G, D = build(dcgan, 64)
    assert not any(_is_sn(m) for net in (G, D) for m in net.modules())


def _attention_inputs(net, x):
    seen = []
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[1:])))
             for m in net.modules() if isinstance(m, sagan.SelfAttention)]
    net(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("size, g_maps, d_maps", [
    (64, [(128, 16, 16), (64, 32, 32)], [(256, 8, 8), (512, 4, 4)]),
    (32, [(128, 8, 8), (64, 16, 16)], [(128, 8, 8), (256, 4, 4)]),
])
def test_attention_positions(size, g_maps, d_maps):
    G, D = build(sagan, size)
    assert _attention_inputs(G, torch.randn(2, 20, 1, 1)) == g_maps
    assert _attention_inputs(D, torch.randn(2, 1, size, size)) == d_maps


@pytest.mark.parametrize("size", [32, 64, 128])
def test_attention_shapes_are_those_the_modules_see(size):
    """sagan.attention_shapes (for a kernel's prepare) against the inputs the built modules
    actually receive: (C, H, W) -> (B, H*W, C/8, C)."""
    G, D = build(sagan, size)
    seen = (_attention_inputs(G, torch.randn(3, 20, 1, 1))
            + _attention_inputs(D, torch.randn(3, 1, size, size)))
    assert sagan.attention_shapes(size, 3) == [(3, h * w, c // 8, c) for c, h, w in seen]
    if size == 64:
        assert sagan.attention_shapes(64, 64) == [(64, 256, 16, 128), (64, 1024, 8, 64),
                                                  (64, 64, 32, 256), (64, 16, 64, 512)]


def test_attention_block_is_identity_when_gamma_is_zero():
    torch.manual_seed(1)
    block = sagan.SelfAttention(64, reference_attend)
    assert block.gamma.item() == 0.0
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(block(x), x)


def test_attention_block_matches_hand_written_softmax():
    torch.manual_seed(2)
    block = sagan.SelfAttention(32, reference_attend)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 32, 4, 5)
    b, c, h, w = x.shape
    # By hand, element by element of the formula: o_i = sum_j softmax_j(q_i . k_j) v_j.
    q = block.query(x).reshape(b, c // 8, h * w)
    k = block.key(x).reshape(b, c // 8, h * w)
    v = block.value(x).reshape(b, c, h * w)
    o = torch.zeros(b, c, h * w)
    for n in range(b):
        for i in range(h * w):
            scores = torch.stack([q[n, :, i] @ k[n, :, j] for j in range(h * w)])
            weights = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
            o[n, :, i] = (v[n] * weights).sum(dim=1)
    expected = x + 0.7 * o.reshape(b, c, h, w)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_textbook_defaults():
    for module, loss in ((dcgan, "bce"), (sagan, "hinge")):
        d = (module.DCGAN_DEFAULTS if module is dcgan else module.SAGAN_DEFAULTS)
        assert (d.loss, d.g_lr, d.d_lr, d.betas, d.z_dim) == (loss, 1e-4, 4e-4, (0.0, 0.9), 20)
    assert sagan.SAGAN_DEFAULTS.attention == "eager-attn"
    assert sagan.QK_REDUCTION == 8


def test_sagan_without_kernel_is_refused():
    with pytest.raises(ValueError, match="needs an attention kernel"):
        sagan.build(ModelRequest(64, 20))


class _AttendWithBlock:
    """An attend function that also offers a fused ``block`` (docs/plugins.md): here the same
    formula written in torch, counting its calls, so the contract is tested without Triton."""

    def __init__(self):
        self.block_calls = 0

    def __call__(self, q, k, v):
        return reference_attend(q, k, v)

    def block(self, x, wq, bq, wk, bk, wv, bv, gamma):
        self.block_calls += 1
        b, c, h, w = x.shape
        q, k, v = (nn.functional.conv2d(x, wt, bias).flatten(2).transpose(1, 2)
                   for wt, bias in ((wq, bq), (wk, bk), (wv, bv)))
        return x + gamma * reference_attend(q, k, v).transpose(1, 2).reshape(b, c, h, w)


def test_attention_module_uses_the_kernels_block_except_when_recording():
    """SAGAN calls ``attend.block`` when the kernel offers one (same parameters, same result),
    but not while recording attention maps, which need q and k."""
    torch.manual_seed(3)
    attend = _AttendWithBlock()
    fused, plain = sagan.SelfAttention(32, attend), sagan.SelfAttention(32, reference_attend)
    plain.load_state_dict(fused.state_dict())
    assert list(fused.state_dict()) == ["gamma", "query.weight", "query.bias", "key.weight",
                                        "key.bias", "value.weight", "value.bias"]
    with torch.no_grad():
        for m in (fused, plain):
            m.gamma.fill_(0.7)
    x = torch.randn(2, 32, 4, 4)
    torch.testing.assert_close(fused(x), plain(x))
    assert attend.block_calls == 1 and fused.last_qk is None
    fused.record = True
    torch.testing.assert_close(fused(x), plain(x))
    assert attend.block_calls == 1 and fused.last_qk is not None  # the unfused path ran
