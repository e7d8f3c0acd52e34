"""Rows -> one tidy DataFrame -> CSV, JSON and markdown, written atomically after every row.

One row per combination (plus the real-data reference row when metrics run). Columns are fixed
keys from the runner, metric columns from the metric plugins, and the environment columns from
ganbench.measure. Missing values are NaN/None, never a string sentinel such as "N/A".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from ganbench.errors import UserError

TABLE_CSV = "results.csv"
TABLE_JSON = "results.json"
TABLE_MD = "results.md"


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before
    os.umask(mask)      # any thread (--jobs) could create a file in between
    return mask


_UMASK = _read_umask()

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
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ResultsWriteError(UserError):
    """The results table could not be written (disk full, folder removed): exit code 1, since
    the run itself failed rather than the user's input. The previous table is left intact."""

    exit_code = 1


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold back Ctrl-C and SIGTERM for the body, then deliver them.

    For writes that must finish as a group (the three tables, a checkpoint and its checksum).
    Only the main thread can change signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # the restored handler acts as if it had come now


def to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    lead = [c for c in LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def write_table(rows: list[dict], run_dir: Path) -> pd.DataFrame:
    """Write the rows as results.csv, results.json and results.md in run_dir (atomically).

    Each file is either its previous version or the new one, never torn; an interrupt is held
    back until all three are written. ResultsWriteError (one line) if the disk refuses.
    """
    df = to_frame(rows)
    try:
        with signals_deferred():
            atomic_write_text(run_dir / TABLE_CSV, df.to_csv(index=False))
            atomic_write_text(run_dir / TABLE_JSON,
                              json.dumps({"rows": rows}, indent=1, default=_json_default,
                                         allow_nan=True) + "\n")
            atomic_write_text(run_dir / TABLE_MD, summary_markdown(df) + "\n")
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
