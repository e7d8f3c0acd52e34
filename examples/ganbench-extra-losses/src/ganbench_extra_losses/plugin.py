"""Two GAN losses, registered with ganbench through the ``ganbench`` entry-point group.

``lsgan`` (Mao et al. 2017, "Least Squares Generative Adversarial Networks", eq. 2 with
a = 0, b = c = 1), on D's raw scores (no sigmoid):

    D: 0.5 * E[(D(x) - 1)^2] + 0.5 * E[D(G(z))^2]
    G: 0.5 * E[(D(G(z)) - 1)^2]

``wgan-gp`` (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1,
lambda = 10):

    D: E[D(fake)] - E[D(real)] + lambda * E[(||grad_x D(x_hat)||_2 - 1)^2]
    G: -E[D(fake)]

with x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] drawn once per sample. ganbench's
D step hands the loss the real batch, the detached fake batch and D itself
(:class:`ganbench.specs.LossInputs`), which is all the penalty needs.
"""

from __future__ import annotations

import torch

from ganbench.hookspecs import hookimpl
from ganbench.specs import GANLoss, LossInputs, LossSpec

WGAN_GP_LAMBDA = 10.0  # the paper's penalty weight, used for every experiment there


class LSGANLoss(GANLoss):
    """Least-squares loss: D regresses real scores to 1 and fake scores to 0; G pulls fake
    scores to 1. The squared error keeps a gradient for fakes far on the right side of the
    boundary, where the sigmoid cross-entropy saturates."""

    def d_loss(self, inputs: LossInputs) -> torch.Tensor:
        return (0.5 * (inputs.real_logits - 1.0).pow(2).mean()
                + 0.5 * inputs.fake_logits.pow(2).mean())

    def g_loss(self, inputs: LossInputs) -> torch.Tensor:
        return 0.5 * (inputs.fake_logits - 1.0).pow(2).mean()


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)||_2 - 1)^2] over random interpolates of real and fake.

    ``real`` and ``fake`` are (B, C, H, W) batches; the result is a scalar that stays in the
    autograd graph (``create_graph=True``), so backpropagating it reaches the critic's weights.
    Differentiating ``critic(x_hat).sum()`` gives every sample's own input gradient only when
    samples do not interact inside the critic: no BatchNorm in D (the paper drops it for this
    reason; ganbench's DCGAN and SAGAN discriminators have none). The critic must be twice
    differentiable, including any attention kernel it calls.
    """
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)  # one eps per sample, broadcast
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1.0 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    # The norm in fp32: under bf16 autocast the squared sum over C*H*W pixels loses digits.
    norms = grad.flatten(start_dim=1).float().norm(2, dim=1)  # (B,)
    return (norms - 1.0).pow(2).mean()


class WGANGPLoss(GANLoss):
    """Wasserstein critic loss with the two-sided gradient penalty (weight ``penalty_weight``)."""

    def __init__(self, penalty_weight: float = WGAN_GP_LAMBDA):
        self.penalty_weight = penalty_weight

    def d_loss(self, inputs: LossInputs) -> torch.Tensor:
        if inputs.discriminator is None or inputs.real is None or inputs.fake is None:
            raise ValueError("wgan-gp needs LossInputs.real, .fake and .discriminator in the "
                             "D step")
        wasserstein = inputs.fake_logits.mean() - inputs.real_logits.mean()
        penalty = gradient_penalty(inputs.discriminator, inputs.real, inputs.fake)
        return wasserstein + self.penalty_weight * penalty

    def g_loss(self, inputs: LossInputs) -> torch.Tensor:
        return -inputs.fake_logits.mean()


@hookimpl
def ganbench_register_losses(register):
    register(LossSpec(name="lsgan", factory=LSGANLoss,
                      summary="Least-squares GAN loss (Mao et al. 2017), a=0, b=c=1"))
    register(LossSpec(name="wgan-gp", factory=WGANGPLoss,
                      summary="Wasserstein loss with gradient penalty, lambda=10 "
                              "(Gulrajani et al. 2017)"))
