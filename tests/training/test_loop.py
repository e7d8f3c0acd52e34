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


class FakeClock:
    """time.perf_counter for the loop: it moves only when a D step runs (by ``tick`` s)."""

    def __init__(self, tick: float):
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        return self.now


class TickingHinge(HingeLoss):
    def __init__(self, clock: FakeClock):
        self.clock = clock

    def d_loss(self, inputs):
        self.clock.now += self.clock.tick
        return super().d_loss(inputs)


def budget_run(monkeypatch, budget_s, steps=None, resume=None, on_checkpoint=None):
    from ganbench.training import loop
    from ganbench.training.loop import TrainHooks

    clock = FakeClock(0.1)
    monkeypatch.setattr(loop.time, "perf_counter", clock)
    seed_everything(0)
    G, D = dcgan.build(ModelRequest(8, 4))
    images = torch.rand(40, 1, 8, 8) * 2 - 1
    settings = TrainSettings(steps=steps, budget_s=budget_s, warmup=1, z_dim=4, g_lr=1e-3,
                             d_lr=1e-3, betas=(0.0, 0.9), device="cpu", checkpoint_every=2)
    return train(G, D, TickingHinge(clock), Batches(images, 8, 0), settings,
                 TrainHooks(on_checkpoint=on_checkpoint), resume=resume)


def test_a_budget_stops_at_the_first_step_that_reaches_it(monkeypatch):
    # Each step takes 0.1 s on the fake clock: 0.35 s is passed after the 4th step.
    out = budget_run(monkeypatch, budget_s=0.35)
    assert out.status == "ok" and len(out.d_losses) == 4
    assert out.wall_s == pytest.approx(0.4)
    # Whichever ends first, when steps are given too.
    assert len(budget_run(monkeypatch, budget_s=0.35, steps=2).d_losses) == 2
    assert len(budget_run(monkeypatch, budget_s=10.0, steps=3).d_losses) == 3


def test_a_resumed_budget_run_counts_the_time_before_the_checkpoint(monkeypatch):
    saved = []
    budget_run(monkeypatch, budget_s=0.55, on_checkpoint=saved.append)
    assert [s["step"] for s in saved] == [2, 4]  # none at the last step (6): nothing to resume
    out = budget_run(monkeypatch, budget_s=0.55, resume=saved[0])
    assert out.resumed_from_step == 2 and len(out.d_losses) == 6  # 0.2 s + 4 x 0.1 s


def test_train_needs_steps_or_a_budget():
    with pytest.raises(ValueError, match="steps, budget_s or both"):
        TrainSettings(steps=None, warmup=0, z_dim=4, g_lr=1e-3, d_lr=1e-3, betas=(0.0, 0.9),
                      device="cpu")
