"""Compare two results: per row and metric, the change, which way is better, and a verdict.

Inputs (both sides must be the same kind):
- run tables: a run folder, or its ``results.json`` / ``results.csv``; rows are keyed by
  ``combo`` (the real-data reference row is left out: it measures the metric, not a model);
- bench-attention tables (``attention-bench.json``/``.csv`` from ``ganbench bench attention``,
  or its folder); rows are keyed by kernel, site (shape) and pass:
  ``"sdpa-attn / G 16x16 (N=256) / fwd+bwd"``; the metrics are the median time per call (with
  its p10/p90 and count), the CUDA-graph replay time, the error and the extra memory;
- pytest-benchmark JSON files (``--benchmark-json``); rows are keyed by benchmark ``name``
  (``fullname`` when names repeat in a file); the metric is the ``median`` time (spread: its
  q1..q3 and rounds), plus any numeric ``extra_info`` entry whose direction is known.

Only metrics with a known direction are compared: the core's columns in :data:`DIRECTIONS`
and each metric plugin's own columns, which its MetricSpec declares (``directions``); a change
in a loss value or a learning rate is not better or worse by itself. Contract of
:func:`compare`:
- ``delta_pct`` is ``100 * (new - old) / |old|`` (NaN when old is 0 or either side is missing);
- noise: where both sides carry a spread for a metric (step time p10..p90 and count; a bench
  row's p10_ms..p90_ms; pytest-benchmark's q1..q3), the change is ``within noise`` when the new
  median lies inside the old p10..p90 range AND the old median inside the new one. Only the
  median's spread is stored (not the raw step times), so this is the rule: a shift that moves
  either median out of the other's range is a real change;
- a metric *regresses* when it moves the bad way by more than its ``--fail-on`` threshold and
  is not within noise;
- a combination whose status was ``ok`` and is not in NEW (diverged, failed, crashed) is always a
  regression: its numbers are gone, which is worse than any threshold;
- quality metrics (a metric plugin's columns) are tagged with the ``image_size`` and
  ``metric_n`` they were computed at; where the two sides differ in either, the metric is
  ``not comparable`` for that row (fid at 32 px and at 64 px differ by ~70 from resizing
  alone): no delta, never better, worse or a regression. Throughput is still compared;
- rows present on one side only are reported with verdict ``only in old`` / ``only in new`` and
  never fail the comparison.
Input errors raise :class:`ganbench.errors.UserError` with one line (the CLI exits 2).
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

import pandas as pd

from ganbench.errors import UserError

HIGHER, LOWER = "higher", "lower"
WAYS = (HIGHER, LOWER)

# Which way is better for the core's own columns (shell-style patterns, first match wins).
# Quality metrics are not listed here: each metric plugin declares its columns' directions in
# its MetricSpec (see metric_directions). A column neither names is not compared.
DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("img_per_s", HIGHER),
    ("step_ms_*", LOWER),
    ("peak_mem_*", LOWER),
    ("time_to_target_s", LOWER),
    ("median", LOWER),  # pytest-benchmark: seconds per call
    # bench attention
    ("median_ms", LOWER),
    ("graph_median_ms", LOWER),
    ("rel_err_max", LOWER),
    ("peak_extra_mem_bytes", LOWER),
)

# Run settings that make two rows' numbers incomparable when they differ (reported, not fatal:
# comparing batch 16 with batch 64 on purpose is legitimate, doing it by accident is not).
SETTING_COLUMNS = ("batch_size", "image_size", "steps", "dtype", "device_name", "data",
                   "digits", "compile", "batch")
# What a quality number was computed at: differing values make it not comparable at all.
QUALITY_TAGS = ("image_size", "metric_n")

OK_STATUS = "ok"
REFERENCE_STATUS = "reference"
BENCH_KIND = "ganbench-bench-attention"  # the "kind" of bench attention's JSON

FAIL_ON_ITEM = re.compile(r"^([A-Za-z0-9_]+):([+-])(\d+(?:\.\d+)?)%$")

# Verdicts, worst first (the order rows sort in within a key).
REGRESSION = "REGRESSION"
STATUS_LOST = "REGRESSION (status)"
WORSE, BETTER, SAME = "worse", "better", "same"
NOISE = "within noise"
NOT_COMPARABLE = "not comparable"
ONLY_OLD, ONLY_NEW, MISSING = "only in old", "only in new", "missing value"


_DIRECTIONS_CACHE: list[dict[str, str]] = []


def metric_directions() -> dict[str, str]:
    """Column pattern -> 'higher'/'lower', from every registered metric plugin's MetricSpec
    (built-in and third-party). Empty, with a warning, when the plugins cannot be loaded
    (compare still works on throughput); only a success is cached."""
    if _DIRECTIONS_CACHE:
        return _DIRECTIONS_CACHE[0]
    try:
        from ganbench.registry import get_registry

        specs = get_registry().metrics
    except Exception as exc:  # compare must still work on throughput when plugins are broken
        import warnings

        warnings.warn(f"metric directions unavailable, quality columns are not compared: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        return {}
    out: dict[str, str] = {}
    for spec in specs.values():
        for pattern, way in getattr(spec, "directions", ()):
            out.setdefault(pattern, way)
    _DIRECTIONS_CACHE.append(out)
    return out


metric_directions.cache_clear = _DIRECTIONS_CACHE.clear  # for tests that swap the registry


def is_quality(metric: str) -> bool:
    """True for a column a metric plugin declares (fid_digits, prdc_precision, ...)."""
    return any(fnmatch.fnmatchcase(metric, p) for p in metric_directions()) and not any(
        fnmatch.fnmatchcase(metric, p) for p, _ in DIRECTIONS)


def direction(metric: str) -> Optional[str]:
    """'higher' or 'lower' when that way is better for ``metric``, else None: the core's
    DIRECTIONS first, then the metric plugins' declared directions."""
    for pattern, way in DIRECTIONS + tuple(metric_directions().items()):
        if fnmatch.fnmatchcase(metric, pattern):
            return way
    return None


def parse_fail_on(text: Optional[str]) -> dict[str, float]:
    """'img_per_s:-10%,fid_digits:+15%' -> {'img_per_s': -10.0, 'fid_digits': 15.0}.

    Strict: every item is METRIC:(+|-)NUMBER%, the metric has a known direction, and the sign
    points the bad way (a drop for higher-is-better metrics, a rise for lower-is-better), so a
    typo cannot silently turn a check off. Raises UserError with one line otherwise.
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
            known = [p for p, _ in DIRECTIONS] + list(metric_directions())
            raise UserError(f"--fail-on: {metric!r} has no known better direction (a metric "
                            "plugin declares it in MetricSpec.directions); known: "
                            + ", ".join(known))
        expected = "-" if way == HIGHER else "+"
        if sign != expected:
            raise UserError(f"--fail-on: {metric} is better when {way}, so its threshold is "
                            f"{expected}N% (got {item})")
        if metric in thresholds:
            raise UserError(f"--fail-on names {metric} twice")
        thresholds[metric] = float(sign + number)
    return thresholds


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
class Spread(NamedTuple):
    """The spread of a median: low..high (p10..p90, or q1..q3) over ``count`` samples."""

    low: float
    high: float
    count: float
    kind: str = "p10-p90"


@dataclass
class Side:
    """One input, normalised: kind ('run', 'bench-attention' or 'benchmark'), rows
    key -> {metric: value}, and per key the spread of metrics that have one and the tags
    (image_size, metric_n) its quality numbers were computed at."""

    kind: str
    label: str
    rows: dict[str, dict[str, float]]
    status: dict[str, str]
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> setting -> value
    spread: dict[str, dict[str, Spread]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)


def _number(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _spread(record: dict, low: str, high: str, count: str, kind: str = "p10-p90",
            scale=None) -> Optional[Spread]:
    lo, hi = _number(record.get(low)), _number(record.get(high))
    if math.isnan(lo) or math.isnan(hi):
        return None
    if scale is not None:  # a rate from times: the slow end (high time) is the low rate
        lo, hi = scale(hi), scale(lo)
    return Spread(lo, hi, _number(record.get(count)), kind)


def _run_spreads(record: dict) -> dict[str, Spread]:
    out = {}
    step = _spread(record, "step_ms_p10", "step_ms_p90", "timed_steps")
    if step:
        out["step_ms_median"] = step
        batch = _number(record.get("batch_size"))
        if not math.isnan(batch):
            rate = _spread(record, "step_ms_p10", "step_ms_p90", "timed_steps",
                           scale=lambda ms: batch * 1000.0 / ms if ms else float("nan"))
            if rate:
                out["img_per_s"] = rate
    return out


# Columns shown as a spread beside their median instead of being compared on their own.
SPREAD_SOURCES = {"step_ms_p10", "step_ms_p90"}


def _from_run_table(df: pd.DataFrame, label: str) -> Side:
    if "combo" not in df.columns:
        raise UserError(f"{label}: results table has no 'combo' column")
    rows: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    settings: dict[str, dict[str, str]] = {}
    spreads: dict[str, dict[str, Spread]] = {}
    tags: dict[str, dict[str, str]] = {}
    metrics = [c for c in df.columns if direction(c) is not None and c != "median"
               and c not in SPREAD_SOURCES]
    for record in df.to_dict("records"):
        state = str(record.get("status", OK_STATUS))
        if state == REFERENCE_STATUS:
            continue
        key = str(record["combo"])
        if key in rows:
            raise UserError(f"{label}: combination {key!r} appears twice")
        rows[key] = {m: _number(record.get(m)) for m in metrics}
        status[key] = state
        settings[key] = _settings(record)
        spreads[key] = _run_spreads(record)
        tags[key] = {t: _setting(record[t]) for t in QUALITY_TAGS
                     if t in record and not pd.isna(record[t])}
    return Side("run", label, rows, status, settings, spreads, tags)


def _settings(record: dict) -> dict[str, str]:
    return {c: _setting(record[c]) for c in SETTING_COLUMNS
            if c in record and not _isna(record[c])}


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def bench_key(record: dict) -> str:
    """The row key of a bench-attention row: kernel, site with its N, and pass."""
    n = record.get("N")
    shape = f"{record.get('site')} (N={int(n)})" if not _isna(n) else str(record.get("site"))
    return f"{record.get('kernel')} / {shape} / {record.get('pass')}"


def is_bench_table(df: pd.DataFrame) -> bool:
    return {"kernel", "site", "pass"} <= set(df.columns) and "combo" not in df.columns


def _from_bench_table(df: pd.DataFrame, label: str) -> Side:
    metrics = [c for c in df.columns if direction(c) is not None and c != "median"]
    rows: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    settings: dict[str, dict[str, str]] = {}
    spreads: dict[str, dict[str, Spread]] = {}
    for record in df.to_dict("records"):
        key = bench_key(record)
        if key in rows:
            raise UserError(f"{label}: bench row {key!r} appears twice")
        rows[key] = {m: _number(record.get(m)) for m in metrics}
        state = record.get("status", OK_STATUS)
        status[key] = OK_STATUS if _isna(state) else str(state)
        settings[key] = _settings(record)
        spread = _spread(record, "p10_ms", "p90_ms", "count")
        spreads[key] = {"median_ms": spread} if spread else {}
    return Side("bench-attention", label, rows, status, settings, spreads)


def _from_benchmark_json(data: dict, label: str) -> Side:
    benches = data.get("benchmarks")
    if not isinstance(benches, list):
        raise UserError(f"{label}: 'benchmarks' is not a list")
    names = [b.get("name") for b in benches if isinstance(b, dict)]
    use_full = len(set(names)) != len(names)
    rows: dict[str, dict[str, float]] = {}
    spreads: dict[str, dict[str, Spread]] = {}
    for bench in benches:
        try:
            key = str(bench["fullname" if use_full else "name"])
            values = {"median": _number(bench["stats"]["median"])}
        except (KeyError, TypeError):
            raise UserError(f"{label}: a benchmark entry lacks name or stats.median") from None
        for name, value in (bench.get("extra_info") or {}).items():
            if direction(name) is not None and name != "median" and isinstance(
                    value, (int, float)) and not isinstance(value, bool):
                values[name] = float(value)
        rows[key] = values
        spread = _spread(bench["stats"], "q1", "q3", "rounds", kind="q1-q3")
        spreads[key] = {"median": spread} if spread else {}
    return Side("benchmark", label, rows, {k: OK_STATUS for k in rows}, spread=spreads)


def _side_of_frame(df: pd.DataFrame, label: str) -> Side:
    if is_bench_table(df):
        return _from_bench_table(df, label)
    return _from_run_table(df, label)


def read_side(path: Path) -> Side:
    """Read a run folder, results.json/.csv, a bench-attention table or folder, or a
    pytest-benchmark JSON (UserError with one line if it is none of these)."""
    from ganbench.results.store import TABLE_CSV, TABLE_JSON, read_table, rows_of

    path = Path(path)
    label = str(path)
    if path.is_dir():
        for name in (TABLE_JSON, TABLE_CSV, "attention-bench.json", "attention-bench.csv"):
            if (path / name).exists():
                return read_side(path / name)
        raise UserError(f"{label} is a folder without {TABLE_JSON} or {TABLE_CSV} "
                        "(or attention-bench.json)")
    if not path.exists():
        raise UserError(f"{label} does not exist")
    if path.suffix == ".csv":
        return _side_of_frame(read_table(path), label)
    if path.suffix != ".json":
        raise UserError(f"{label}: expected a run folder, a .csv or a .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
    if isinstance(data, dict) and "benchmarks" in data:
        return _from_benchmark_json(data, label)
    if isinstance(data, dict) and "rows" in data:
        try:
            df = pd.DataFrame(rows_of(data, label))
        except (ValueError, TypeError) as exc:
            raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
        return _side_of_frame(df, label)
    raise UserError(f"{label} is neither a ganbench results.json ('rows') nor a "
                    "pytest-benchmark JSON ('benchmarks')")


# ------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------
COLUMNS = ["key", "metric", "better", "old", "new", "delta_pct", "threshold_pct",
           "old_low", "old_high", "old_count", "new_low", "new_high", "new_count", "verdict"]


def within_noise(old: float, new: float, a: Optional[Spread], b: Optional[Spread]) -> bool:
    """The module docstring's rule: each median inside the other side's range."""
    if a is None or b is None:
        return False
    return a.low <= new <= a.high and b.low <= old <= b.high


def _verdict(old: float, new: float, way: str, threshold: Optional[float],
             noise: bool = False) -> tuple[float, str]:
    if math.isnan(old) and math.isnan(new):
        return float("nan"), SAME
    if math.isnan(old) or math.isnan(new):
        return float("nan"), MISSING
    delta = 100.0 * (new - old) / abs(old) if old != 0 else float("nan")
    if new == old:
        return 0.0, SAME
    if noise:
        return delta, NOISE
    worse = new < old if way == HIGHER else new > old
    if not worse:
        return delta, BETTER
    if threshold is not None:
        # old == 0 and new worse: any amount is past a relative threshold.
        past = math.isnan(delta) or abs(delta) > abs(threshold)
        if past:
            return delta, REGRESSION
    return delta, WORSE


def incomparable(old: Side, new: Side, key: str) -> Optional[str]:
    """Why the quality numbers of ``key`` cannot be compared ('image_size 32 in old, 64 in
    new'), or None."""
    a, b = old.tags.get(key, {}), new.tags.get(key, {})
    why = [f"{t} {a[t]} in old, {b[t]} in new" for t in QUALITY_TAGS
           if t in a and t in b and a[t] != b[t]]
    return "; ".join(why) or None


def compare(old: Side, new: Side, thresholds: Optional[dict[str, float]] = None,
            metrics: Optional[list[str]] = None) -> pd.DataFrame:
    """The long table: one row per (key, metric) in COLUMNS order; see the module docstring.
    ``metrics``: compare only these columns (default: every column with a direction)."""
    thresholds = thresholds or {}
    if old.kind != new.kind:
        raise UserError(f"cannot compare a {old.kind} ({old.label}) with a {new.kind} "
                        f"({new.label})")
    common = [k for k in old.rows if k in new.rows]
    if not common:
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

    nan = float("nan")
    out = []
    for key in list(old.rows) + [k for k in new.rows if k not in old.rows]:
        blank = {"better": "", "old": nan, "new": nan, "delta_pct": nan, "threshold_pct": nan,
                 "old_low": nan, "old_high": nan, "old_count": nan, "new_low": nan,
                 "new_high": nan, "new_count": nan}
        if key not in new.rows or key not in old.rows:
            verdict = ONLY_OLD if key in old.rows else ONLY_NEW
            out.append({"key": key, "metric": "", **blank, "verdict": verdict})
            continue
        was, now = old.status.get(key, OK_STATUS), new.status.get(key, OK_STATUS)
        if was == OK_STATUS and now != OK_STATUS:
            out.append({"key": key, "metric": "status", **blank,
                        "verdict": f"{STATUS_LOST}: {was} -> {now}"})
        names = list(old.rows[key]) + [m for m in new.rows[key] if m not in old.rows[key]]
        if metrics is not None:
            names = [m for m in names if m in metrics]
        refused = incomparable(old, new, key)
        for metric in names:
            a = old.rows[key].get(metric, nan)
            b = new.rows[key].get(metric, nan)
            way = direction(metric)
            threshold = thresholds.get(metric)
            sa = old.spread.get(key, {}).get(metric)
            sb = new.spread.get(key, {}).get(metric)
            if refused and is_quality(metric):
                delta, verdict = nan, f"{NOT_COMPARABLE}: {refused}"
            else:
                delta, verdict = _verdict(a, b, way, threshold, within_noise(a, b, sa, sb))
            out.append({"key": key, "metric": metric, "better": way, "old": a, "new": b,
                        "delta_pct": delta,
                        "threshold_pct": nan if threshold is None else threshold,
                        "old_low": sa.low if sa else nan, "old_high": sa.high if sa else nan,
                        "old_count": sa.count if sa else nan,
                        "new_low": sb.low if sb else nan, "new_high": sb.high if sb else nan,
                        "new_count": sb.count if sb else nan, "verdict": verdict})
    return pd.DataFrame(out, columns=COLUMNS)


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
    """One line per setting that differs between the two sides, for rows on both sides."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for key in old.rows:
        a, b = old.settings.get(key, {}), new.settings.get(key, {})
        for column in SETTING_COLUMNS:
            if column in a and column in b and a[column] != b[column]:
                seen.setdefault((column, a[column], b[column]), []).append(key)
    return [f"{column} differs: {x} in old, {y} in new ({len(keys)} row(s), e.g. {keys[0]})"
            for (column, x, y), keys in seen.items()]


def _setting(value) -> str:
    """A setting as text; 64 and 64.0 (a NaN elsewhere in the column makes ints floats) are
    both '64'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _what(side: Side) -> str:
    return {"benchmark": "benchmark", "bench-attention": "bench row"}.get(side.kind,
                                                                           "combination")


def regressions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that make the comparison fail (threshold regressions and lost statuses)."""
    return table[table["verdict"].str.startswith(REGRESSION)]


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _spread_cell(low: float, high: float, count: float, fmt) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    n = "" if math.isnan(count) else f" n={count:.0f}"
    return f"{fmt(low)}-{fmt(high)}{n}"


def render(table: pd.DataFrame, fmt: str, key_label: str = "key",
           width: Optional[int] = None) -> str:
    """markdown (for people: units, signed % changes, spreads, fitted to ``width``), csv or
    json (every column at full precision, for programs)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        return json.dumps({"rows": records}, indent=1)
    from ganbench.results.table import Format, as_is, format_of, render as render_table, signed_pct

    view = []
    for row in table.to_dict("records"):
        metric = row["metric"]
        if row["verdict"] == SAME and _blank(row["old"]) and _blank(row["new"]):
            continue  # measured on neither side (a CUDA-only column on the CPU): no news
        spec = format_of(metric) if metric and metric != "status" else None
        number = spec.fmt if spec else (lambda v: "")
        unit = " (MiB)" if metric.endswith("_bytes") else ""
        view.append({
            key_label: row["key"], "metric": metric + unit,
            "better": row["better"] or "",
            "old": number(row["old"]), "new": number(row["new"]),
            "change": signed_pct(row["delta_pct"]),
            "old spread": _spread_cell(row["old_low"], row["old_high"], row["old_count"],
                                       number),
            "new spread": _spread_cell(row["new_low"], row["new_high"], row["new_count"],
                                       number),
            "fail past": signed_pct(row["threshold_pct"]),
            "verdict": row["verdict"]})
    df = pd.DataFrame(view, columns=[key_label, "metric", "better", "old", "new", "change",
                                     "old spread", "new spread", "fail past", "verdict"])
    from ganbench.results.table import non_empty

    cols = [key_label, "metric"] + non_empty(df, ["better", "old", "new", "change",
                                                  "old spread", "new spread", "fail past"])
    cols.append("verdict")
    formats = {c: Format(c, as_is, c not in (key_label, "metric", "better", "verdict"))
               for c in df.columns}
    return render_table(df, cols, width=width, keys=[key_label, "metric", "verdict"],
                        droppable=["better", "fail past"], formats=formats,
                        hint="see them with a wider terminal (COLUMNS=200) or --format csv")
