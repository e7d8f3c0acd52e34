"""Both losses against values computed by hand."""

import math

import torch

from ganbench.plugins.losses import BCELoss, HingeLoss
from ganbench.specs import LossInputs


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_bce_at_zero_logits_is_log2_per_term():
    loss = BCELoss()
    d = loss.d_loss(LossInputs(fake_logits=t(0.0), real_logits=t(0.0)))
    g = loss.g_loss(LossInputs(fake_logits=t(0.0)))
    assert math.isclose(d.item(), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(g.item(), math.log(2), rel_tol=1e-6)


def test_bce_hand_computed():
    loss = BCELoss()
    # -log sigma(2) = log(1 + e^-2); -log(1 - sigma(-1)) = log(1 + e^-1)
    expected = math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))
    d = loss.d_loss(LossInputs(fake_logits=t(-1.0), real_logits=t(2.0)))
    assert math.isclose(d.item(), expected, rel_tol=1e-6)
    # non-saturating G: -log sigma(-1) = log(1 + e)
    g = loss.g_loss(LossInputs(fake_logits=t(-1.0)))
    assert math.isclose(g.item(), math.log(1 + math.e), rel_tol=1e-6)


def test_hinge_hand_computed():
    loss = HingeLoss()
    d = loss.d_loss(LossInputs(fake_logits=t(-0.5, 1.0), real_logits=t(0.5, 2.0)))
    # real: mean(relu(0.5), relu(-1)) = 0.25; fake: mean(relu(0.5), relu(2)) = 1.25
    assert math.isclose(d.item(), 1.5, rel_tol=1e-6)
    g = loss.g_loss(LossInputs(fake_logits=t(-0.5, 1.0)))
    assert math.isclose(g.item(), -0.25, rel_tol=1e-6)
