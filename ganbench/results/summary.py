"""One row per combination over its seeds: the median and an interval of every judged column.

A run with ``--seeds`` has one row per (combination, seed), told apart by the ``seed`` column.
When some combination has more than one, :func:`summarise` gives one row per combination
(the real-data reference row too) with, for the core's outcomes (img/s, step time, peak
memory, time to target) and every metric column a plugin gives a direction:

* ``<column>``: the median over the seeds whose row is ``ok``;
* ``<column>_ci_low`` / ``<column>_ci_high``: its order-statistic interval, and
  ``ci_coverage``: that interval's exact coverage for the row's n (ganbench.results.stats:
  >= 95% from 6 seeds; 75% / 87.5% / 93.8% at 3 / 4 / 5, where no 95% interval exists);
* ``n_seeds`` (the ok seeds the numbers come from), ``seeds`` (all seeds, '0,1,2'), and
  ``status``: the common status, or e.g. '2/3 ok, 1 diverged';
* every other column whose value is the same for all seeds (settings, tags); others blank.

It is written as ``summary.csv`` beside results.csv, shown instead of the per-seed rows on
screen and in results.md, and drawn with error bars in the HTML report.
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from ganbench.results import columns as registry
from ganbench.results.columns import REFERENCE_STATUS
from ganbench.results.stats import INTERVAL_METHOD, median_interval

SEED = "seed"
SUMMARY_CSV = "summary.csv"
LOW, HIGH = "_ci_low", "_ci_high"


def seeds_of(df: pd.DataFrame) -> dict[str, list]:
    """combo -> its seeds, in table order (one entry per row; [None] without a seed column)."""
    out: dict[str, list] = {}
    if "combo" not in df:
        return out
    seeds = df[SEED] if SEED in df else pd.Series([None] * len(df), index=df.index)
    for combo, seed in zip(df["combo"], seeds):
        out.setdefault(str(combo), []).append(None if _missing(seed) else seed)
    return out


def has_seeds(df: pd.DataFrame) -> bool:
    """True when some trained combination has more than one row, each with a seed."""
    if SEED not in df or "combo" not in df or df.empty:
        return False
    models = df[df["status"] != REFERENCE_STATUS] if "status" in df else df
    counts = models.dropna(subset=[SEED]).groupby("combo")[SEED].nunique()
    return bool(len(counts)) and int(counts.max()) > 1


def judged_columns(df: pd.DataFrame) -> list[str]:
    """The numeric columns of df that a multi-seed run summarises and judges, in table order:
    the core's outcomes (ganbench.results.columns.JUDGED_CORE: img/s, step time, peak memory,
    time to target) and every metric column with a direction (lower, higher or closer)."""
    out = []
    for name in df.columns:
        info = registry.column(name)
        if info.direction is None or not (info.quality or name in registry.JUDGED_CORE):
            continue
        if pd.api.types.is_numeric_dtype(df[name]) or _numeric(df[name]):
            out.append(name)
    return out


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per combination, in table order (see the module docstring)."""
    if df.empty or "combo" not in df:
        return pd.DataFrame()
    judged = judged_columns(df)
    rows = []
    for combo, group in df.groupby("combo", sort=False):
        rows.append(_summary_row(str(combo), group, judged))
    out = pd.DataFrame(rows)
    lead = ["combo", "status", "n_seeds", "seeds"]
    stats = [c for name in judged for c in (name, name + LOW, name + HIGH)]
    rest = [c for c in out.columns if c not in lead + stats + ["ci_coverage"]]
    return out[[c for c in lead + stats + ["ci_coverage"] + rest if c in out.columns]]


def _summary_row(combo: str, group: pd.DataFrame, judged: list[str]) -> dict:
    statuses = [str(s) for s in group["status"]] if "status" in group else ["ok"] * len(group)
    usable = group[[s in ("ok", REFERENCE_STATUS) for s in statuses]]
    row: dict = {"combo": combo, "status": _status(statuses), "n_seeds": len(usable)}
    seeds = [s for s in (group[SEED] if SEED in group else []) if not _missing(s)]
    row["seeds"] = ",".join(_plain(s) for s in seeds)
    coverage = float("nan")
    for name in judged:
        interval = median_interval(usable[name]) if name in usable else median_interval([])
        row[name], row[name + LOW], row[name + HIGH] = interval.median, interval.low, \
            interval.high
        if interval.n == len(usable) and not math.isnan(interval.coverage):
            coverage = interval.coverage
    row["ci_coverage"] = coverage
    for name in group.columns:
        if name in row or name in judged or name in (SEED, "status"):
            continue
        values = {_plain(v) for v in group[name] if not _missing(v)}
        row[name] = group[name].dropna().iloc[0] if len(values) == 1 else None
    return row


def _status(statuses: list[str]) -> str:
    """'ok' when all agree, else '2/3 ok, 1 diverged'."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) == 1:
        return statuses[0]
    ok = counts.pop("ok", 0)
    others = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"{ok}/{len(statuses)} ok, {others}"


def _missing(value) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _numeric(series: pd.Series) -> bool:
    return bool(pd.to_numeric(series, errors="coerce").notna().any())


# ------------------------------------------------------------------------------------------
# Display
# ------------------------------------------------------------------------------------------
def cell(median, low, high, fmt) -> str:
    """'84.4 [80.1, 90.2]': the median and its interval, each in the column's format."""
    m = fmt(median)
    if not m:
        return ""
    lo, hi = fmt(low), fmt(high)
    if not lo or not hi or (lo == m and hi == m):
        return m
    return f"{m} [{lo}, {hi}]"


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with every judged column made one text cell 'median [low, high]'
    (formatted by the column registry's format), ``n`` for the seeds, and ``step_ms`` as the
    step time's cell (the per-seed table's display column of that name)."""
    from ganbench.results.table import format_of

    view = summary.copy()
    for name in [c for c in summary.columns if c + LOW in summary.columns]:
        fmt = format_of(name).fmt
        view[name] = [cell(m, lo, hi, fmt) for m, lo, hi in
                      zip(summary[name], summary[name + LOW], summary[name + HIGH])]
    if "step_ms_median" in view:
        view["step_ms"] = view["step_ms_median"]
    view["n"] = summary["n_seeds"] if "n_seeds" in summary else None
    return view


def method_note(summary: pd.DataFrame) -> str:
    """One line naming the method and the coverage the intervals here actually have."""
    models = summary[summary["status"] != REFERENCE_STATUS] if "status" in summary else summary
    pairs = sorted({(int(n), round(float(c) * 100, 1)) for n, c in
                    zip(models.get("n_seeds", []), models.get("ci_coverage", []))
                    if not _missing(n) and not _missing(c)})
    held = ", ".join(f"{c:g}% at {n} seeds" for n, c in pairs) or "no interval with 1 seed"
    return (f"(median [interval] over seeds; interval: {INTERVAL_METHOD}; it holds the true "
            f"median with probability {held})")


def formats_for(view: pd.DataFrame) -> dict:
    """Table formats for :func:`display_frame`'s text cells: the registry's header, as-is text,
    right-aligned as numbers."""
    from ganbench.results.table import Format, as_is, format_of

    out = {}
    for name in view.columns:
        if name == "n":
            out[name] = Format("n", as_is, True)
        elif name + LOW in view.columns or name == "step_ms":
            header = format_of("step_ms_median" if name == "step_ms" else name).header
            out[name] = Format(header, as_is, True)
    return out


def summary_table(df: pd.DataFrame, columns: list[str], width: Optional[int],
                  style: str, droppable: list[str]) -> str:
    """The per-combination table of a multi-seed run, ``columns`` chosen as for the per-seed
    table ('step_ms' is the step time's median and interval); ``n`` follows ``combo``."""
    from ganbench.results.table import render

    summary = summarise(df)
    view = display_frame(summary)
    cols = list(columns)
    if "combo" in cols and "n" not in cols:
        cols.insert(cols.index("combo") + 1, "n")
    out = render(view, cols, width=width, keys=["combo"], style=style, droppable=droppable,
                 formats=formats_for(view))
    return out + "\n" + wrap(method_note(summary), width)


def wrap(line: str, width: Optional[int]) -> str:
    """A note wrapped to ``width`` (unchanged without one)."""
    if width is None:
        return line
    import textwrap

    return "\n".join(textwrap.wrap(line, width=width, break_on_hyphens=False))
