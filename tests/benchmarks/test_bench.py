"""pytest-benchmark suite: training steps, the attention op per kernel, the data pipeline, and
one short run's sample quality. CPU-sized (image 32, batch 16); see harness.py for the shapes.

Absolute times from this suite are for trend plots and `ganbench compare` between runs on the
same machine; the CI pass/fail check is the regression gate (``python -m tools.gate``).

Every benchmark puts numbers into ``extra_info``: throughput (img_per_s or GFLOP/s), peak memory
(``peak_mem_bytes`` with ``mem_method``), and for the short run ``fid_digits``/``is_digits``.
"""

from __future__ import annotations

import pytest
import torch

import harness

pytestmark = pytest.mark.benchmark

STEP_ROUNDS = 5        # a SAGAN step is ~0.2-1 s here: 5 rounds keep the test under ~10 s
QUALITY_STEPS = 150    # the short run: enough for DCGAN digits to become recognisable blobs
QUALITY_EVAL_N = 1000  # generated samples scored (FID's bias grows as N shrinks: keep it fixed)


def kernel_params():
    """Every registered kernel; the ones that cannot run here are skipped with the reason."""
    out = []
    for name in harness.kernel_names():
        reason = harness.timing_skip_reason(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def _median_s(benchmark) -> float | None:
    stats = getattr(benchmark, "stats", None)  # None when run with --benchmark-disable
    return stats.stats.median if stats is not None else None


def _record_memory(benchmark, run) -> None:
    """One extra call inside a fresh peak-memory window; the peak goes into extra_info."""
    method = harness.peak_rss_reset()
    run()
    peak = harness.peak_rss()
    if method and peak is not None:
        benchmark.extra_info["peak_mem_bytes"] = peak
        benchmark.extra_info["mem_method"] = method


# ------------------------------------------------------------------------------------------
# Training steps
# ------------------------------------------------------------------------------------------
STEP_CASES = [pytest.param("dcgan", None, id="dcgan")] + [
    pytest.param("sagan", p.values[0], id=f"sagan-{p.values[0]}", marks=p.marks)
    for p in kernel_params()]


@pytest.mark.parametrize("architecture,kernel", STEP_CASES)
def test_training_step(benchmark, architecture, kernel):
    step = harness.training_step(architecture, kernel)
    step()  # compile-attn compiles here (~25 s cold per shape on 2 cores), not in the timing
    _record_memory(benchmark, step)
    benchmark.extra_info.update(architecture=architecture, kernel=kernel,
                                image_size=harness.IMAGE_SIZE, batch_size=harness.BATCH_SIZE,
                                torch_threads=torch.get_num_threads())
    # Pedantic: one step per round, fixed count; calibration would re-run a 1 s step dozens
    # of times for no better median.
    benchmark.pedantic(step, rounds=STEP_ROUNDS, iterations=1, warmup_rounds=1)
    median = _median_s(benchmark)
    if median:
        benchmark.extra_info["img_per_s"] = harness.BATCH_SIZE / median


# ------------------------------------------------------------------------------------------
# The attention op
# ------------------------------------------------------------------------------------------
def _op_info(benchmark, kernel: str, backward: bool) -> None:
    from ganbench.kernels.attention.reference import attention_flops

    s = harness.OP_SHAPE
    benchmark.extra_info.update(kernel=kernel, **s)
    median = _median_s(benchmark)
    if median:
        flops = attention_flops(s["B"], s["N"], s["Dqk"], s["Dv"], backward=backward)
        benchmark.extra_info["gflop_per_s"] = flops / median / 1e9


@pytest.mark.parametrize("kernel", kernel_params())
def test_attention_forward(benchmark, kernel):
    run = harness.op_forward(harness.make_attend(kernel), harness.attention_inputs())
    run()  # compile / autotune outside the timing
    _record_memory(benchmark, run)
    benchmark(run)
    _op_info(benchmark, kernel, backward=False)


@pytest.mark.parametrize("kernel", kernel_params())
def test_attention_forward_backward(benchmark, kernel):
    run = harness.op_forward_backward(harness.make_attend(kernel), harness.attention_inputs())
    run()
    _record_memory(benchmark, run)
    benchmark(run)
    _op_info(benchmark, kernel, backward=True)


# ------------------------------------------------------------------------------------------
# Data pipeline
# ------------------------------------------------------------------------------------------
def test_data_prepare(benchmark):
    """prepare(): uint8 28x28 digits (the embedded 7s and 8s) -> float32 32x32 in [-1, 1]."""
    from ganbench import data

    mnist = data.load_embedded()
    images, _ = data.select_digits(mnist.train_images, mnist.train_labels, (7, 8))
    run = lambda: data.prepare(images, harness.IMAGE_SIZE)  # noqa: E731
    _record_memory(benchmark, run)
    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert out.shape == (len(images), 1, harness.IMAGE_SIZE, harness.IMAGE_SIZE)
    median = _median_s(benchmark)
    benchmark.extra_info["images"] = len(images)
    if median:
        benchmark.extra_info["img_per_s"] = len(images) / median


def test_batch_sampling(benchmark):
    """Batches.next(): one shuffled batch of 16 from the prepared tensor."""
    from ganbench.training.loop import Batches

    batches = Batches(harness.train_images(), harness.BATCH_SIZE, seed=0)
    batch = benchmark(batches.next)
    assert batch.shape == (harness.BATCH_SIZE, 1, harness.IMAGE_SIZE, harness.IMAGE_SIZE)
    median = _median_s(benchmark)
    if median:
        benchmark.extra_info["img_per_s"] = harness.BATCH_SIZE / median


# ------------------------------------------------------------------------------------------
# One short run with a quality figure
# ------------------------------------------------------------------------------------------
def test_short_run_quality(benchmark):
    """DCGAN, QUALITY_STEPS steps, then fid_digits and is_digits of QUALITY_EVAL_N samples.

    Seeded, so on one machine the figure moves only when the code does: a loss change that
    wrecks samples shows as fid_digits up / is_digits down in `ganbench compare`.
    """
    from ganbench.quality import evaluate as quality
    from ganbench.registry import get_registry
    from ganbench.specs import MetricContext
    from ganbench.training.loop import Batches, TrainSettings, generate, seed_everything, train

    registry = get_registry()
    names = [n for n in ("fid-digits", "is-digits")
             if n in registry.metrics and registry.metrics[n].why_unavailable("cpu") is None]
    if not names:
        pytest.skip("fid-digits / is-digits are not available")
    arch = registry.architectures["dcgan"]
    d = arch.defaults
    spec = registry.datasets["embedded"]
    data = spec.load(None, (7, 8), harness.IMAGE_SIZE)
    from ganbench.specs import ModelRequest

    def short_run():
        seed_everything(0)
        G, D = arch.build(ModelRequest(harness.IMAGE_SIZE, d.z_dim))
        G, D = G.to(harness.DEVICE), D.to(harness.DEVICE)
        train(G, D, registry.losses[d.loss].factory(),
              Batches(data.train.to(harness.DEVICE), harness.BATCH_SIZE, 0),
              TrainSettings(steps=QUALITY_STEPS, warmup=0, z_dim=d.z_dim, g_lr=d.g_lr,
                            d_lr=d.d_lr, betas=d.betas, device=harness.DEVICE, seed=0))
        return G

    G = benchmark.pedantic(short_run, rounds=1, iterations=1)
    fake = generate(G, QUALITY_EVAL_N, d.z_dim, harness.DEVICE, seed=7)
    context = MetricContext(digits=(7, 8), image_size=harness.IMAGE_SIZE, device="cpu",
                            seed=0, real_labels=data.heldout_labels)
    scores = quality.evaluate(names, fake, data.heldout, context, registry)
    benchmark.extra_info.update({k: float(v) for k, v in scores.items()})
    benchmark.extra_info.update(steps=QUALITY_STEPS, eval_n=QUALITY_EVAL_N)
    median = _median_s(benchmark)
    if median:
        benchmark.extra_info["img_per_s"] = QUALITY_STEPS * harness.BATCH_SIZE / median
    assert all(torch.isfinite(torch.tensor(float(v))) for v in scores.values())
