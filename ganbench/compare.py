"""Compare two results: per row and metric, the change, which way is better, and a verdict.

Inputs (both sides must be the same kind):
- run tables: a run folder, or its ``results.json`` / ``results.csv``; rows are keyed by
  ``combo`` (the real-data reference row is left out: it measures the metric, not a model);
- pytest-benchmark JSON files (``--benchmark-json``); rows are keyed by benchmark ``name``
  (``fullname`` when names repeat in a file); the metric is the ``median`` time, plus any
  numeric ``extra_info`` entry whose direction is known (``img_per_s``, ``peak_mem_bytes`` ...).

Only metrics with a known direction (:data:`DIRECTIONS`) are compared: a change in a loss value
or a learning rate is not better or worse by itself. Contract of :func:`compare`:
- ``delta_pct`` is ``100 * (new - old) / |old|`` (NaN when old is 0 or either side is missing);
- a metric *regresses* when it moves the bad way by more than its ``--fail-on`` threshold;
- a combination whose status was ``ok`` and is not in NEW (diverged, failed, crashed) is always a
  regression: its numbers are gone, which is worse than any threshold;
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
from typing import Optional

import pandas as pd

from ganbench.errors import UserError

HIGHER, LOWER = "higher", "lower"

# Which way is better, by column name (shell-style patterns, first match wins). Kept small and
# explicit: a metric not listed here is not compared.
DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("img_per_s", HIGHER),
    ("step_ms_*", LOWER),
    ("peak_mem_*", LOWER),
    ("fid_digits", LOWER),
    ("is_digits", HIGHER),
    ("prdc_*", HIGHER),
    ("modes_covered", HIGHER),
    ("modes_kl", LOWER),
    ("time_to_target_s", LOWER),
    ("median", LOWER),  # pytest-benchmark: seconds per call
)

# Run settings that make two rows' numbers incomparable when they differ (reported, not fatal:
# comparing batch 16 with batch 64 on purpose is legitimate, doing it by accident is not).
SETTING_COLUMNS = ("batch_size", "image_size", "steps", "dtype", "device_name", "data",
                   "digits", "compile")

OK_STATUS = "ok"
REFERENCE_STATUS = "reference"

FAIL_ON_ITEM = re.compile(r"^([A-Za-z0-9_]+):([+-])(\d+(?:\.\d+)?)%$")

# Verdicts, worst first (the order rows sort in within a key).
REGRESSION = "REGRESSION"
STATUS_LOST = "REGRESSION (status)"
WORSE, BETTER, SAME = "worse", "better", "same"
ONLY_OLD, ONLY_NEW, MISSING = "only in old", "only in new", "missing value"


def direction(metric: str) -> Optional[str]:
    """'higher' or 'lower' when that way is better for ``metric``, else None."""
    for pattern, way in DIRECTIONS:
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
            raise UserError(f"--fail-on: {metric!r} has no known better direction; known: "
                            + ", ".join(p for p, _ in DIRECTIONS))
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
@dataclass
class Side:
    """One input, normalised: kind ('run' or 'benchmark'), rows key -> {metric: value}."""

    kind: str
    label: str
    rows: dict[str, dict[str, float]]
    status: dict[str, str]
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> setting -> value


def _number(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _from_run_table(df: pd.DataFrame, label: str) -> Side:
    if "combo" not in df.columns:
        raise UserError(f"{label}: results table has no 'combo' column")
    rows: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    settings: dict[str, dict[str, str]] = {}
    metrics = [c for c in df.columns if direction(c) is not None and c != "median"]
    for record in df.to_dict("records"):
        state = str(record.get("status", OK_STATUS))
        if state == REFERENCE_STATUS:
            continue
        key = str(record["combo"])
        if key in rows:
            raise UserError(f"{label}: combination {key!r} appears twice")
        rows[key] = {m: _number(record.get(m)) for m in metrics}
        status[key] = state
        settings[key] = {c: _setting(record[c]) for c in SETTING_COLUMNS
                         if c in record and not pd.isna(record[c])}
    return Side("run", label, rows, status, settings)


def _from_benchmark_json(data: dict, label: str) -> Side:
    benches = data.get("benchmarks")
    if not isinstance(benches, list):
        raise UserError(f"{label}: 'benchmarks' is not a list")
    names = [b.get("name") for b in benches if isinstance(b, dict)]
    use_full = len(set(names)) != len(names)
    rows: dict[str, dict[str, float]] = {}
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
    return Side("benchmark", label, rows, {k: OK_STATUS for k in rows})


def read_side(path: Path) -> Side:
    """Read a run folder, results.json/.csv, or a pytest-benchmark JSON (UserError if not)."""
    from ganbench.results import TABLE_CSV, TABLE_JSON, read_table

    path = Path(path)
    label = str(path)
    if path.is_dir():
        if not ((path / TABLE_JSON).exists() or (path / TABLE_CSV).exists()):
            raise UserError(f"{label} is a folder without {TABLE_JSON} or {TABLE_CSV}")
        return _from_run_table(read_table(path), label)
    if not path.exists():
        raise UserError(f"{label} does not exist")
    if path.suffix == ".csv":
        return _from_run_table(read_table(path), label)
    if path.suffix != ".json":
        raise UserError(f"{label}: expected a run folder, a .csv or a .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
    if isinstance(data, dict) and "benchmarks" in data:
        return _from_benchmark_json(data, label)
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        try:
            df = pd.DataFrame(data["rows"])
        except (ValueError, TypeError) as exc:
            raise UserError(f"cannot read {label}: {exc}".splitlines()[0]) from None
        return _from_run_table(df, label)
    raise UserError(f"{label} is neither a ganbench results.json ('rows') nor a "
                    "pytest-benchmark JSON ('benchmarks')")


# ------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------
COLUMNS = ["key", "metric", "better", "old", "new", "delta_pct", "threshold_pct", "verdict"]


def _verdict(old: float, new: float, way: str, threshold: Optional[float]) -> tuple[float, str]:
    if math.isnan(old) and math.isnan(new):
        return float("nan"), SAME
    if math.isnan(old) or math.isnan(new):
        return float("nan"), MISSING
    delta = 100.0 * (new - old) / abs(old) if old != 0 else float("nan")
    if new == old:
        return 0.0, SAME
    worse = new < old if way == HIGHER else new > old
    if not worse:
        return delta, BETTER
    if threshold is not None:
        # old == 0 and new worse: any amount is past a relative threshold.
        past = math.isnan(delta) or abs(delta) > abs(threshold)
        if past:
            return delta, REGRESSION
    return delta, WORSE


def compare(old: Side, new: Side, thresholds: Optional[dict[str, float]] = None) -> pd.DataFrame:
    """The long table: one row per (key, metric) in COLUMNS order; see the module docstring."""
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

    out = []
    for key in list(old.rows) + [k for k in new.rows if k not in old.rows]:
        if key not in new.rows or key not in old.rows:
            verdict = ONLY_OLD if key in old.rows else ONLY_NEW
            out.append({"key": key, "metric": "", "better": "", "old": float("nan"),
                        "new": float("nan"), "delta_pct": float("nan"),
                        "threshold_pct": float("nan"), "verdict": verdict})
            continue
        was, now = old.status.get(key, OK_STATUS), new.status.get(key, OK_STATUS)
        if was == OK_STATUS and now != OK_STATUS:
            out.append({"key": key, "metric": "status", "better": "", "old": float("nan"),
                        "new": float("nan"), "delta_pct": float("nan"),
                        "threshold_pct": float("nan"), "verdict": f"{STATUS_LOST}: {was} -> "
                                                                  f"{now}"})
        names = list(old.rows[key]) + [m for m in new.rows[key] if m not in old.rows[key]]
        for metric in names:
            a = old.rows[key].get(metric, float("nan"))
            b = new.rows[key].get(metric, float("nan"))
            way = direction(metric)
            threshold = thresholds.get(metric)
            delta, verdict = _verdict(a, b, way, threshold)
            out.append({"key": key, "metric": metric, "better": way, "old": a, "new": b,
                        "delta_pct": delta,
                        "threshold_pct": float("nan") if threshold is None else threshold,
                        "verdict": verdict})
    return pd.DataFrame(out, columns=COLUMNS)


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
    return "benchmark" if side.kind == "benchmark" else "combination"


def regressions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that make the comparison fail (threshold regressions and lost statuses)."""
    return table[table["verdict"].str.startswith(REGRESSION)]


def render(table: pd.DataFrame, fmt: str, key_label: str = "key") -> str:
    """markdown (rounded, for people), csv or json (full precision, for programs)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        return json.dumps({"rows": records}, indent=1)
    view = table.rename(columns={"key": key_label}).astype(object)
    view = view.where(view.notna(), None)  # tabulate blanks None, not NaN
    return view.to_markdown(index=False, floatfmt=".4g", missingval="")
