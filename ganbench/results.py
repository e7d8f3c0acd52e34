"""Rows -> one tidy DataFrame -> CSV, JSON and markdown, written atomically after every row.

One row per combination (plus the real-data reference row when metrics run). Columns are fixed
keys from the runner, metric columns from the metric plugins, and the environment columns from
ganbench.measure. Missing values are NaN/None, never a string sentinel such as "N/A".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ganbench.errors import UserError

TABLE_CSV = "results.csv"
TABLE_JSON = "results.json"
TABLE_MD = "results.md"

# Columns shown first (and in the printed markdown); everything else follows in row order.
LEAD_COLUMNS = ["combo", "architecture", "loss", "attention", "status", "steps", "batch_size",
                "image_size", "dtype", "step_ms_median", "step_ms_p10", "step_ms_p90",
                "img_per_s", "peak_mem_bytes"]
SUMMARY_COLUMNS = ["combo", "status", "img_per_s", "step_ms_median", "step_ms_p10",
                   "step_ms_p90", "peak_mem_mib", "fid_digits", "is_digits", "prdc_precision",
                   "prdc_recall", "modes_covered"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, flush, fsync, rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    lead = [c for c in LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def write_table(rows: list[dict], run_dir: Path) -> pd.DataFrame:
    """Write the rows as results.csv, results.json and results.md in run_dir (atomically)."""
    df = to_frame(rows)
    atomic_write_text(run_dir / TABLE_CSV, df.to_csv(index=False))
    atomic_write_text(run_dir / TABLE_JSON,
                      json.dumps({"rows": rows}, indent=1, default=_json_default,
                                 allow_nan=True) + "\n")
    atomic_write_text(run_dir / TABLE_MD, summary_markdown(df) + "\n")
    return df


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_table(run_dir: Path) -> pd.DataFrame:
    """The table of a run folder (or a CSV/JSON file); UserError if it is missing or unreadable."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / TABLE_JSON if (path / TABLE_JSON).exists() else path / TABLE_CSV
    if not path.exists():
        raise UserError(f"no results table in {run_dir} (expected {TABLE_JSON} or {TABLE_CSV})")
    try:
        if path.suffix == ".json":
            return to_frame(json.loads(path.read_text())["rows"])
        return pd.read_csv(path)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise UserError(f"cannot read results table {path}: {exc}".splitlines()[0])


def summary_markdown(df: pd.DataFrame, columns: Optional[list[str]] = None) -> str:
    """The human table: a few key columns, memory in MiB, floats rounded."""
    if df.empty:
        return "(no rows)"
    view = df.copy()
    if "peak_mem_bytes" in view:
        view["peak_mem_mib"] = view["peak_mem_bytes"] / 2**20
    cols = [c for c in (columns or SUMMARY_COLUMNS) if c in view.columns]
    return view[cols].to_markdown(index=False, floatfmt=".4g")
