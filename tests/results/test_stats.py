"""ganbench.results.stats against hand-computed values: the order-statistic interval of the
median and its coverage, Welch's t-test, Hedges' g, Holm's adjustment."""

from __future__ import annotations

import math

import pytest

from ganbench.results import stats


# ------------------------------------------------------------------------------------------
# Coverage of [x_(k), x_(n+1-k)]: 1 - 2 * P(Binomial(n, 1/2) <= k - 1), by hand
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,expected", [
    (3, 1, 1 - 2 / 8),                      # 0.75
    (4, 1, 1 - 2 / 16),                     # 0.875
    (5, 1, 1 - 2 / 32),                     # 0.9375
    (6, 1, 1 - 2 / 64),                     # 0.96875
    (9, 2, 1 - 2 * (1 + 9) / 512),          # 0.9609375
    (10, 2, 1 - 2 * (1 + 10) / 1024),       # 0.978515625
    (10, 3, 1 - 2 * (1 + 10 + 45) / 1024),  # 0.890625: below 95%, so n=10 keeps k=2
])
def test_coverage_is_the_binomial_sum(n, k, expected):
    assert stats.coverage(n, k) == pytest.approx(expected, abs=1e-12)


def test_coverage_rejects_impossible_k():
    with pytest.raises(ValueError):
        stats.coverage(3, 3)
    with pytest.raises(ValueError):
        stats.coverage(3, 0)


@pytest.mark.parametrize("values,median,low,high,coverage", [
    ([5.0, 1.0, 3.0], 3.0, 1.0, 5.0, 0.75),                        # n=3: min-max, 75%
    ([4.0, 1.0, 3.0, 2.0], 2.5, 1.0, 4.0, 0.875),                  # n=4: even median
    ([1, 2, 3, 4, 5, 6], 3.5, 1.0, 6.0, 0.96875),                  # n=6: first 95% one
    ([9, 1, 8, 2, 7, 3, 6, 4, 5], 5.0, 2.0, 8.0, 0.9609375),       # n=9: k=2
    (list(range(10, 0, -1)), 5.5, 2.0, 9.0, 0.978515625),          # n=10: k=2
    ([2.0, float("nan"), 4.0, None, 3.0], 3.0, 2.0, 4.0, 0.75),    # missing values dropped
])
def test_median_interval_by_hand(values, median, low, high, coverage):
    out = stats.median_interval(values)
    assert (out.median, out.low, out.high) == (median, low, high)
    assert out.coverage == pytest.approx(coverage)
    assert out.n == len([v for v in values if v is not None and v == v])


def test_median_interval_of_one_or_no_value():
    one = stats.median_interval([7.0])
    assert (one.median, one.low, one.high, one.n) == (7.0, 7.0, 7.0, 1)
    assert math.isnan(one.coverage)
    none = stats.median_interval([float("nan")])
    assert none.n == 0 and math.isnan(none.median)


# ------------------------------------------------------------------------------------------
# Welch, Hedges' g, Holm
# ------------------------------------------------------------------------------------------
def test_welch_matches_the_formula():
    from scipy.stats import t as student

    # a = 1,2,3 and b = 4,5,6: means 2 and 5, variances 1 and 1, so
    # t = -3 / sqrt(1/3 + 1/3) = -3.674 and Welch's df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4.
    test = stats.welch([1, 2, 3], [4, 5, 6])
    t = 3 / math.sqrt(2 / 3)
    assert test.diff == -3.0
    assert test.p == pytest.approx(2 * student.sf(t, 4), rel=1e-9)
    assert 0.02 < test.p < 0.025

    # Hedges' g: pooled SD 1, d = -3, J = 1 - 3 / (4 * 6 - 9) = 0.8, so g = -2.4
    assert test.g == pytest.approx(-2.4)
    assert (test.n_a, test.n_b) == (3, 3)


@pytest.mark.parametrize("a,b", [
    ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    ([10.0, 12.5, 11.0, 30.0], [9.0, 9.5]),             # unequal n and variances
    ([0.5, 0.51, 0.49], [0.5, 0.7, 0.1, 0.9, 0.3]),
])
def test_welch_agrees_with_scipy(a, b):
    from scipy.stats import ttest_ind

    assert stats.welch(a, b).p == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue,
                                                rel=1e-9)


def test_welch_edge_cases():
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0     # constant and equal
    constant = stats.welch([1.0, 1.0], [2.0, 2.0])          # constant and different
    assert constant.p == 0.0 and constant.g == -math.inf
    single = stats.welch([1.0], [2.0, 3.0])                 # one value: no test
    assert math.isnan(single.p) and single.n_a == 1
    assert math.isnan(stats.welch([], [1, 2]).p)


def test_three_seeds_a_side_can_reach_95_percent_with_welch():
    # The reason for Welch over a rank test: with 3 values a side the smallest two-sided
    # Mann-Whitney p is 2/20 = 0.1, never < 0.05, however far apart the sets are.
    from scipy.stats import mannwhitneyu

    a, b = [10.0, 11.0, 12.0], [20.0, 21.0, 22.0]
    assert mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue == pytest.approx(
        0.1)
    assert stats.welch(a, b).p < 0.001


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])  # NaN does not count in m
