"""The two inputs of `ganbench compare`, read into one shape (:class:`Side`).

Inputs (both sides must be the same kind):
- run tables: a run folder, or its ``results.json`` / ``results.csv``; rows are keyed by
  ``combo``. A combination may have one row per seed (column ``seed``): its value is then the
  median over the ``ok`` seeds, and the per-seed values are kept in ``Side.samples`` for the
  seed-distribution test. The real-data reference rows (status ``reference``) are not models:
  they are kept apart in ``Side.real``, the value "closer" metrics are judged against;
- bench-attention tables (``attention-bench.json``/``.csv`` from ``ganbench bench attention``,
  or its folder); rows are keyed by kernel, site (shape) and pass:
  ``"sdpa-attn / G 16x16 (N=256) / fwd+bwd"``; the metrics are the median time per call (with
  its p10/p90 and count), the CUDA-graph replay time, the error and the extra memory;
- pytest-benchmark JSON files (``--benchmark-json``); rows are keyed by benchmark ``name``
  (``fullname`` when names repeat in a file); the metric is the ``median`` time in seconds
  (spread: its q1..q3 and rounds), plus any numeric ``extra_info`` entry whose direction is
  known.

Only columns with a direction in the column registry (ganbench.results.columns) are read as
metrics. Input errors raise :class:`ganbench.errors.UserError` with one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

import pandas as pd

from ganbench.errors import UserError
from ganbench.results.columns import OK_STATUS, REFERENCE_STATUS, direction
from ganbench.results.stats import median_interval

BENCH_KIND = "ganbench-bench-attention"  # the "kind" of bench attention's JSON
# Run settings that make two rows' numbers incomparable when they differ (reported, not fatal:
# comparing batch 16 with batch 64 on purpose is legitimate, doing it by accident is not).
SETTING_COLUMNS = ("batch_size", "image_size", "steps", "dtype", "device_name", "data",
                   "digits", "compile", "compile_scope", "malloc", "memory_format", "batch",
                   "seed")
# What a quality number was computed at: differing values make it not comparable at all.
# The scored images' side, not the training image_size (a table without metric_image_size
# falls back to image_size: older runs scored at the training size).
QUALITY_TAGS = ("metric_image_size", "metric_n")
# Columns shown as a spread beside their median instead of being compared on their own.
SPREAD_SOURCES = {"step_ms_p10", "step_ms_p90"}


class Spread(NamedTuple):
    """The spread of a median: low..high (p10..p90, q1..q3, or the order-statistic interval
    over seeds) over ``count`` samples."""

    low: float
    high: float
    count: float
    kind: str = "p10-p90"


@dataclass
class Side:
    """One input, normalised: kind ('run', 'bench-attention' or 'benchmark'), rows
    key -> {metric: value}, and per key its status, settings, the spread of metrics that have
    one and the tags (metric_image_size, metric_n) its quality numbers were computed at.
    Run tables also give ``samples`` (key -> metric -> per-seed values, for keys with several
    seeds), ``seeds`` (key -> seeds) and ``real`` (metric -> the reference rows' values)."""

    kind: str
    label: str
    rows: dict[str, dict[str, float]]
    status: dict[str, str]
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> setting -> value
    spread: dict[str, dict[str, Spread]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    seeds: dict[str, list[str]] = field(default_factory=dict)
    real: dict[str, list[float]] = field(default_factory=dict)

    def real_value(self, metric: str) -> float:
        """The real-data row's value of ``metric`` (the median over its rows); NaN if none."""
        values = [v for v in self.real.get(metric, []) if not math.isnan(v)]
        return float(pd.Series(values).median()) if values else float("nan")


def number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def setting(value) -> str:
    """A setting as text; 64 and 64.0 (a NaN elsewhere in the column makes ints floats) are
    both '64'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _spread(record: dict, low: str, high: str, count: str, kind: str = "p10-p90",
            scale=None) -> Optional[Spread]:
    lo, hi = number(record.get(low)), number(record.get(high))
    if math.isnan(lo) or math.isnan(hi):
        return None
    if scale is not None:  # a rate from times: the slow end (high time) is the low rate
        lo, hi = scale(hi), scale(lo)
    return Spread(lo, hi, number(record.get(count)), kind)


def _run_spreads(record: dict) -> dict[str, Spread]:
    out = {}
    step = _spread(record, "step_ms_p10", "step_ms_p90", "timed_steps")
    if step:
        out["step_ms_median"] = step
        batch = number(record.get("batch_size"))
        if not math.isnan(batch):
            rate = _spread(record, "step_ms_p10", "step_ms_p90", "timed_steps",
                           scale=lambda ms: batch * 1000.0 / ms if ms else float("nan"))
            if rate:
                out["img_per_s"] = rate
    return out


def _settings(record: dict) -> dict[str, str]:
    return {c: setting(record[c]) for c in SETTING_COLUMNS if c in record and not isna(record[c])}


def _tags(record: dict) -> dict[str, str]:
    out = {t: setting(record[t]) for t in QUALITY_TAGS if t in record and not isna(record[t])}
    if "metric_image_size" not in out and not isna(record.get("image_size")):
        out["metric_image_size"] = setting(record["image_size"])
    return out


def _status_of(states: list[str]) -> str:
    if len(set(states)) == 1:
        return states[0]
    ok = states.count(OK_STATUS)
    others = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states) if s != OK_STATUS)
    return f"{ok}/{len(states)} ok, {others}"


def from_run_table(df: pd.DataFrame, label: str) -> Side:
    """A run table (one row per combination, or per combination and seed) as a Side."""
    if "combo" not in df.columns:
        raise UserError(f"{label}: results table has no 'combo' column")
    metrics = [c for c in df.columns if direction(c) is not None and c != "median"
               and c not in SPREAD_SOURCES]
    groups: dict[str, list[dict]] = {}
    side = Side("run", label, {}, {})
    for record in df.to_dict("records"):
        state = str(record.get("status", OK_STATUS))
        if state == REFERENCE_STATUS:
            for m in metrics:
                side.real.setdefault(m, []).append(number(record.get(m)))
            continue
        key = str(record["combo"])
        seed = None if isna(record.get("seed")) else setting(record.get("seed"))
        seen = groups.setdefault(key, [])
        if seen and (seed is None or seed in [setting(r.get("seed")) for r in seen]):
            again = f" with seed {seed}" if seed is not None else ""
            raise UserError(f"{label}: combination {key!r} appears twice{again}")
        seen.append(record)
    for key, records in groups.items():
        states = [str(r.get("status", OK_STATUS)) for r in records]
        side.status[key] = _status_of(states)
        side.settings[key] = {k: v for k, v in _settings(records[0]).items()
                              if k != "seed" or len(records) == 1}
        side.tags[key] = _tags(records[0])
        side.seeds[key] = [setting(r.get("seed")) for r in records if not isna(r.get("seed"))]
        if len(records) == 1:
            side.rows[key] = {m: number(records[0].get(m)) for m in metrics}
            side.spread[key] = _run_spreads(records[0])
            continue
        ok = [r for r, s in zip(records, states) if s == OK_STATUS]
        side.rows[key], side.samples[key], side.spread[key] = {}, {}, {}
        for m in metrics:
            values = [number(r.get(m)) for r in ok]
            interval = median_interval(values)
            side.rows[key][m] = interval.median
            side.samples[key][m] = [v for v in values if not math.isnan(v)]
            if interval.n >= 2:
                side.spread[key][m] = Spread(interval.low, interval.high, interval.n, "seeds")
    return side


def bench_key(record: dict) -> str:
    """The row key of a bench-attention row: kernel, site with its N, and pass."""
    n = record.get("N")
    shape = f"{record.get('site')} (N={int(n)})" if not isna(n) else str(record.get("site"))
    return f"{record.get('kernel')} / {shape} / {record.get('pass')}"


def is_bench_table(df: pd.DataFrame) -> bool:
    return {"kernel", "site", "pass"} <= set(df.columns) and "combo" not in df.columns


def from_bench_table(df: pd.DataFrame, label: str) -> Side:
    metrics = [c for c in df.columns if direction(c) is not None and c != "median"]
    side = Side("bench-attention", label, {}, {})
    for record in df.to_dict("records"):
        key = bench_key(record)
        if key in side.rows:
            raise UserError(f"{label}: bench row {key!r} appears twice")
        side.rows[key] = {m: number(record.get(m)) for m in metrics}
        state = record.get("status", OK_STATUS)
        side.status[key] = OK_STATUS if isna(state) else str(state)
        side.settings[key] = _settings(record)
        spread = _spread(record, "p10_ms", "p90_ms", "count")
        side.spread[key] = {"median_ms": spread} if spread else {}
    return side


def from_benchmark_json(data: dict, label: str) -> Side:
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
            values = {"median": number(bench["stats"]["median"])}
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


def side_of_frame(df: pd.DataFrame, label: str) -> Side:
    if is_bench_table(df):
        return from_bench_table(df, label)
    return from_run_table(df, label)


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
        return side_of_frame(read_table(path), label)
    if path.suffix != ".json":
        raise UserError(f"{label}: expected a run folder, a .csv or a .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
    if isinstance(data, dict) and "benchmarks" in data:
        return from_benchmark_json(data, label)
    if isinstance(data, dict) and "rows" in data:
        try:
            df = pd.DataFrame(rows_of(data, label))
        except (ValueError, TypeError) as exc:
            raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
        return side_of_frame(df, label)
    raise UserError(f"{label} is neither a ganbench results.json ('rows') nor a "
                    "pytest-benchmark JSON ('benchmarks')")
