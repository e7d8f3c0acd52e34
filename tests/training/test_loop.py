import math

import pytest
import torch

from ganbench.training.measure import summarize
from ganbench.plugins import dcgan
from ganbench.plugins.losses import HingeLoss
from ganbench.specs import GANLoss, ModelRequest
from ganbench.training.loop import Batches, TrainSettings, generate, seed_everything, train


def tiny_run(loss=None, steps=4, warmup=1, seed=0):
    seed_everything(seed)
    G, D = dcgan.build(ModelRequest(8, 4))
    images = torch.rand(40, 1, 8, 8) * 2 - 1
    before = [p.detach().clone() for p in G.parameters()]
    out = train(G, D, loss or HingeLoss(), Batches(images, 8, seed), TrainSettings(
        steps=steps, warmup=warmup, z_dim=4, g_lr=1e-3, d_lr=1e-3, betas=(0.0, 0.9),
        device="cpu", seed=seed))
    return G, before, out


def test_batches_cover_an_epoch_without_repeats_then_reshuffle():
    images = torch.arange(10, dtype=torch.float32).reshape(10, 1, 1, 1)
    batches = Batches(images, 3, seed=0)
    epoch = torch.cat([batches.next() for _ in range(3)]).flatten().tolist()
    assert len(set(epoch)) == 9  # 3 full batches; the 10th image waits (drop_last)
    assert batches.next().shape == (3, 1, 1, 1)


def test_loop_trains_times_and_is_deterministic():
    G, before, out = tiny_run()
    assert out.status == "ok"
    assert len(out.d_losses) == len(out.g_losses) == 4
    assert len(out.step_seconds) == 3  # the warm-up step is not timed
    assert all(math.isfinite(x) for x in out.d_losses + out.g_losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    _, _, again = tiny_run()
    assert again.d_losses == out.d_losses and again.g_losses == out.g_losses


class NanAfterTwo(GANLoss):
    def __init__(self):
        self.calls = 0

    def d_loss(self, inputs):
        self.calls += 1
        base = HingeLoss().d_loss(inputs)
        return base * float("nan") if self.calls >= 3 else base

    def g_loss(self, inputs):
        return HingeLoss().g_loss(inputs)


def test_nan_loss_stops_with_diverged_and_the_step():
    _, _, out = tiny_run(loss=NanAfterTwo(), steps=12)
    assert out.status == "diverged"
    assert out.diverged_at == 3


def test_summarize_hand_computed():
    s = summarize([0.001, 0.002, 0.003, 0.004], batch_size=10)
    assert s["step_ms_median"] == pytest.approx(2.5)
    assert s["step_ms_p10"] == pytest.approx(1.3)
    assert s["step_ms_p90"] == pytest.approx(3.7)
    assert s["timed_steps"] == 4
    assert s["img_per_s"] == pytest.approx(10 / 0.0025)
    assert math.isnan(summarize([], 10)["img_per_s"])


def test_generate_is_seeded_and_in_range():
    G, _, _ = tiny_run()
    a = generate(G, 7, 4, "cpu", seed=3, batch_size=3)
    b = generate(G, 7, 4, "cpu", seed=3, batch_size=5)
    assert a.shape == (7, 1, 8, 8) and a.abs().max() <= 1
    torch.testing.assert_close(a, b)
