"""The two losses of the textbook chapter: non-saturating BCE (DCGAN) and hinge (SAGAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganbench.hookspecs import hookimpl
from ganbench.specs import GANLoss, LossInputs, LossSpec


class BCELoss(GANLoss):
    """Goodfellow et al. 2014, non-saturating form, on logits (BCEWithLogits is the stable
    log-sigmoid). D: -log sigma(real) - log(1 - sigma(fake)); G: -log sigma(fake)."""

    def d_loss(self, inputs: LossInputs) -> torch.Tensor:
        real, fake = inputs.real_logits, inputs.fake_logits
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def g_loss(self, inputs: LossInputs) -> torch.Tensor:
        fake = inputs.fake_logits
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class HingeLoss(GANLoss):
    """Lim & Ye 2017 / Miyato et al. 2018, as SAGAN uses it.
    D: mean(relu(1 - real)) + mean(relu(1 + fake)); G: -mean(fake)."""

    def d_loss(self, inputs: LossInputs) -> torch.Tensor:
        return F.relu(1.0 - inputs.real_logits).mean() + F.relu(1.0 + inputs.fake_logits).mean()

    def g_loss(self, inputs: LossInputs) -> torch.Tensor:
        return -inputs.fake_logits.mean()


@hookimpl
def ganbench_register_losses(register):
    register(LossSpec(name="bce", summary="Non-saturating binary cross-entropy (DCGAN's default)",
                      factory=BCELoss))
    register(LossSpec(name="hinge", summary="Hinge loss (SAGAN's default)", factory=HingeLoss))
