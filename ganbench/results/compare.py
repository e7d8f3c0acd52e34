"""Compare two results: per row and metric, the change, which way is better, and a verdict.

The inputs are read by ganbench.results.sides (run tables, with one row per combination or
per combination and seed; bench-attention tables; pytest-benchmark JSON). Only metrics with a
direction in the column registry (ganbench.results.columns: the core's columns and each metric
plugin's MetricSpec) are compared; a change in a loss value or a learning rate is not better
or worse by itself. Contract of :func:`compare`:

- ``delta_pct`` is ``100 * (new - old) / |old|`` (NaN when old is 0 or either is missing);
  for a metric whose direction is ``closer`` (two-sided: precision, density, IS, class shares)
  it is the change of the distance to the real-data row, ``|new - real_new|`` against
  ``|old - real_old|``, each side against its own real row; without a real row on both sides
  such a metric is ``not comparable``;
- ``unchanged``: new == old;
- noise, in this order:
  * both sides have >= 2 seeds of the combination: Welch's t-test on the per-seed values (on
    the distances to the real row for closer metrics), Holm-adjusted over the combinations
    of that metric (ganbench.results.stats); ``within noise`` when p >= 0.05;
  * else, where both sides carry a spread (step time p10..p90; a bench row's p10..p90;
    pytest-benchmark's q1..q3): ``within noise`` when the new median lies inside the old range
    AND the old one inside the new (only the median's spread is stored, not the raw times);
  * else ``within noise`` when the value moved by less than :data:`NOISE_BAND_PCT` (1%);
- a metric *regresses* when it moves the bad way by more than its ``--fail-on`` threshold and
  is not within noise; for a closer metric the threshold bounds the growth of the distance
  to the real row (``--fail-on prdc_density:+10%`` or ``:-10%``: the distance may grow by at
  most 10%; either sign reads the same);
- a combination whose status was ``ok`` and is not ``ok`` in NEW (diverged, failed, crashed; a
  seed of it) is always a regression: its numbers are gone, worse than any threshold;
- quality metrics are tagged with the ``metric_image_size`` and ``metric_n`` they were computed
  at; where the two sides differ in either, the metric is ``not comparable`` for that row
  (whatever the training ``image_size`` says): no delta, never better, worse or a regression;
- rows present on one side only are reported as ``only in old`` / ``only in new`` and never
  fail the comparison.
Input errors raise :class:`ganbench.errors.UserError` with one line (the CLI exits 2).
"""

from __future__ import annotations

import math
import re
from typing import Optional

import pandas as pd

from ganbench.errors import UserError
from ganbench.results import columns as registry
from ganbench.results.columns import (CLOSER, HIGHER, LOWER, OK_STATUS,  # noqa: F401
                                      REFERENCE_STATUS, direction, is_quality)
from ganbench.results.sides import (BENCH_KIND, QUALITY_TAGS, SETTING_COLUMNS,  # noqa: F401
                                    Side, Spread, bench_key, from_run_table, is_bench_table,
                                    read_side)
from ganbench.results.stats import ALPHA, TEST_METHOD, holm, welch

WAYS = (HIGHER, LOWER, CLOSER)
FAIL_ON_ITEM = re.compile(r"^([A-Za-z0-9_]+):([+-])(\d+(?:\.\d+)?)%$")
# A change smaller than this, on a metric with neither a spread nor seeds, is "within noise".
# The steadiest quality metrics move more than this from sampling alone: re-splitting the
# real held-out digits 8 times (results/quality-metric-check, N = 1001) gave standard
# deviations of 0.55% of the mean for is_digits, 0.85% for precision, 0.79% for coverage
# (and 38% for fid_digits), so two standard deviations of the steadiest are about 1.1%.
# The table prints changes to 0.1%: without a band, "+0.0%" could read "better".
NOISE_BAND_PCT = 1.0

# Verdicts, worst first.
REGRESSION = "REGRESSION"
STATUS_LOST = "REGRESSION (status)"
WORSE, BETTER, SAME = "worse", "better", "unchanged"
NOISE = "within noise"
NOT_COMPARABLE = "not comparable"
ONLY_OLD, ONLY_NEW, MISSING = "only in old", "only in new", "missing value"

COLUMNS = ["key", "metric", "better", "old", "new", "delta_pct", "threshold_pct",
           "old_low", "old_high", "old_count", "new_low", "new_high", "new_count",
           "old_real", "new_real", "p_value", "effect_g", "test", "verdict"]


def parse_fail_on(text: Optional[str]) -> dict[str, float]:
    """'img_per_s:-10%,fid_digits:+15%' -> {'img_per_s': -10.0, 'fid_digits': 15.0}.

    Strict: every item is METRIC:(+|-)NUMBER%, the metric has a known direction, and the sign
    points the bad way (a drop for higher-is-better metrics, a rise for lower-is-better), so a
    typo cannot silently turn a check off. A closer-is-better metric takes either sign, both
    meaning "the distance to the real row may grow by at most N%", stored as +N. Raises
    UserError with one line otherwise.
    """
    if text is None:
        return {}
    thresholds: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        match = FAIL_ON_ITEM.match(item)
        if not match:
            raise UserError(f"--fail-on item {item!r} is not METRIC:+N% or METRIC:-N% "
                            "(e.g. img_per_s:-10%,fid_digits:+15%)")
        metric, sign, number = match.groups()
        way = direction(metric)
        if way is None:
            known = list(registry.core_directions()) + list(registry.metric_directions())
            raise UserError(f"--fail-on: {metric!r} has no known better direction (a metric "
                            "plugin declares it in MetricSpec.directions); known: "
                            + ", ".join(known))
        expected = "-" if way == HIGHER else "+"
        if way != CLOSER and sign != expected:
            raise UserError(f"--fail-on: {metric} is better when {way}, so its threshold is "
                            f"{expected}N% (got {item})")
        if metric in thresholds:
            raise UserError(f"--fail-on names {metric} twice")
        thresholds[metric] = float(number) if way == CLOSER else float(sign + number)
    return thresholds


# ------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------
def within_noise(old: float, new: float, a: Optional[Spread], b: Optional[Spread]) -> bool:
    """The spread rule: each median inside the other side's range."""
    if a is None or b is None:
        return False
    return a.low <= new <= a.high and b.low <= old <= b.high


def _delta(old: float, new: float) -> float:
    return 100.0 * (new - old) / abs(old) if old != 0 else float("nan")


def _verdict(old: float, new: float, way: str, threshold: Optional[float],
             noise: bool = False, judged: Optional[tuple[float, float]] = None
             ) -> tuple[float, str]:
    """(delta_pct, verdict) of one value pair. ``judged``: the (old, new) pair the direction
    reads (the distances to the real row, for a closer metric), default (old, new)."""
    if math.isnan(old) and math.isnan(new):
        return float("nan"), SAME
    if math.isnan(old) or math.isnan(new):
        return float("nan"), MISSING
    a, b = judged if judged is not None else (old, new)
    delta = _delta(a, b)
    if new == old:
        return 0.0, SAME
    if noise or abs(_delta(old, new)) < NOISE_BAND_PCT:
        return delta, NOISE
    worse = b < a if way == HIGHER else b > a
    if not worse:
        return delta, BETTER
    if threshold is not None and (math.isnan(delta) or abs(delta) > abs(threshold)):
        return delta, REGRESSION  # old == 0 and worse: past any relative threshold
    return delta, WORSE


def incomparable(old: Side, new: Side, key: str) -> Optional[str]:
    """Why the quality numbers of ``key`` cannot be compared ('metric_image_size 32 in old,
    64 in new'), or None."""
    a, b = old.tags.get(key, {}), new.tags.get(key, {})
    why = [f"{t} {a[t]} in old, {b[t]} in new" for t in QUALITY_TAGS
           if t in a and t in b and a[t] != b[t]]
    return "; ".join(why) or None


def _scores(side: Side, key: str, metric: str, way: str) -> list[float]:
    values = side.samples.get(key, {}).get(metric, [])
    if way == HIGHER:
        return [-v for v in values]
    if way == CLOSER:
        real = side.real_value(metric)
        return [registry.distance_to_real(v, real) for v in values]
    return list(values)


def compare(old: Side, new: Side, thresholds: Optional[dict[str, float]] = None,
            metrics: Optional[list[str]] = None) -> pd.DataFrame:
    """The long table: one row per (key, metric) in COLUMNS order; see the module docstring.
    ``metrics``: compare only these columns (default: every column with a direction)."""
    thresholds = thresholds or {}
    if old.kind != new.kind:
        raise UserError(f"cannot compare a {old.kind} ({old.label}) with a {new.kind} "
                        f"({new.label})")
    if not [k for k in old.rows if k in new.rows]:
        raise UserError(f"{old.label} and {new.label} have no {_what(old)} in common")
    metrics_seen = {m for side in (old, new) for row in side.rows.values() for m in row}
    unknown = sorted(set(thresholds) - metrics_seen)
    if unknown:
        raise UserError(f"--fail-on names {', '.join(unknown)}, which neither input has")
    if metrics is not None:
        missing = [m for m in metrics if m not in metrics_seen]
        if missing:
            raise UserError(f"--metrics names {', '.join(missing)}, which neither input has "
                            "with a known direction; they have: "
                            + ", ".join(sorted(metrics_seen)))
    out = []
    for key in list(old.rows) + [k for k in new.rows if k not in old.rows]:
        if key not in new.rows or key not in old.rows:
            out.append(_row(key, "", verdict=ONLY_OLD if key in old.rows else ONLY_NEW))
            continue
        was, now = old.status.get(key, OK_STATUS), new.status.get(key, OK_STATUS)
        if was == OK_STATUS and now != OK_STATUS:
            out.append(_row(key, "status", verdict=f"{STATUS_LOST}: {was} -> {now}"))
        names = list(old.rows[key]) + [m for m in new.rows[key] if m not in old.rows[key]]
        for metric in (names if metrics is None else [m for m in names if m in metrics]):
            out.append(_compare_one(old, new, key, metric, thresholds.get(metric)))
    _seed_tests(out, thresholds)
    for row in out:
        row.pop("_threshold", None)
    return pd.DataFrame(out, columns=COLUMNS)


def _row(key: str, metric: str, **values) -> dict:
    nan = float("nan")
    row = {"key": key, "metric": metric, "better": "", "old": nan, "new": nan,
           "delta_pct": nan, "threshold_pct": nan, "old_low": nan, "old_high": nan,
           "old_count": nan, "new_low": nan, "new_high": nan, "new_count": nan,
           "old_real": nan, "new_real": nan, "p_value": nan, "effect_g": nan, "test": ""}
    row.update(values)
    return row


def _compare_one(old: Side, new: Side, key: str, metric: str,
                 threshold: Optional[float]) -> dict:
    nan = float("nan")
    a, b = old.rows[key].get(metric, nan), new.rows[key].get(metric, nan)
    way = direction(metric)
    sa, sb = old.spread.get(key, {}).get(metric), new.spread.get(key, {}).get(metric)
    row = _row(key, metric, better=way, old=a, new=b,
               threshold_pct=nan if threshold is None else threshold,
               old_low=sa.low if sa else nan, old_high=sa.high if sa else nan,
               old_count=sa.count if sa else nan, new_low=sb.low if sb else nan,
               new_high=sb.high if sb else nan, new_count=sb.count if sb else nan)
    row["_threshold"] = threshold
    refused = incomparable(old, new, key) if is_quality(metric) else None
    judged = None
    if way == CLOSER and not refused:
        row["old_real"], row["new_real"] = old.real_value(metric), new.real_value(metric)
        sides = [name for name, v in (("old", row["old_real"]), ("new", row["new_real"]))
                 if math.isnan(v)]
        if sides:
            refused = f"no real-data row in {' and '.join(sides)}"
        else:
            judged = (registry.distance_to_real(a, row["old_real"]) if not math.isnan(a) else a,
                      registry.distance_to_real(b, row["new_real"]) if not math.isnan(b) else b)
    if refused:
        row["verdict"] = f"{NOT_COMPARABLE}: {refused}"
        return row
    seeds = len(old.samples.get(key, {}).get(metric, [])) >= 2 and len(
        new.samples.get(key, {}).get(metric, [])) >= 2
    row["delta_pct"], row["verdict"] = _verdict(a, b, way, threshold,
                                                not seeds and within_noise(a, b, sa, sb),
                                                judged)
    if seeds:
        test = welch(_scores(old, key, metric, way), _scores(new, key, metric, way))
        # scores are lower-is-better: g of (old - new) > 0 means NEW is better
        row.update(p_value=test.p, effect_g=test.g, test=TEST_METHOD)
    return row


def _seed_tests(rows: list[dict], thresholds: dict[str, float]) -> None:
    """Seed-tested rows: Holm-adjust each metric's p-values over its combinations, then the
    verdict is within noise (adjusted p >= 0.05) or better / worse / REGRESSION."""
    by_metric: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("test") and row["verdict"] not in (SAME, MISSING):
            by_metric.setdefault(row["metric"], []).append(row)
    for family in by_metric.values():
        for row, p in zip(family, holm([r["p_value"] for r in family])):
            row["p_value"] = p
            small = abs(_delta(row["old"], row["new"])) < NOISE_BAND_PCT
            if math.isnan(p) or p >= ALPHA or small:
                row["verdict"] = NOISE
                continue
            better = row["effect_g"] > 0
            threshold = row.get("_threshold")
            delta = row["delta_pct"]
            past = threshold is not None and (math.isnan(delta) or abs(delta) > abs(threshold))
            row["verdict"] = BETTER if better else REGRESSION if past else WORSE


def refused_metrics(table: pd.DataFrame) -> dict[str, list[str]]:
    """metric -> the distinct reasons it was not comparable, for the one-line notes."""
    out: dict[str, list[str]] = {}
    hits = table[table["verdict"].str.startswith(NOT_COMPARABLE)]
    for metric, verdict in zip(hits["metric"], hits["verdict"]):
        reason = verdict.split(": ", 1)[1]
        if reason not in out.setdefault(metric, []):
            out[metric].append(reason)
    return out


def setting_notes(old: Side, new: Side) -> list[str]:
    """One line per setting that differs between the two sides, for rows on both sides, and
    one on the seeds where they differ."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for key in old.rows:
        a, b = old.settings.get(key, {}), new.settings.get(key, {})
        for column in SETTING_COLUMNS:
            if column in a and column in b and a[column] != b[column]:
                seen.setdefault((column, a[column], b[column]), []).append(key)
    notes = [f"{column} differs: {x} in old, {y} in new ({len(keys)} row(s), e.g. {keys[0]})"
             for (column, x, y), keys in seen.items()]
    return notes + seed_notes(old, new)


def seed_notes(old: Side, new: Side) -> list[str]:
    """Where the two runs' seeds (or their number) differ for combinations on both sides."""
    differ: dict[tuple[str, str], list[str]] = {}
    for key in old.rows:
        if key not in new.rows:
            continue
        a, b = old.seeds.get(key, []), new.seeds.get(key, [])
        if (len(a) > 1 or len(b) > 1) and a != b:
            differ.setdefault((_seed_text(a), _seed_text(b)), []).append(key)
    notes = []
    for (a, b), keys in differ.items():
        note = f"seeds differ: {a} in old, {b} in new ({len(keys)} combination(s), e.g. {keys[0]})"
        if a.startswith("1 seed") or b.startswith("1 seed"):
            note += "; one side has a single seed, so its value is compared without a test"
        notes.append(note)
    return notes


def _seed_text(seeds: list[str]) -> str:
    if len(seeds) <= 1:
        return f"1 seed ({seeds[0]})" if seeds else "1 seed"
    return f"{len(seeds)} seeds ({','.join(seeds)})"


def _what(side: Side) -> str:
    return {"benchmark": "benchmark", "bench-attention": "bench row"}.get(side.kind,
                                                                           "combination")


def regressions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that make the comparison fail (threshold regressions and lost statuses)."""
    return table[table["verdict"].str.startswith(REGRESSION)]


def summary_line(table: pd.DataFrame) -> str:
    """'3 better, 1 worse, 8 within noise, 2 unchanged; 0 regressions' (worse counts the
    regressions among the metrics; the rest is listed only where present)."""
    verdicts = [v.split(":")[0] for v in table["verdict"]]
    count = {v: verdicts.count(v) for v in set(verdicts)}
    parts = [f"{count.get(BETTER, 0)} better",
             f"{count.get(WORSE, 0) + count.get(REGRESSION, 0)} worse",
             f"{count.get(NOISE, 0)} within noise"]
    for name in (SAME, NOT_COMPARABLE, MISSING, ONLY_OLD, ONLY_NEW):
        if count.get(name):
            parts.append(f"{count[name]} {name}")
    bad = len(regressions(table))
    return f"{', '.join(parts)}; {bad} regression{'' if bad == 1 else 's'}"

