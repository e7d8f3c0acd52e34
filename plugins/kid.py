"""Kernel Inception Distance on the digit classifier's features (``kid-digits``).

KID (Binkowski et al. 2018, "Demystifying MMD GANs") is the squared maximum mean discrepancy
between the feature distributions of two image sets, with the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3            (d = 64, the feature dimension)

estimated without bias: for samples X (m of them) and Y (n),

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
            - 2 sum_{i, j} k(x_i, y_j) / (m n).

Unlike FID, whose plug-in estimate is biased upward by an amount that shrinks with N (real
digits against real digits: 9.6 at N = 500, 4.9 at 1001, 2.95 at 2000; issue 20), this
estimate's expectation is the population value at every N, so KID numbers at different N
compare, and two sets from one distribution score about 0 (sometimes a little below).

Registered by :mod:`ganbench.plugins.metrics`. Features are those fid-digits uses (the shipped
classifier's 64 penultimate units after their ReLU), shared through
:func:`ganbench.quality.features.classifier_outputs`.
"""

from __future__ import annotations

import torch

from ganbench.quality.evaluate import TooFewSamplesError
from ganbench.specs import Metric, MetricContext

KID_SUBSETS = 100  # random half-size subsets behind kid_digits_sd (as Binkowski et al.'s 100)
MIN_SAMPLES = 4    # each half-size subset needs 2 samples for its within-set term


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a_i, b_j) = (a_i . b_j / d + 1)^3 for feature rows a (N, d) and b (M, d), float64."""
    a, b = a.double(), b.double()
    return (a @ b.T / a.shape[1] + 1) ** 3


def _subset_mmd2(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor,
                 ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    """The unbiased MMD^2 of each subset pair: ``ux`` (S, m) and ``uy`` (S, n) are 0/1 rows
    choosing the samples of subset s. Returns (S,). With u a 0/1 row, u K u^T sums K over the
    chosen pairs (diagonal included) and u . diag(K) the diagonal part."""
    m, n = ux.sum(1), uy.sum(1)
    within_x = ((ux @ kxx) * ux).sum(1) - ux @ kxx.diagonal()
    within_y = ((uy @ kyy) * uy).sum(1) - uy @ kyy.diagonal()
    across = ((ux @ kxy) * uy).sum(1)
    return within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2 * across / (m * n)


def kid(x: torch.Tensor, y: torch.Tensor, subsets: int = KID_SUBSETS,
        seed: int = 0) -> tuple[float, float]:
    """(KID, its standard deviation) between feature sets x (m, d) and y (n, d).

    KID is the unbiased MMD^2 above over all m and n samples. The standard deviation is that
    of the same estimate over ``subsets`` random half-size subsets (m // 2 of x with n // 2 of
    y, drawn with ``seed``). Why half: the estimate's leading term is a mean over samples, and
    the spread of a mean over random halves of a sample equals the standard error of the mean
    over all of it (the delete-d jackknife with d = n / 2; Shao & Wu 1989), so the number
    estimates the uncertainty of the KID reported, not of a smaller-N one. Where x and y come
    from one distribution that term vanishes and the next one, which shrinks like 1 / N, is
    what is left: there half-size subsets overstate the spread (up to 2x), so "KID within a few
    SDs of 0" is a conservative test of "no difference". Needs m, n >= 4.
    """
    if min(len(x), len(y)) < MIN_SAMPLES:
        raise TooFewSamplesError(f"kid-digits needs at least {MIN_SAMPLES} samples in each "
                                 f"set, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    full = _subset_mmd2(kxx, kyy, kxy, torch.ones(1, len(x), dtype=torch.float64),
                        torch.ones(1, len(y), dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    ux, uy = (_half_subsets(size, subsets, gen) for size in (len(x), len(y)))
    spread = _subset_mmd2(kxx, kyy, kxy, ux, uy)
    return float(full[0]), float(spread.std())


def _half_subsets(size: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """(count, size) float64 0/1 rows, each choosing size // 2 samples at random."""
    chosen = torch.rand(count, size, generator=gen).argsort(1)[:, :size // 2]
    return torch.zeros(count, size, dtype=torch.float64).scatter_(1, chosen, 1.0)


class KidDigits(Metric):
    """KID between classifier features of fake and real digits (``kid_digits``) and its
    standard deviation over half-size subsets (``kid_digits_sd``): see :func:`kid`. Like
    fid-digits it is not comparable to Inception-feature KID from papers, only to kid_digits
    values made with the same classifier weights, at any N."""

    def compute(self, fake, real, context: MetricContext):
        from ganbench.quality.features import classifier_outputs

        value, sd = kid(classifier_outputs(fake).features, classifier_outputs(real).features,
                        seed=context.seed)
        return {"kid_digits": value, "kid_digits_sd": sd}
