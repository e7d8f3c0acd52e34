"""Rows -> one tidy DataFrame -> CSV, JSON and markdown, written atomically after every row.

One row per combination and seed (plus the real-data reference row when metrics run).
Columns are fixed keys from the runner, metric columns from the metric plugins, and the
environment columns from ganbench.training.measure; what each column is (label, unit, format,
direction, shown by default) is ganbench.results.columns. Missing values are NaN/None, never a
string sentinel such as "N/A". When a combination has several seeds, ``summary.csv`` (one row
per combination: ganbench.results.summary) and ``verdicts.csv`` (ganbench.results.verdicts)
are written beside the table, and the human table (results.md, the screen) is the summary
followed by the verdicts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ganbench.files import atomic
from ganbench.errors import ResultsWriteError, UserError
from ganbench.results.columns import PER_CLASS

TABLE_CSV = "results.csv"
TABLE_JSON = "results.json"
TABLE_MD = "results.md"


# Columns first in the CSV/JSON; everything else follows in row order.
LEAD_COLUMNS = ["combo", "architecture", "loss", "attention", "status", "steps", "batch_size",
                "image_size", "dtype", "step_ms_median", "step_ms_p10", "step_ms_p90",
                "img_per_s", "peak_mem_bytes"]


def to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    from ganbench.results.table import integer_columns

    rows = list(rows)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = integer_columns(df, rows)  # steps 10, not 10.0, beside the "real data" row
    lead = [c for c in LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def write_table(rows: list[dict], run_dir: Path, reference: Optional[str] = None
                ) -> pd.DataFrame:
    """Write the rows as results.csv, results.json and results.md in run_dir (atomically),
    and with several seeds per combination summary.csv and verdicts.csv too.

    ``reference``: the combination the verdicts judge every other against; default the
    ``reference`` saved in run_dir/config.json (``ganbench run --reference``), else every
    pair. The returned frame carries it in ``df.attrs["reference"]`` for the printed table.
    Each file is either its previous version or the new one, never torn; an interrupt is held
    back until all are written. ResultsWriteError (one line) if the disk refuses.
    """
    df = to_frame(rows)
    df.attrs["reference"] = reference if reference is not None else configured_reference(
        run_dir)
    files = {run_dir / TABLE_CSV: df.to_csv(index=False),
             run_dir / TABLE_JSON: json.dumps({"rows": rows}, indent=1, default=_json_default,
                                              allow_nan=True) + "\n",
             run_dir / TABLE_MD: summary_markdown(df) + "\n"}
    files.update(seed_files(df, run_dir))
    try:  # none renamed into place before all three are on disk; signals held for the renames
        atomic.write_group({path: text.encode("utf-8") for path, text in files.items()})
    except OSError as exc:
        raise ResultsWriteError(f"cannot write the results table in {run_dir}: "
                                f"{exc.strerror or exc}; the rows written before are intact")
    return df


def seed_files(df: pd.DataFrame, run_dir: Path) -> dict[Path, str]:
    """summary.csv and verdicts.csv for a run with several seeds per combination, else {}."""
    from ganbench.results.summary import SUMMARY_CSV, has_seeds, summarise
    from ganbench.results.verdicts import VERDICTS_CSV, verdicts

    if not has_seeds(df):
        return {}
    out = {run_dir / SUMMARY_CSV: summarise(df).to_csv(index=False)}
    try:
        out[run_dir / VERDICTS_CSV] = verdicts(df, _reference_in(df)).to_csv(index=False)
    except ValueError:  # a --reference the table does not (yet) have: no verdicts file
        pass
    return out


def configured_reference(run_dir: Path) -> Optional[str]:
    """``reference`` from run_dir/config.json (``ganbench run --reference``), or None."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("reference") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _reference_in(df: pd.DataFrame) -> Optional[str]:
    """The verdicts' reference for df: df.attrs["reference"] when df has that combination
    (a run still training may not have it yet: then every pair)."""
    reference = df.attrs.get("reference")
    if reference is not None and "combo" in df and reference in set(df["combo"].astype(str)):
        return reference
    return None


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
# Which columns are shown by default is the column registry's ``visible`` (core: combo,
# status, img/s, step time, peak memory; metric columns unless their plugin hides them).
# Under a width limit, per-class shares go first, then the rightmost others.
SUMMARY_CORE = ["combo", "status", "img_per_s", "step_ms", "peak_mem_bytes"]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Columns of df written by a metric plugin (built-in or third-party), in table order:
    those its MetricSpec declares (``directions``, ``columns``) or that start with the
    metric's name in snake_case (``fid-digits`` -> ``fid_digits``), the naming rule
    ganbench.specs.Metric documents (ganbench.results.columns)."""
    from ganbench.results.columns import metric_columns as of

    return [c for c in of(df.columns) if c not in SUMMARY_CORE]


def summary_columns(df: pd.DataFrame) -> list[str]:
    """The default columns of the run summary for this table: the registry's visible core
    columns, then the visible metric columns (per-class ones only for the selected digits)."""
    from ganbench.results.columns import column, visible_core
    from ganbench.results.table import non_empty

    selected = _selected_classes(df)
    metrics = []
    for name in metric_columns(df):
        if not column(name).visible:
            continue
        per_class = PER_CLASS.search(name)
        if per_class and (selected is None or int(per_class.group(1)) not in selected):
            continue
        metrics.append(name)
    return non_empty(with_display_columns(df), visible_core() + metrics)


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
    With several seeds per combination it is :func:`seeds_markdown` instead: one row per
    combination and the verdicts under it.
    """
    from ganbench.results.table import render, width_of

    if df.empty:
        return "(no rows)"
    if _several_seeds(df):
        return seeds_markdown(df, columns, width)
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
        droppable = [c for c in cols if PER_CLASS.search(c)]
    out = render(view, cols, width=width, keys=["combo", "step_ms"], style=style,
                 droppable=droppable)
    unknown = [c for c in cols if c not in view.columns]
    if unknown:  # `run --columns` is typed before the table exists: say so, do not fail late
        out += (f"\n(no column {', '.join(unknown)} in this table; see `ganbench report RUN_DIR "
                "--all-columns` for the names)")
    from ganbench.results.table import timing_note

    note = timing_note(df, width)  # timings under load or with a wide spread, at every width
    return out + ("\n" + note if note else "")


def _several_seeds(df: pd.DataFrame) -> bool:
    from ganbench.results.summary import has_seeds

    return has_seeds(df)


def seeds_markdown(df: pd.DataFrame, columns: Optional[list[str]] = None,
                   width: Optional[int] = None) -> str:
    """:func:`summary_markdown` of a run with several seeds per combination: one row per
    combination (median [interval] over its seeds, ganbench.results.summary) instead of the
    per-seed rows, then the verdicts (ganbench.results.verdicts) against
    ``df.attrs["reference"]`` when df has that combination, else between every pair."""
    from ganbench.results.summary import summary_table
    from ganbench.results.verdicts import render as render_verdicts, verdicts

    style = "github" if width is None else "simple"
    cols = list(columns) if columns else summary_columns(df)
    if not columns and "status" in cols and set(df["status"].dropna()) <= {"ok", "reference"}:
        cols.remove("status")  # every seed of every combination trained: it says nothing
    # Under a width limit the step time goes first (img/s says the same at a known batch),
    # then the per-class shares, then the rightmost columns.
    droppable = ([c for c in cols if c == "step_ms"] + [c for c in cols if PER_CLASS.search(c)]
                 if not columns else [])
    out = summary_table(df, cols, width, style, droppable)
    reference = df.attrs.get("reference")
    judged = _reference_in(df)
    if reference is not None and judged is None:
        out += f"\n(--reference {reference}: not in this table; verdicts between every pair)"
    text = render_verdicts(verdicts(df, judged), width=width, style=style)
    if text:
        title = (f"Verdicts against {judged}" if judged else "Verdicts between combinations")
        out += f"\n\n{title} (per metric, over seeds):\n\n{text}"
    unknown = [c for c in cols if c not in with_display_columns(df).columns]
    if unknown:
        out += (f"\n(no column {', '.join(unknown)} in this table; see `ganbench report RUN_DIR "
                "--all-columns` for the names)")
    from ganbench.results.table import timing_note

    note = timing_note(df, width)  # seeds timed under load or with a wide spread
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
