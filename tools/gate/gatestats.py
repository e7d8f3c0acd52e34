"""The gate's statistics: a confidence interval on the new/old time ratio, and the verdict.

Each round times old and new back to back (order alternating), so round i gives one paired
log-ratio d_i = log(new_i / old_i): load that changes over minutes cancels inside a pair. The
ratio's estimate is exp of the Hodges-Lehmann estimator of the d_i (the median of all pairwise
means (d_i + d_j) / 2, i <= j), and its interval is the distribution-free one that inverts the
Wilcoxon signed-rank test (Hollander & Wolfe, *Nonparametric Statistical Methods*, ch. 3): the
order statistics of those pairwise means at ranks K+1 and M-K. It assumes only that the d_i
are independent and symmetric about the true log-ratio; a burst of load that hits one side of
one pair moves one d_i, and the estimator tolerates up to ~29% of pairs being such outliers.
It is deterministic: the same times give the same verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist, median
from typing import Optional, Sequence

CONFIDENCE = 0.95  # two-sided, so a FAIL means: 97.5% sure the slowdown exceeds the limit


def walsh_averages(d: Sequence[float]) -> list[float]:
    n = len(d)
    return sorted((d[i] + d[j]) / 2 for i in range(n) for j in range(i, n))


def signed_rank_k(n: int, confidence: float = CONFIDENCE) -> int:
    """How many Walsh averages to drop from each end for the ``confidence`` interval.

    The normal approximation to the signed-rank statistic (mean M/2, variance
    n(n+1)(2n+1)/24) with a continuity correction; within one rank of the exact tables for
    n >= 10, which is as few rounds as the gate accepts.
    """
    m = n * (n + 1) // 2
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    k = math.floor(m / 2 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24) - 0.5)
    return max(k, 0)


def hodges_lehmann_ci(d: Sequence[float],
                      confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(estimate, low, high) of the centre of ``d`` (see the module docstring)."""
    if len(d) < 2:
        raise ValueError("need at least 2 paired rounds")
    w = walsh_averages(d)
    k = signed_rank_k(len(d), confidence)
    k = min(k, (len(w) - 1) // 2)
    return median(w), w[k], w[len(w) - 1 - k]


@dataclass(frozen=True)
class Comparison:
    name: str
    old_median: Optional[float]   # seconds per call
    new_median: Optional[float]
    ratio: Optional[float]        # new/old, Hodges-Lehmann on paired log-ratios
    low: Optional[float]
    high: Optional[float]
    limit: Optional[float]        # FAIL when low > limit
    verdict: str                  # faster | slower | within noise | REGRESSION | ...
    rounds: int = 0

    @property
    def failed(self) -> bool:
        return self.verdict.startswith(("REGRESSION", "ERROR"))

    def line(self) -> str:
        def ms(x: Optional[float]) -> str:
            return "-" if x is None else f"{x * 1e3:.2f} ms"

        ratio = "-" if self.ratio is None else f"{self.ratio:.3f}"
        ci = "-" if self.low is None else f"[{self.low:.3f}, {self.high:.3f}]"
        limit = f" (fail if low > {self.limit:.2f})" if self.limit is not None else \
            " (not gated: Triton emulator time)" if self.ratio is not None else ""
        return (f"{self.name:28s} old {ms(self.old_median):>10s}  new {ms(self.new_median):>10s}"
                f"  ratio {ratio:>6s}  95% CI {ci:>15s}  {self.verdict}{limit}")


def compare(name: str, old: Sequence[float], new: Sequence[float], calls: int,
            limit: Optional[float]) -> Comparison:
    """Verdict on paired per-round block times ``old[i]``, ``new[i]`` (each ``calls`` calls).

    REGRESSION: the whole interval is above ``limit``; slower: above 1 but not wholly above
    the limit (reported, passes); faster: wholly below 1; within noise: the interval holds 1.
    ``limit`` None: shown, never a REGRESSION (a timing that cannot judge the code's speed).
    """
    if len(old) != len(new):
        raise ValueError("old and new need the same number of rounds")
    d = [math.log(b / a) for a, b in zip(old, new)]
    est, lo, hi = (math.exp(x) for x in hodges_lehmann_ci(d))
    if limit is not None and lo > limit:
        verdict = "REGRESSION"
    elif lo > 1:
        verdict = "slower"
    elif hi < 1:
        verdict = "faster"
    else:
        verdict = "within noise"
    return Comparison(name, median(old) / calls, median(new) / calls, est, lo, hi, limit,
                      verdict, len(d))


def unpaired(name: str, verdict: str, old: Optional[float] = None,
             new: Optional[float] = None) -> Comparison:
    """A row without a ratio: new, no baseline; removed; error."""
    return Comparison(name, old, new, None, None, None, None, verdict)
