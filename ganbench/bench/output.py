"""The attention bench's table for people (terminal and markdown, with notes on how each
column was measured), its JSON, the suspect-timing flag, and its files written as one group."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ganbench.bench.suspect import SUSPECT, suspect_flags, suspect_pairs

# The tables' columns: ``spread_ms`` is shown only ("p10-p90 ms": p10_ms-p90_ms in one cell,
# so a narrow terminal drops the spread whole, never half of it); the files keep both.
SUMMARY_COLUMNS = ["kernel", "site", "pass", "batch", "N", "Dqk", "Dv", "median_ms",
                   "spread_ms", "count", "graph_median_ms", "tflops", "gb_per_s",
                   "roofline_pct", "bound", "rel_err_max", "peak_extra_mem_bytes", "backend",
                   "suspect", "status"]
COLUMN_CHOICES = SUMMARY_COLUMNS + ["p10_ms", "p90_ms"]  # what --columns may name
KEYS = ["kernel", "site", "pass"]
# Left out first, in this order, when the printed table must fit a terminal (the files and
# --columns keep them): the shape's details and derived rates go before the timing's spread
# and count, which say how far the median can be trusted (the site gives N). Only the
# keys, ms, suspect and status are not listed (render drops those last, from the right).
DROPPABLE = ["Dqk", "Dv", "batch", "N", "gb_per_s", "backend", "bound", "peak_extra_mem_bytes",
             "tflops", "roofline_pct", "rel_err_max", "graph_median_ms", "spread_ms", "count",
             "p10_ms", "p90_ms"]
JSON_KIND = "ganbench-bench-attention"  # ganbench.results.compare.BENCH_KIND reads this format
FILES = ("csv", "json", "md", "png")


def _with_flags(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``suspect`` column (computed for tables written before it existed)."""
    if "suspect" in df.columns:
        return df
    return df.assign(suspect=suspect_flags(df))


def _for_people(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``df`` with the display column ``spread_ms`` and the formats that show it."""
    from ganbench.results.table import Format, as_is, missing, sig

    df = _with_flags(df)
    if {"p10_ms", "p90_ms"} <= set(df.columns):
        df = df.assign(spread_ms=[
            "" if missing(lo) or missing(hi) else f"{sig(lo, 3)}-{sig(hi, 3)}"
            for lo, hi in zip(df["p10_ms"], df["p90_ms"])])
    return df, {"spread_ms": Format("p10-p90 ms", as_is, numeric=False)}


def notes(df: pd.DataFrame) -> list[str]:
    """One line per derived column saying how it was measured, from the table itself."""
    from ganbench.bench.accuracy import ACCURACY_LIMITS  # (imports torch: not at start-up)

    env = df.iloc[0]
    lines = [f"device: {env['device_name']} ({env['device']}), dtype {env['dtype']}, "
             f"torch {env['torch_version']}, triton {env['triton_version']}, "
             f"commit {env['git_commit']}"]
    counts = df.loc[df["count"] > 0, "count"] if "count" in df else pd.Series(dtype=float)
    if len(counts):
        low, high = int(counts.min()), int(counts.max())
        lines.append(f"ms: median time per call over the row's n timed calls after warm-up "
                     f"(n = {low if low == high else f'{low}-{high}'} per row); p10-p90: "
                     f"the spread of those calls")
    methods = df["mem_method"].dropna().unique() if "mem_method" in df else []
    lines.append("extra MiB (peak_extra_mem_bytes): " + ("; ".join(methods) if len(methods)
                                                         else "no row ran"))
    if "graph_status" in df and df["graph_median_ms"].notna().any():
        note = ("graph ms: per replay of one call captured in a CUDA graph (no host "
                "launch gaps)")
        failed = df[df["graph_status"] != "ok"]
        if len(failed):
            reasons = failed.groupby("graph_status", sort=False)["kernel"].unique()
            note += "; not measured: " + "; ".join(f"{', '.join(kernels)} ({reason})"
                                                   for reason, kernels in reasons.items())
        lines.append(note)
    if "bound" in df and df["bound"].notna().any():
        lines.append("% roofline: 100 * max(FLOPs / peak FLOP/s, min bytes / bandwidth, exps / "
                     "exp rate) / median time; bound: the largest term")
    elif "bound" in df:
        lines.append("% roofline and bound: not shown, the peaks of this device are unknown")
    if "rel_err_max" in df and env["dtype"] in ACCURACY_LIMITS:
        lines.append("rel err: max ||x - ref|| / ||ref|| over o (fwd) or o, dq, dk, dv "
                     "(fwd+bwd) against attend_reference in float64 on fresh inputs; limit for "
                     f"{env['dtype']}: {ACCURACY_LIMITS[env['dtype']]:g}")
    suspect = suspect_pairs(df)
    if suspect:
        from ganbench.results.table import sig

        pairs = "; ".join(f"{kernel} {site} ({sig(fwd, 3)} ms > {sig(both, 3)} ms)"
                          for _, kernel, site, fwd, both in suspect)
        lines.append(f"suspect timing ({SUSPECT}): a forward slower than its own forward + "
                     f"backward, which includes it: recompilation or load during its timing, "
                     f"not its cost: {pairs}. Rerun them, or time longer (--min-time)")
    return lines


def _shown(df: pd.DataFrame, columns: Optional[Sequence[str]]) -> list[str]:
    """The requested columns, or the summary ones that have a value in some row (on the CPU
    the CUDA-graph, roofline and bound columns are empty: left out)."""
    from ganbench.results.table import non_empty

    if columns:
        return [c for c in columns if c in df.columns]
    return non_empty(df, SUMMARY_COLUMNS)


def to_markdown(df: pd.DataFrame, header: str = "",
                columns: Optional[Sequence[str]] = None) -> str:
    """The summary columns (those with values) as a markdown table with units in the headers,
    after an optional header paragraph and notes on how the columns were measured: the text
    of attention-bench.md (not fitted to a width: a file)."""
    from ganbench.results.table import render

    df, formats = _for_people(df)
    table = render(df, _shown(df, columns), formats=formats) if len(df) else "(no rows)"
    lines = [header] if header else []
    if len(df):
        lines += notes(df)
    return "\n\n".join(lines + [table]) + "\n"


def to_text(df: pd.DataFrame, columns: Optional[Sequence[str]] = None,
            width: Optional[int] = None) -> str:
    """The table for a terminal: notes wrapped to ``width``, then the columns fitted to it by
    ``ganbench.results.table.render`` (the :data:`DROPPABLE` ones left out first, named in a
    note). No line is wider than ``width`` unless a single word (a path) is."""
    from ganbench.results.table import render

    if not len(df):
        return "(no rows)"
    df, formats = _for_people(df)
    table = render(df, _shown(df, columns), width=width, style="simple", formats=formats,
                   droppable=() if columns else DROPPABLE, keys=KEYS)
    text = notes(df)
    if width:
        text = [wrapped for line in text for wrapped in textwrap.wrap(
            line, width=width, subsequent_indent="  ", break_on_hyphens=False,
            break_long_words=False)]
    return "\n".join(text + ["", table])


def to_json(df: pd.DataFrame, settings: Optional[dict] = None) -> str:
    """The bench JSON (``attention-bench.json``, ``bench attention --json``):
    ``{"kind": "ganbench-bench-attention", "settings": {...}, "rows": [...]}``, one row per
    kernel x site x pass with every column, missing values null. ``ganbench compare`` and
    ``ganbench report`` read it; rows are keyed by kernel, site and pass."""
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    return json.dumps({"kind": JSON_KIND, "settings": dict(settings or {}), "rows": records},
                      indent=1, default=str) + "\n"


def check_out_dir(out_dir: Path) -> None:
    """Refuse (ConfigError, exit 2) an ``--out`` that is an existing file, or a folder that
    already holds a bench's results: nothing is overwritten. Called before any timing."""
    from ganbench.errors import ConfigError

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is an existing file; bench attention writes a "
                          "folder: choose a new folder name")
    existing = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out {out_dir}: {existing} is a file, not a folder")
    taken = [p.name for p in sorted(out_dir.glob("attention-bench.*"))] if out_dir.is_dir() else []
    if taken:
        raise ConfigError(f"--out {out_dir} already holds {', '.join(taken)}; choose another "
                          "folder (nothing was overwritten)")


def write_outputs(df: pd.DataFrame, out_dir: Path, header: str = "",
                  settings: Optional[dict] = None) -> dict[str, Path]:
    """attention-bench.{csv,json,md,png} in ``out_dir`` (csv and json: every column, the json
    in :func:`to_json`'s format; md: the summary columns; png: the chart, none when no row has
    a timing), written as one group by ``ganbench.files.atomic.write_group`` (the run table's
    writer): every file is rendered first, none is renamed into place before all are on disk,
    and a failure leaves the folder's previous files as they were and none of the new ones
    (:class:`ganbench.files.atomic.WriteError`). Returns the paths by format."""
    from ganbench.bench.figure import chart_png
    from ganbench.files import atomic

    out_dir = Path(out_dir)
    df = _with_flags(df)
    content = {"csv": df.to_csv(index=False).encode("utf-8"),
               "json": to_json(df, settings).encode("utf-8"),
               "md": to_markdown(df, header).encode("utf-8"),
               "png": chart_png(df) if df["median_ms"].notna().any() else None}
    paths = {ext: out_dir / f"attention-bench.{ext}" for ext in FILES if content[ext] is not None}
    atomic.write_group({paths[ext]: content[ext] for ext in paths})
    return paths
