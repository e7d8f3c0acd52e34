"""kid-digits: the unbiased MMD^2 against a hand-written double loop, its subset SD, its lack of
bias at small N, and real digits against real digits (about 0, within a few SDs)."""

import functools

import pytest
import torch

import ganbench.plugins.kid as K
import ganbench.plugins.metrics as M
from ganbench import data
from ganbench.errors import DataError
from ganbench.quality import evaluate as quality
from ganbench.registry import Registry
from ganbench.specs import MetricContext


def _k(x, y):
    """The cubic polynomial kernel of Binkowski et al., one pair at a time."""
    return (sum(a * b for a, b in zip(x, y)) / len(x) + 1) ** 3


def _mmd2_by_loops(x, y):
    """Unbiased MMD^2 written out: every i != j pair within each set, every pair across."""
    m, n = len(x), len(y)
    xx = sum(_k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(_k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(_k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_double_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = 0.5 * torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.3
    value, _ = K.kid(x, y)
    assert value == pytest.approx(_mmd2_by_loops(x.tolist(), y.tolist()), rel=1e-12, abs=1e-12)
    assert K.kid(y, x)[0] == pytest.approx(value, rel=1e-12)  # symmetric


def test_kid_sd_is_the_spread_over_half_size_subsets():
    """Each subset's value is the double loop on the subset (m // 2 and n // 2 samples); the SD
    is their sample standard deviation. The subsets are drawn as _half_subsets draws them."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    y = torch.randn(11, 2, generator=g, dtype=torch.float64) + 1
    _, sd = K.kid(x, y, subsets=5, seed=3)
    draw = torch.Generator().manual_seed(3)
    ux, uy = K._half_subsets(8, 5, draw), K._half_subsets(11, 5, draw)
    assert ux.sum(1).tolist() == [4.0] * 5 and uy.sum(1).tolist() == [5.0] * 5
    values = torch.tensor([_mmd2_by_loops(x[a.bool()].tolist(), y[b.bool()].tolist())
                           for a, b in zip(ux, uy)], dtype=torch.float64)
    assert sd == pytest.approx(float(values.std()), rel=1e-10)
    assert sd > 0


def test_kid_is_unbiased_where_the_plug_in_estimate_is_not():
    """Both sets from N(0, I): the true MMD^2 is 0. Over 400 draws of 8 + 8 samples the mean
    KID is 0 within 4 standard errors; the plug-in (V-statistic) estimate, which keeps the
    i == j terms, sits far above 0 at this N."""
    g = torch.Generator().manual_seed(2)
    kids, plug_in = [], []
    for _ in range(400):
        x = torch.randn(8, 4, generator=g, dtype=torch.float64)
        y = torch.randn(8, 4, generator=g, dtype=torch.float64)
        kids.append(K.kid(x, y, subsets=2)[0])
        kxx, kyy, kxy = (K.polynomial_kernel(a, b) for a, b in ((x, x), (y, y), (x, y)))
        plug_in.append(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()))
    kids = torch.tensor(kids, dtype=torch.float64)
    plug_in = torch.tensor(plug_in, dtype=torch.float64)
    standard_error = kids.std() / len(kids) ** 0.5
    assert abs(kids.mean()) < 4 * standard_error
    assert plug_in.mean() > 10 * plug_in.std() / len(plug_in) ** 0.5


def test_kid_needs_four_samples_a_side():
    with pytest.raises(DataError, match="kid-digits needs at least 4 samples"):
        K.kid(torch.randn(3, 2), torch.randn(10, 2))
    assert K.kid(torch.randn(4, 2), torch.randn(4, 2))[1] >= 0


@functools.lru_cache(maxsize=None)
def _test_digits(count: int = 2400, size: int = 32):
    """The first ``count`` MNIST test digits (all ten classes), prepared as real data is."""
    mnist = data.load_embedded()
    return data.prepare(mnist.test_images[:count], size)


def _registry() -> Registry:
    registry = Registry()
    M.ganbench_register_metrics(lambda spec: registry.add("metric", spec, "built-in"))
    return registry


def test_real_against_real_is_zero_within_its_sd_and_collapse_is_not():
    """Three disjoint pairs of 400 real test digits each (all ten classes): |KID| < 3 SD. One
    digit repeated 400 times, scored against the same real digits, is many SDs away."""
    images = _test_digits()
    context = MetricContext(digits=(), image_size=32, device="cpu")
    registry = _registry()
    for split in range(3):
        start = 800 * split
        fake, real = images[start:start + 400], images[start + 400:start + 800]
        row = quality.evaluate(["kid-digits"], fake, real, context, registry)
        assert abs(row["kid_digits"]) < 3 * row["kid_digits_sd"], (split, row)
    collapsed = images[:1].repeat(400, 1, 1, 1)
    row = quality.evaluate(["kid-digits"], collapsed, images[400:800], context, registry)
    assert row["kid_digits"] > 10 * row["kid_digits_sd"]
