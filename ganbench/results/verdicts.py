"""Verdicts over seeds: is combination A better, worse or indistinguishable from B, per metric?

For each pair of combinations of a multi-seed run (or each against ``--reference COMBO``) and
each column with a direction, the per-seed values of the two are turned into scores where
lower is better (``lower``: the value; ``higher``: minus the value; ``closer``: the distance
to the real-data row, ``|value - real|``, with the real row of the same seed where the table
has one per seed, else the median of the real rows) and compared with Welch's t-test, Holm-
adjusted over the metric's pairs (ganbench.results.stats says why this test at n = 3-10).

A verdict is ``better`` / ``worse`` (A against B) when the adjusted p < 0.05, else
``indistinguishable``; ``too few seeds`` when a side has fewer than 2 values, and ``no real
row`` for a closer column without the real data's value. ``effect_g`` is Hedges' g of the
scores, signed so that positive means A is better.
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from ganbench.results import columns as registry
from ganbench.results.columns import CLOSER, HIGHER, REFERENCE_STATUS
from ganbench.results.stats import ALPHA, TEST_METHOD, holm, welch

BETTER, WORSE, INDISTINGUISHABLE = "better", "worse", "indistinguishable"
TOO_FEW, NO_REAL = "too few seeds", "no real row"
VERDICTS_CSV = "verdicts.csv"
COLUMNS = ["combo", "vs", "metric", "better", "verdict", "combo_median", "vs_median",
           "effect_g", "p_value", "p_holm", "n_combo", "n_vs", "test"]


def scores(values, way: str, real=None) -> list[float]:
    """Per-seed values as scores where lower is better (see the module docstring).

    ``real``: for a closer column, the real row's value (a number) or one per value (a list
    of the same length); None or NaN gives NaN scores."""
    out = []
    reals = real if isinstance(real, (list, tuple)) else [real] * len(values)
    for value, ref in zip(values, reals):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if way == HIGHER:
            out.append(-v)
        elif way == CLOSER:
            out.append(float("nan") if ref is None or math.isnan(float(ref))
                       else registry.distance_to_real(v, ref))
        else:
            out.append(v)
    return out


def real_values(df: pd.DataFrame, metric: str, seeds: list) -> Optional[list]:
    """The real row's value of ``metric`` for each of ``seeds``: that seed's reference row when
    the table has one per seed, else the median of the reference rows; None without any."""
    if "status" not in df or metric not in df:
        return None
    ref = df[df["status"] == REFERENCE_STATUS]
    values = pd.to_numeric(ref[metric], errors="coerce")
    if not values.notna().any():
        return None
    median = float(values.median())
    if "seed" not in ref:
        return [median] * len(seeds)
    by_seed = {s: float(v) for s, v in zip(ref["seed"], values) if not pd.isna(v)
               and not pd.isna(s)}
    return [by_seed.get(s, median) for s in seeds]


def per_seed(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """combo -> its ok rows (the real-data row excluded), in table order."""
    if "combo" not in df:
        return {}
    out = {}
    for combo, group in df.groupby("combo", sort=False):
        if "status" in group:
            if (group["status"] == REFERENCE_STATUS).all():
                continue
            group = group[group["status"] == "ok"]
        out[str(combo)] = group
    return out


def pairs(combos: list[str], reference: Optional[str]) -> list[tuple[str, str]]:
    """(A, B) to judge: every combination against ``reference``, else every pair in order."""
    if reference is not None:
        return [(c, reference) for c in combos if c != reference]
    return [(a, b) for i, a in enumerate(combos) for b in combos[i + 1:]]


def verdicts(df: pd.DataFrame, reference: Optional[str] = None,
             metrics: Optional[list[str]] = None) -> pd.DataFrame:
    """The verdict table (:data:`COLUMNS`), one row per (pair, metric); see the module
    docstring. ``metrics`` defaults to every numeric column with a direction.
    ValueError if ``reference`` is not a combination of df."""
    from ganbench.results.summary import judged_columns

    groups = per_seed(df)
    if reference is not None and reference not in groups:
        raise ValueError(f"--reference {reference!r} is not a combination of this run")
    names = metrics if metrics is not None else judged_columns(df)
    out = []
    for metric in names:
        way = registry.direction(metric)
        scored = {combo: _scored(df, group, metric, way) for combo, group in groups.items()}
        family = []
        for a, b in pairs(list(groups), reference):
            family.append(_judge(scored[a], scored[b], way) | {
                "combo": a, "vs": b, "metric": metric, "better": way})
        adjusted = holm([r["p_value"] for r in family])
        for r, p in zip(family, adjusted):
            r["p_holm"] = p
            if r["verdict"] is None:
                r["verdict"] = (INDISTINGUISHABLE if math.isnan(p) or p >= ALPHA
                                else BETTER if r["effect_sign"] > 0 else WORSE)
            r.pop("effect_sign")
            out.append(r)
    return pd.DataFrame(out, columns=COLUMNS)


def _scored(df: pd.DataFrame, group: pd.DataFrame, metric: str, way: str) -> tuple:
    """(median of the values, their scores or None without a real row for a closer column)."""
    values = list(pd.to_numeric(group[metric], errors="coerce")) if metric in group else []
    if way == CLOSER:
        seeds = list(group["seed"]) if "seed" in group else [None] * len(values)
        real = real_values(df, metric, seeds)
        return _median(values), None if real is None else scores(values, way, real)
    return _median(values), scores(values, way)


def _judge(a: tuple, b: tuple, way: str) -> dict:
    nan = float("nan")
    row = {"combo_median": a[0], "vs_median": b[0], "test": TEST_METHOD, "effect_g": nan,
           "p_value": nan, "n_combo": 0, "n_vs": 0, "verdict": None, "effect_sign": 0}
    if a[1] is None or b[1] is None:
        row["verdict"] = NO_REAL
        return row
    test = welch(a[1], b[1])
    row.update(n_combo=test.n_a, n_vs=test.n_b, p_value=test.p, effect_g=-test.g)
    if test.n_a < 2 or test.n_b < 2:
        row["verdict"] = TOO_FEW
        row["p_value"] = nan
    else:
        row["effect_sign"] = -1 if test.diff > 0 else 1 if test.diff < 0 else 0
    return row


def _median(values) -> float:
    import numpy as np

    xs = [float(v) for v in values if not pd.isna(v)]
    return float(np.median(xs)) if xs else float("nan")


# ------------------------------------------------------------------------------------------
# Display
# ------------------------------------------------------------------------------------------
def render(table: pd.DataFrame, width: Optional[int] = None, style: str = "github",
           everything: bool = False) -> str:
    """The decided verdicts as a table (all rows with ``everything``), then one line counting
    them and naming the test. '' when the table is empty."""
    from ganbench.results.table import Format, as_is, render as render_table

    if table.empty:
        return ""
    shown = table if everything else table[table["verdict"].isin([BETTER, WORSE])]
    counts = table["verdict"].value_counts()
    line = (f"({counts.get(BETTER, 0) + counts.get(WORSE, 0)} decided, "
            f"{counts.get(INDISTINGUISHABLE, 0)} indistinguishable at 95%"
            + "".join(f", {counts[k]} {k}" for k in (TOO_FEW, NO_REAL) if counts.get(k))
            + f"; {TEST_METHOD}; g > 0: the first combination is better; closer: judged by "
              "the distance to the real-data row)")
    if width is not None:
        import textwrap

        line = "\n".join(textwrap.wrap(line, width=width, break_on_hyphens=False))
    if shown.empty:
        return line
    frame = display_frame(shown)
    formats = {c: Format(c, as_is, c in ("combo median", "vs median", "g", "p (Holm)"))
               for c in frame.columns}
    body = render_table(frame, list(frame.columns), width=width, style=style, formats=formats,
                        keys=["combo", "verdict", "vs", "metric"],
                        hint="see them in verdicts.csv")
    return body + "\n" + line


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict rows as text cells for people: medians in each column's format, g with 2
    significant figures, the Holm-adjusted p; closer metrics marked '(closer)'."""
    from ganbench.results.table import format_of, sig

    view = []
    for r in table.to_dict("records"):
        fmt = format_of(r["metric"]).fmt
        view.append({"combo": r["combo"], "verdict": r["verdict"], "vs": r["vs"],
                     "metric": r["metric"] + (" (closer)" if r["better"] == CLOSER else ""),
                     "combo median": fmt(r["combo_median"]), "vs median": fmt(r["vs_median"]),
                     "g": sig(r["effect_g"], 2), "p (Holm)": _p(r["p_holm"])})
    return pd.DataFrame(view, columns=["combo", "verdict", "vs", "metric", "combo median",
                                       "vs median", "g", "p (Holm)"])


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
