"""The comparison table (ganbench.results.compare.compare) as text: markdown for people
(units, signed % changes, spreads, fitted to a width), CSV or JSON for programs."""

from __future__ import annotations

import json
import math
from typing import Optional

import pandas as pd

from ganbench.results.columns import CLOSER, column
from ganbench.results.compare import SAME


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _spread_cell(low: float, high: float, count: float, fmt) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    n = "" if math.isnan(count) else f" n={count:.0f}"
    return f"{fmt(low)}-{fmt(high)}{n}"


def _real_cell(old: float, new: float, fmt) -> str:
    if _blank(old) and _blank(new):
        return ""
    a, b = fmt(old), fmt(new)
    return a if a == b else f"{a} / {b}"


def _p_cell(p: float) -> str:
    if _blank(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


SPREADS = ["old spread", "new spread"]


def render(table: pd.DataFrame, fmt: str, key_label: str = "key",
           width: Optional[int] = None) -> str:
    """markdown (for people: units, signed % changes, spreads, fitted to ``width``), csv or
    json (every column at full precision, for programs).

    Under a width limit the columns go in this order, named in one note: ``better``,
    ``fail past``, ``p``, ``real``, then both spreads together (never one without the other:
    a spread is read against the other side's), then old and new together; the key, metric,
    change and verdict always stay."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        return json.dumps({"rows": records}, indent=1)
    from ganbench.results.table import (Format, as_is, format_of, non_empty, render as
                                        render_table, signed_pct, width_of)

    view = []
    for row in table.to_dict("records"):
        metric = row["metric"]
        if row["verdict"] == SAME and _blank(row["old"]) and _blank(row["new"]):
            continue  # measured on neither side (a CUDA-only column on the CPU): no news
        spec = format_of(metric) if metric and metric != "status" else None
        number = spec.fmt if spec else (lambda v: "")
        unit = column(metric).unit if metric and metric != "status" else ""
        closer = row["better"] == CLOSER
        view.append({
            key_label: row["key"], "metric": metric + (f" ({unit})" if unit else ""),
            "better": row["better"] or "",
            "old": number(row["old"]), "new": number(row["new"]),
            "real": _real_cell(row["old_real"], row["new_real"], number),
            "change": signed_pct(row["delta_pct"]) + (" dist" if closer and not _blank(
                row["delta_pct"]) else ""),
            "old spread": _spread_cell(row["old_low"], row["old_high"], row["old_count"],
                                       number),
            "new spread": _spread_cell(row["new_low"], row["new_high"], row["new_count"],
                                       number),
            "p": _p_cell(row["p_value"]),
            "fail past": signed_pct(row["threshold_pct"]),
            "verdict": row["verdict"]})
    names = [key_label, "metric", "better", "old", "new", "real", "change", "old spread",
             "new spread", "p", "fail past", "verdict"]
    df = pd.DataFrame(view, columns=names)
    cols = [key_label, "metric"] + non_empty(df, names[2:-1]) + ["verdict"]
    formats = {c: Format(c, as_is, c not in (key_label, "metric", "better", "verdict"))
               for c in df.columns}
    hint = "see them with a wider terminal (COLUMNS=200) or --format csv"
    dropped: list[str] = []
    if width is not None:
        def fits(current):
            return width_of(render_table(df, current, formats=formats)) <= width
        for group in (["better"], ["fail past"], ["p"], ["real"], SPREADS, ["old", "new"]):
            if fits(cols):
                break
            present = [c for c in group if c in cols]
            cols = [c for c in cols if c not in present]
            dropped += present
    # What is left is never cut further: the key, metric, change and verdict are the news.
    out = render_table(df, cols, keys=cols, formats=formats)
    if dropped:
        import textwrap

        note = (f"({len(dropped)} column(s) left out to fit {width} characters: "
                f"{', '.join(dropped)}; {hint})")
        out += "\n" + "\n".join(textwrap.wrap(note, width=width, break_on_hyphens=False))
    return out
