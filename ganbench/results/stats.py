"""Statistics over seeds: a median with its interval, and a two-sample verdict.

GAN quality moves a lot with the seed (Lucic et al. 2018, "Are GANs Created Equal?", found
most claimed differences inside the seed-to-seed spread), and a run has 3-10 seeds per
combination, not hundreds. The two methods here are chosen for that n.

Interval of the median: distribution-free, from order statistics. For n values from any
continuous distribution, the number below the true median is Binomial(n, 1/2), so the
interval [x_(k), x_(n+1-k)] (k-th smallest to k-th largest) covers the median with
probability exactly ``1 - 2 * P(Binomial(n, 1/2) <= k - 1)``. We take the largest k that keeps
that at or above 95%. No 95% interval of this kind exists below 6 values: the widest one,
[min, max], covers the median with 75% (n=3), 87.5% (n=4), 93.75% (n=5); then 96.9% (n=6),
98.4% (n=7), 99.2% (n=8), and with k=2 96.1% (n=9), 97.9% (n=10). We report that coverage with
every interval rather than claim 95%. A bootstrap percentile interval would claim 95% but at
n=3 it is [min, max] too (a resampled median is always one of the three values) with the same
true 75% coverage; a t-interval assumes normal per-seed values, which we cannot check on 3.

Verdict between two sets of per-seed values: Welch's t-test (two-sided, unequal variances)
with Hedges' g as the effect size. A rank or permutation test cannot decide anything with 3
seeds a side: of the C(6,3) = 20 equally likely splits, the most extreme two give a smallest
possible two-sided p of 2/20 = 0.10 > 0.05. Welch's test can, when the difference is large
against the seed spread; its assumption (roughly normal per-seed values) is the price, and the
per-seed values are averages over many steps or many samples, which helps. With several pairs
per metric the p-values are Holm-adjusted over that metric's pairs (family-wise error <= 5%
per metric). The verdict is "indistinguishable" when the adjusted p >= 0.05, which says the
seeds cannot tell the two apart, not that they are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

LEVEL = 0.95  # the confidence every interval aims at, and 1 - the verdicts' alpha
ALPHA = 1.0 - LEVEL
INTERVAL_METHOD = ("order statistics x(k)..x(n+1-k), distribution-free, the largest k "
                   "with >= 95% coverage (from 6 seeds; below, min-max)")
TEST_METHOD = "Welch's t-test (two-sided) on per-seed values, Hedges' g, Holm over pairs"


def _clean(values: Iterable) -> list[float]:
    out = []
    for value in values:
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n+1-k)) for n values of a continuous distribution."""
    from scipy.stats import binom

    if n < 1 or not 1 <= k <= (n + 1) // 2:
        raise ValueError(f"need 1 <= k <= (n+1)/2, got n={n}, k={k}")
    return float(1.0 - 2.0 * binom.cdf(k - 1, n, 0.5))


@dataclass(frozen=True)
class Interval:
    """A median over seeds with its order-statistic interval and that interval's coverage."""

    median: float
    low: float
    high: float
    n: int
    coverage: float  # exact probability the interval holds the true median (NaN for n < 2)


def median_interval(values: Iterable) -> Interval:
    """The median of the finite ``values`` and the widest-needed order-statistic interval:
    the largest k with coverage >= 95%, else k = 1 ([min, max]) with its lower coverage.
    NaN everywhere for no values; for one value the interval is that value, coverage NaN."""
    import numpy as np

    xs = sorted(_clean(values))
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, nan)
    median = float(np.median(xs))
    if n == 1:
        return Interval(median, xs[0], xs[0], 1, float("nan"))
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= LEVEL:
        k += 1
    return Interval(median, xs[k - 1], xs[n - k], n, coverage(n, k))


@dataclass(frozen=True)
class Test:
    """Welch's t-test of a against b: ``diff`` = mean(a) - mean(b), Hedges' g of the same
    sign, two-sided p (NaN when it cannot be computed), and the two sample sizes."""

    diff: float
    g: float
    p: float
    n_a: int
    n_b: int


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean(a) - mean(b)) / pooled SD, times the small-sample correction
    J = 1 - 3 / (4 (n_a + n_b) - 9) (Hedges & Olkin 1985). inf when both sets are constant and
    differ; 0 when they are constant and equal; NaN with fewer than 2 values a side."""
    import numpy as np

    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    diff = float(np.mean(a) - np.mean(b))
    pooled = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(pooled) * (1.0 - 3.0 / (4.0 * (na + nb) - 9.0))


def welch(a: Iterable, b: Iterable) -> Test:
    """Welch's t-test on the finite values of a and b (see the module docstring).

    Needs 2 values a side (else p is NaN). Two constant sets: p = 1 when equal, 0 when they
    differ (no seed moved them: the difference is not noise)."""
    import numpy as np
    from scipy.special import stdtr

    xa, xb = _clean(a), _clean(b)
    na, nb = len(xa), len(xb)
    nan = float("nan")
    if na == 0 or nb == 0:
        return Test(nan, nan, nan, na, nb)
    diff = float(np.mean(xa) - np.mean(xb))
    g = hedges_g(xa, xb)
    if na < 2 or nb < 2:
        return Test(diff, g, nan, na, nb)
    if np.var(xa) == 0 and np.var(xb) == 0:
        return Test(diff, g, 1.0 if diff == 0 else 0.0, na, nb)
    # Welch (1947): t = diff / sqrt(va/na + vb/nb), Welch-Satterthwaite degrees of freedom.
    # By hand rather than scipy.stats.ttest_ind, which costs ~10 ms a call here (a table of 15
    # pairs x 7 metrics is rewritten after every row); the test checks it against ttest_ind.
    qa, qb = np.var(xa, ddof=1) / na, np.var(xb, ddof=1) / nb
    t = diff / math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (na - 1) + qb ** 2 / (nb - 1))
    p = float(2.0 * stdtr(df, -abs(t)))
    return Test(diff, g, p, na, nb)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979): sort the m p-values ascending, multiply the
    i-th (from 0) by m - i, carry the running maximum, cap at 1. NaNs stay NaN and do not
    count towards m."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(indexed)
    out = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
