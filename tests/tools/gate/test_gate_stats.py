"""tools/gate: the statistics (gatestats.py) and the quality rule (gate.py).

The gate itself runs with ``python -m tools.gate``; its proof against planted regressions is
``python -m tools.gate.selftest`` (results/regression-gate-selftest.md).
"""

from __future__ import annotations

import math

import pytest

from tools.gate import gate, gatestats


# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------
def test_walsh_averages_by_hand():
    assert gatestats.walsh_averages([0.0, 1.0, 4.0]) == [0.0, 0.5, 1.0, 2.0, 2.5, 4.0]


def test_hodges_lehmann_by_hand():
    # d = 1..10: Walsh averages are symmetric about 5.5, so the estimate is 5.5. n = 10,
    # M = 55, sd = sqrt(10*11*21/24) = 9.811, K = floor(27.5 - 1.96*9.811 - 0.5) = 7: the
    # interval is the 8th smallest and 8th largest Walsh average, 3.0 and 8.0 (the exact
    # table's 95% interval, ranks 9 and 47, is [3.5, 7.5]: ours is one rank wider).
    est, lo, hi = gatestats.hodges_lehmann_ci([float(i) for i in range(1, 11)])
    assert gatestats.signed_rank_k(10) == 7
    assert (est, lo, hi) == (5.5, 3.0, 8.0)


def test_identical_sides_are_within_noise():
    old = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.3, 0.85, 1.0]
    c = gatestats.compare("x", old, old, calls=1, limit=1.05)
    assert c.ratio == 1.0 and c.low == 1.0 and c.high == 1.0
    assert c.verdict == "within noise" and not c.failed


def test_a_clear_slowdown_fails_and_a_small_one_does_not():
    old = [1.0 + 0.01 * (i % 5) for i in range(20)]
    noise = [1.0 + 0.005 * ((7 * i) % 5 - 2) for i in range(20)]
    slow = gatestats.compare("x", old, [o * 1.10 * n for o, n in zip(old, noise)], 1, 1.05)
    assert slow.verdict == "REGRESSION" and slow.failed and slow.low > 1.05
    small = gatestats.compare("x", old, [o * 1.03 * n for o, n in zip(old, noise)], 1, 1.05)
    assert small.verdict == "slower" and not small.failed
    fast = gatestats.compare("x", old, [o * 0.8 * n for o, n in zip(old, noise)], 1, 1.05)
    assert fast.verdict == "faster"
    assert math.isclose(fast.ratio, 0.8, rel_tol=0.02)


def test_one_outlier_round_does_not_fail():
    old = [1.0] * 20
    new = [1.0 + 0.002 * (i % 3 - 1) for i in range(20)]
    new[5] = 3.0  # a neighbour took the core during one block
    c = gatestats.compare("x", old, new, 1, 1.05)
    assert not c.failed and c.low < 1.01


def test_compare_refuses_unpaired_rounds():
    with pytest.raises(ValueError):
        gatestats.compare("x", [1.0, 2.0], [1.0], 1, 1.05)


def test_every_line_names_the_interval_and_verdict():
    c = gatestats.compare("step dcgan", [0.1] * 10, [0.2] * 10, calls=2, limit=1.05)
    line = c.line()
    assert line.startswith("step dcgan") and "50.00 ms" in line and "100.00 ms" in line
    assert "ratio  2.000" in line and "[2.000, 2.000]" in line and "REGRESSION" in line
    assert gatestats.unpaired("attn new-attn", "new, no baseline").failed is False


# ------------------------------------------------------------------------------------------
# Quality rule
# ------------------------------------------------------------------------------------------
def test_quality_rule():
    old = {"status": "ok", "fid_digits": 400.0, "modes_covered": 2}
    ok = gate.judge_quality("dcgan", old, {"status": "ok", "fid_digits": 480.0,
                                           "modes_covered": 1})
    assert not ok["failed"] and "limit 500.0" in ok["verdict"]
    bad = gate.judge_quality("dcgan", old, {"status": "ok", "fid_digits": 520.0,
                                            "modes_covered": 2})
    assert bad["failed"] and bad["verdict"].startswith("REGRESSION")
    diverged = gate.judge_quality("dcgan", old, {"status": "diverged", "fid_digits": 300.0,
                                                 "modes_covered": 2})
    assert diverged["failed"]


def test_an_ungated_timing_is_shown_but_never_a_regression():
    """Emulated Triton timings (limit None) keep their ratio and interval on the line, and a
    30% slowdown there is 'slower', not REGRESSION; with a limit the same data fails."""
    old = [1.0 + 0.01 * (i % 5) for i in range(40)]
    new = [o * 1.30 for o in old]
    ungated = gatestats.compare("attn triton-attn", old, new, 1, None)
    assert ungated.verdict == "slower" and ungated.low > 1.25
    assert "not gated: Triton emulator time" in ungated.line() and "1.300" in ungated.line()
    assert gatestats.compare("attn triton-attn", old, new, 1, 1.08).verdict == "REGRESSION"


def test_emulated_attention_is_ungated_and_everything_else_keeps_its_limit():
    from tools.gate.gate import LIMITS, limit_for

    assert limit_for("attn triton-attn", emulated=True) is None
    assert limit_for("attn eager-attn") == LIMITS["attn"] == 1.08
    assert limit_for("step dcgan") == LIMITS["step"]
