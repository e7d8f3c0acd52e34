"""Verdicts over seeds on hand-made per-seed tables: one distribution twice is
indistinguishable; a clear shift is better or worse with the right sign for lower, higher and
closer-to-real columns; too few seeds, no real row, --reference."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ganbench.results import verdicts as v


def table(values: dict[str, dict[str, list[float]]], real: dict | None = None) -> pd.DataFrame:
    """combo -> column -> per-seed values (seeds 0, 1, ...), plus one real-data row."""
    rows = []
    for combo, columns in values.items():
        n = len(next(iter(columns.values())))
        for seed in range(n):
            rows.append({"combo": combo, "status": "ok", "seed": seed,
                         **{c: vals[seed] for c, vals in columns.items()}})
    if real is not None:
        rows.append({"combo": "real data", "status": "reference", **real})
    return pd.DataFrame(rows)


def one(out: pd.DataFrame, combo: str, vs: str, metric: str) -> dict:
    hit = out[(out["combo"] == combo) & (out["vs"] == vs) & (out["metric"] == metric)]
    assert len(hit) == 1, (combo, vs, metric)
    return hit.iloc[0].to_dict()


def test_the_same_distribution_is_indistinguishable():
    df = table({"a": {"fid_digits": [10.0, 12.0, 11.0], "img_per_s": [100.0, 98.0, 102.0]},
                "b": {"fid_digits": [11.0, 10.0, 12.0], "img_per_s": [101.0, 99.0, 100.0]}})
    out = v.verdicts(df)
    assert set(out["verdict"]) == {v.INDISTINGUISHABLE}
    fid = one(out, "a", "b", "fid_digits")
    assert fid["p_value"] == pytest.approx(1.0) and fid["effect_g"] == pytest.approx(0.0)


@pytest.mark.parametrize("metric,good,bad", [
    ("fid_digits", [10.0, 11.0, 12.0], [20.0, 21.0, 22.0]),      # lower is better
    ("img_per_s", [100.0, 101.0, 102.0], [50.0, 51.0, 52.0]),    # higher is better
    ("is_digits", [2.20, 2.21, 2.19], [3.0, 3.1, 2.9]),          # closer to real 2.15
    ("is_digits", [2.20, 2.21, 2.19], [1.0, 1.1, 0.9]),          # ... from either side
    ("prdc_precision", [0.88, 0.89, 0.87], [1.0, 0.999, 1.0]),   # real 0.90: 1.00 is worse
])
def test_a_clear_shift_is_better_or_worse_with_the_right_sign(metric, good, bad):
    df = table({"good": {metric: good}, "bad": {metric: bad}},
               real={"is_digits": 2.15, "prdc_precision": 0.90})
    out = v.verdicts(df)
    row = one(out, "good", "bad", metric)
    assert row["verdict"] == v.BETTER and row["effect_g"] > 0 and row["p_holm"] < 0.05
    flipped = one(v.verdicts(df, reference="good"), "bad", "good", metric)
    assert flipped["verdict"] == v.WORSE and flipped["effect_g"] < 0


def test_closer_is_judged_by_the_distance_not_the_value():
    # 2.20 and 2.10 are both 0.05 from the real 2.15: as good as each other, though a
    # "higher is better" reading would call the first clearly better.
    df = table({"above": {"is_digits": [2.20, 2.21, 2.19]},
                "below": {"is_digits": [2.10, 2.09, 2.11]}}, real={"is_digits": 2.15})
    row = one(v.verdicts(df), "above", "below", "is_digits")
    assert row["verdict"] == v.INDISTINGUISHABLE and row["p_value"] == pytest.approx(1.0)


def test_closer_without_a_real_row_and_too_few_seeds():
    df = table({"a": {"is_digits": [2.2, 2.3], "fid_digits": [1.0, 2.0]},
                "b": {"is_digits": [2.2, 2.4], "fid_digits": [3.0, 4.0]}})
    out = v.verdicts(df)
    assert one(out, "a", "b", "is_digits")["verdict"] == v.NO_REAL
    lone = pd.concat([df, pd.DataFrame([{"combo": "c", "status": "ok", "seed": 0,
                                         "fid_digits": 9.0}])])
    assert one(v.verdicts(lone), "a", "c", "fid_digits")["verdict"] == v.TOO_FEW


def test_real_values_per_seed_when_the_table_has_them():
    df = pd.DataFrame([{"combo": "real data", "status": "reference", "seed": 0, "x": 1.0},
                       {"combo": "real data", "status": "reference", "seed": 1, "x": 3.0}])
    assert v.real_values(df, "x", [0, 1, 2]) == [1.0, 3.0, 2.0]  # seed 2: the median
    assert v.real_values(df, "missing", [0]) is None


def test_failed_seeds_are_left_out_and_holm_counts_the_pairs():
    df = table({"a": {"fid_digits": [10.0, 11.0, 12.0]}, "b": {"fid_digits": [10.5, 11.5, 12.5]},
                "c": {"fid_digits": [30.0, 31.0, 32.0]}})
    df.loc[(df["combo"] == "c") & (df["seed"] == 2), ["status", "fid_digits"]] = [
        "diverged", float("nan")]
    out = v.verdicts(df)
    assert len(out) == 3  # a-b, a-c, b-c
    ac = one(out, "a", "c", "fid_digits")
    assert ac["n_vs"] == 2 and ac["verdict"] == v.BETTER
    ps = list(out["p_value"])
    assert list(out["p_holm"]) == pytest.approx(
        __import__("ganbench.results.stats", fromlist=["holm"]).holm(ps))
    assert all(h >= p for h, p in zip(out["p_holm"], ps))


def test_reference_must_be_a_combination():
    df = table({"a": {"fid_digits": [1.0, 2.0]}, "b": {"fid_digits": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="not a combination"):
        v.verdicts(df, reference="real data")


def test_render_lists_decided_rows_and_counts_the_rest():
    df = table({"a": {"fid_digits": [10.0, 11.0, 12.0], "img_per_s": [100.0, 98.0, 102.0]},
                "b": {"fid_digits": [20.0, 21.0, 22.0], "img_per_s": [101.0, 99.0, 100.0]}})
    text = v.render(v.verdicts(df), width=100, style="simple")
    assert "fid_digits" in text and "better" in text and "img_per_s" not in text.splitlines()[2]
    assert "1 decided, 1 indistinguishable at 95%" in text and "Welch" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert not math.isnan(v.verdicts(df)["p_holm"].iloc[0])
