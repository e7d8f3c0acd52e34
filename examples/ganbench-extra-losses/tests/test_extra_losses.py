"""The two losses against values computed by hand, and the plugin's registration."""

import math

import pytest
import torch
from torch import nn

from ganbench.specs import LossInputs, LossSpec
from ganbench_extra_losses.plugin import (WGAN_GP_LAMBDA, LSGANLoss, WGANGPLoss,
                                          ganbench_register_losses, gradient_penalty)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_lsgan_hand_computed():
    loss = LSGANLoss()
    # real: 0.5 * mean((1-1)^2, (0-1)^2) = 0.25; fake: 0.5 * mean(0^2, 3^2) = 2.25
    d = loss.d_loss(LossInputs(fake_logits=t(0.0, 3.0), real_logits=t(1.0, 0.0)))
    assert math.isclose(d.item(), 2.5, rel_tol=1e-6)
    # G: 0.5 * mean((0-1)^2, (3-1)^2) = 0.5 * 2.5
    g = loss.g_loss(LossInputs(fake_logits=t(0.0, 3.0)))
    assert math.isclose(g.item(), 1.25, rel_tol=1e-6)


def test_lsgan_is_zero_at_its_targets():
    loss = LSGANLoss()
    assert loss.d_loss(LossInputs(fake_logits=t(0.0, 0.0), real_logits=t(1.0, 1.0))).item() == 0
    assert loss.g_loss(LossInputs(fake_logits=t(1.0, 1.0))).item() == 0


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w at every x, so ||grad|| = ||w|| everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return x.flatten(1) @ self.w.flatten()  # (B,)


def images(seed, n=4):
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def unit(seed):
    w = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return w / w.norm()


def test_penalty_is_zero_for_a_unit_gradient_critic():
    critic = LinearCritic(unit(0))
    assert gradient_penalty(critic, images(1), images(2)).item() == pytest.approx(0, abs=1e-10)


def test_wgan_gp_d_loss_is_the_wasserstein_gap_when_the_penalty_vanishes():
    critic = LinearCritic(unit(0))
    real, fake = images(1), images(2)
    inputs = LossInputs(fake_logits=critic(fake), real_logits=critic(real), real=real,
                        fake=fake, discriminator=critic)
    expected = critic(fake).mean() - critic(real).mean()
    assert WGANGPLoss().d_loss(inputs).item() == pytest.approx(expected.item(), abs=1e-6)


def test_penalty_for_a_norm_two_critic_is_one_and_reaches_the_weights():
    critic = LinearCritic(2 * unit(0))
    penalty = gradient_penalty(critic, images(1), images(2))
    assert penalty.item() == pytest.approx(1.0, rel=1e-6)  # (||w|| - 1)^2 = (2 - 1)^2
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = w when ||w|| = 2: the penalty must stay in
    # the graph (create_graph=True) for the critic to be pushed toward unit gradients.
    penalty.backward()
    assert torch.allclose(critic.w.grad, critic.w.detach(), atol=1e-6)


def test_penalty_is_positive_for_a_nonlinear_critic():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1),
                           nn.Flatten(0))
    torch.manual_seed(0)
    assert gradient_penalty(critic, images(1), images(2)).item() > 0


def test_wgan_gp_penalty_weight_is_lambda_ten():
    critic = LinearCritic(2 * unit(0))  # penalty exactly 1
    real, fake = images(1), images(2)
    inputs = LossInputs(fake_logits=critic(fake), real_logits=critic(real), real=real,
                        fake=fake, discriminator=critic)
    gap = (critic(fake).mean() - critic(real).mean()).item()
    assert WGAN_GP_LAMBDA == 10.0
    assert WGANGPLoss().d_loss(inputs).item() == pytest.approx(gap + 10.0, rel=1e-5)


def test_wgan_gp_g_loss_and_missing_inputs():
    loss = WGANGPLoss()
    assert loss.g_loss(LossInputs(fake_logits=t(1.0, 3.0))).item() == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="discriminator"):
        loss.d_loss(LossInputs(fake_logits=t(1.0), real_logits=t(0.0)))


def test_registers_both_losses():
    specs = []
    ganbench_register_losses(register=specs.append)
    assert [s.name for s in specs] == ["lsgan", "wgan-gp"]
    assert all(isinstance(s, LossSpec) and s.why_unavailable("cpu") is None for s in specs)
    assert isinstance(specs[1].factory(), WGANGPLoss)
