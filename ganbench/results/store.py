"""Rows -> one tidy DataFrame -> CSV, JSON and markdown, written atomically after every row.

One row per combination (plus the real-data reference row when metrics run). Columns are fixed
keys from the runner, metric columns from the metric plugins, and the environment columns from
ganbench.training.measure. Missing values are NaN/None, never a string sentinel such as "N/A".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ganbench.files import atomic
from ganbench.errors import UserError

TABLE_CSV = "results.csv"
TABLE_JSON = "results.json"
TABLE_MD = "results.md"


# Columns first in the CSV/JSON; everything else follows in row order.
LEAD_COLUMNS = ["combo", "architecture", "loss", "attention", "status", "steps", "batch_size",
                "image_size", "dtype", "step_ms_median", "step_ms_p10", "step_ms_p90",
                "img_per_s", "peak_mem_bytes"]


class ResultsWriteError(UserError):
    """The results table could not be written (disk full, folder removed): exit code 1, since
    the run itself failed rather than the user's input. The previous table is left intact."""

    exit_code = 1


def to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    from ganbench.results.table import integer_columns

    rows = list(rows)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = integer_columns(df, rows)  # steps 10, not 10.0, beside the "real data" row
    lead = [c for c in LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def write_table(rows: list[dict], run_dir: Path) -> pd.DataFrame:
    """Write the rows as results.csv, results.json and results.md in run_dir (atomically).

    Each file is either its previous version or the new one, never torn; an interrupt is held
    back until all three are written. ResultsWriteError (one line) if the disk refuses.
    """
    df = to_frame(rows)
    files = {run_dir / TABLE_CSV: df.to_csv(index=False),
             run_dir / TABLE_JSON: json.dumps({"rows": rows}, indent=1, default=_json_default,
                                              allow_nan=True) + "\n",
             run_dir / TABLE_MD: summary_markdown(df) + "\n"}
    try:  # none renamed into place before all three are on disk; signals held for the renames
        atomic.write_group({path: text.encode("utf-8") for path, text in files.items()})
    except OSError as exc:
        raise ResultsWriteError(f"cannot write the results table in {run_dir}: "
                                f"{exc.strerror or exc}; the rows written before are intact")
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
    if path.suffix not in (".json", ".csv"):
        raise UserError(f"{run_dir} is not a run folder or a results .json/.csv file")
    try:
        if path.suffix == ".json":
            return to_frame(rows_of(json.loads(path.read_text(encoding="utf-8")), path))
        return pd.read_csv(path)
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read results table {path}: {exc}".splitlines()[0]) from None


def rows_of(data, label) -> list[dict]:
    """The ``rows`` list of a ganbench JSON table (a run's results.json or a bench-attention
    JSON), checked: a dict with a list of objects under "rows". UserError (one line) if not."""
    if not isinstance(data, dict) or "rows" not in data:
        raise UserError(f"{label} is not a ganbench results table (no \"rows\" key)")
    rows = data["rows"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{label}: \"rows\" must be a list of objects, one per row "
                        f"(got {type(rows).__name__})")
    return rows


# The run summary (printed by `run`, written to results.md, `report`): the columns that matter,
# then every quality column of the metrics that ran (built-in or plugin), each with its unit.
# Under a width limit the columns in SUMMARY_DROPPABLE go first, in that order, then the
# rightmost others.
SUMMARY_CORE = ["combo", "status", "img_per_s", "step_ms", "peak_mem_bytes"]
# Secondary columns a metric writes that are not worth the default table's width (shown with
# --columns or --all-columns); shell patterns.
SUMMARY_HIDDEN = ("metric_n", "metric_image_size", "modes_kl", "modes_total", "prdc_density",
                  "prdc_coverage", "memo_nn_ratio",
                  # argmax shares of every class; the table shows modes_share_<d> (confident
                  # shares of the selected digits, what "covered" is judged on) instead
                  "modes_frac_*")
# Per-class columns (``modes_frac_7``): shown only for the classes the run selected.
_PER_CLASS = re.compile(r"_(?:frac|share)_(\d+)$")


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Columns of df written by a metric plugin (built-in or third-party), in table order.

    A column belongs to a metric when the registered metric declares its direction
    (MetricSpec.directions) or when it starts with the metric's name in snake_case
    (``fid-digits`` -> ``fid_digits``, ``prdc`` -> ``prdc_precision``), the naming rule
    ganbench.specs.Metric documents.
    """
    from ganbench.results.compare import metric_directions

    declared = metric_directions()
    prefixes = tuple(name.replace("-", "_") for name in _metric_names())
    out = []
    for column in df.columns:
        if column in SUMMARY_CORE:
            continue
        if any(_match(column, pattern) for pattern in declared) or (
                prefixes and column.startswith(prefixes)):
            out.append(column)
    return out


def _match(column: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(column, pattern)


def _metric_names() -> list[str]:
    try:
        from ganbench.registry import get_registry

        return list(get_registry().metrics)
    except Exception:  # a table must print even when the plugins cannot load
        return []


def summary_columns(df: pd.DataFrame) -> list[str]:
    """The default columns of the run summary for this table (see SUMMARY_CORE)."""
    from ganbench.results.table import non_empty

    selected = _selected_classes(df)
    metrics = []
    for column in metric_columns(df):
        if any(_match(column, p) for p in SUMMARY_HIDDEN):
            continue
        per_class = _PER_CLASS.search(column)
        if per_class and (selected is None or int(per_class.group(1)) not in selected):
            continue
        metrics.append(column)
    return non_empty(with_display_columns(df), SUMMARY_CORE + metrics)


def _selected_classes(df: pd.DataFrame) -> Optional[set[int]]:
    """The digit classes the run trained on (the ``digits`` column, '7,8'); None if unknown."""
    if "digits" not in df:
        return None
    out: set[int] = set()
    for value in df["digits"].dropna():
        out |= {int(part) for part in re.findall(r"\d+", str(value))}
    return out or None


def summary_markdown(df: pd.DataFrame, columns: Optional[list[str]] = None,
                     width: Optional[int] = None) -> str:
    """The human table of a run: ``columns`` (default :func:`summary_columns`), units in the
    headers, one format per column, blanks for missing values (ganbench.results.table).

    ``width``: a terminal's width: the table is drawn without pipes and fitted to it by leaving
    out low-priority columns (named in a note under it); None: markdown with no limit
    (results.md). ``step_ms`` is a display column: the median step with its p10-p90 range.
    Names df lacks are skipped and named in a note under the table (``run --columns`` is typed
    before the table exists); ``report`` checks them first with
    ganbench.results.table.check_columns(names, display_columns(df)). The runner prints
    ``summary_markdown(df, cfg_columns, width=ganbench.results.table.terminal_width())``.
    """
    from ganbench.results.table import render, width_of

    if df.empty:
        return "(no rows)"
    view = with_display_columns(df)
    cols = list(columns) if columns else summary_columns(df)
    style = "github" if width is None else "simple"
    droppable: list[str] = []
    if width is not None and not columns:
        fits = lambda c: width_of(render(view, c, style=style)) <= width  # noqa: E731
        # Quiet savings first: the status column when every row trained (it says nothing),
        # then the step time's p10-p90 (the median stays)...
        if (not fits(cols) and "status" in cols
                and set(view["status"].dropna()) <= {"ok", "reference"}):
            cols.remove("status")
        # ...then per-class shares, then the rightmost columns, each named in a note; so a
        # plugin's metric outlives the built-in per-class detail. The step time keeps its
        # p10-p90 spread at every width (issue 22): a median alone hides a loaded machine.
        droppable = [c for c in cols if _PER_CLASS.search(c)]
    out = render(view, cols, width=width, keys=["combo", "step_ms"], style=style,
                 droppable=droppable)
    unknown = [c for c in cols if c not in view.columns]
    if unknown:  # `run --columns` is typed before the table exists: say so, do not fail late
        out += (f"\n(no column {', '.join(unknown)} in this table; see `ganbench report RUN_DIR "
                "--all-columns` for the names)")
    from ganbench.results.table import timing_note

    note = timing_note(df, width)  # timings under load or with a wide spread, at every width
    return out + ("\n" + note if note else "")


def with_display_columns(df: pd.DataFrame) -> pd.DataFrame:
    """df plus ``step_ms``: '181 (172-192)', the median step time and its p10-p90 (ms)."""
    from ganbench.results.table import missing, sig

    view = df.copy()
    if "step_ms_median" in view:
        def cell(row) -> str:
            median = sig(row.get("step_ms_median"), 3)
            lo, hi = row.get("step_ms_p10"), row.get("step_ms_p90")
            if not median or missing(lo) or missing(hi):
                return median
            return f"{median} ({sig(lo, 3)}-{sig(hi, 3)})"
        view["step_ms"] = [cell(r) for r in view.to_dict("records")]
    return view


def display_columns(df: pd.DataFrame) -> list[str]:
    """Every column --columns may name for this table (its own and the display ones)."""
    return list(with_display_columns(df).columns)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`ganbench.files.atomic.write_text`)."""
    atomic.write_text(path, text)
