"""Tables for people: one module that turns a DataFrame into text for every command.

Used by the run summary (``results.summary_markdown``), ``report``, ``compare``, ``plugins``
and ``bench attention``, so a column reads the same everywhere:

* headers carry units (``step ms``, ``peak MiB``, ``img/s``); byte columns are shown in MiB;
* each column has one format (its header and format come from the column registry,
  ganbench.results.columns): fixed-point with a set number of significant
  figures, never scientific notation mixed with plain numbers (``6746`` beside ``16270``, not
  ``1.627e+04``); error columns are always scientific; TFLOP/s columns whose values are all
  below 1 are shown as GFLOP/s;
* missing values (None, NaN) are blank, never ``nan``;
* :func:`render` fits a width (default the terminal's, 120 off a terminal): it drops
  low-priority columns first and says which; ``split=True`` instead cuts the columns into
  several tables of that width, each repeating the key column (``report --all-columns``).

Files get GitHub-flavoured markdown (tabulate's "github" format: results.md renders as a table
in a PR comment or a CI summary); the terminal gets tabulate's "simple" format (no pipes, two
spaces between columns), which leaves room for more columns in 120 characters.
CSV/JSON for programs are written elsewhere at full precision; this module is display only.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

MIB = 2 ** 20
DEFAULT_WIDTH = 120   # off a terminal (pipes, CI logs, results.md is not fitted at all)
TEXT_LIMIT = 48       # longest text cell before it is cut with an ellipsis


# ------------------------------------------------------------------------------------------
# Number formats
# ------------------------------------------------------------------------------------------
def missing(value) -> bool:
    """None, NaN, pandas NA or an empty string."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() == "nan"
    if type(value).__name__ == "NAType":  # pandas.NA (nullable Int64 columns): its != is NA
        return True
    try:
        return bool(value != value)  # NaN is not equal to itself
    except (TypeError, ValueError):
        return False


def _float(value) -> Optional[float]:
    if missing(value) or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def sig(value, figures: int = 3, max_decimals: int = 6) -> str:
    """Fixed-point with ``figures`` significant figures: 16270.4 -> '16270', 6746.2 -> '6746',
    171.53 -> '172', 3.2231 -> '3.22', 0.000278 -> '0.000278'. Never scientific notation;
    whole numbers keep all their digits. Blank for missing; inf as 'inf'."""
    if missing(value):
        return ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    decimals = figures - 1 - math.floor(math.log10(abs(v)))
    decimals = max(0, min(max_decimals, decimals))
    return f"{v:.{decimals}f}"


def integer(value) -> str:
    v = _float(value)
    return "" if v is None else f"{v:.0f}"


def fixed(decimals: int) -> Callable[[object], str]:
    def fmt(value) -> str:
        v = _float(value)
        return "" if v is None else f"{v:.{decimals}f}"
    return fmt


def mib(value) -> str:
    """Bytes as MiB with one decimal: 573046784 -> '546.5'."""
    v = _float(value)
    return "" if v is None else f"{v / MIB:.1f}"


def scientific(value) -> str:
    v = _float(value)
    return "" if v is None else f"{v:.1e}"


def signed_pct(value) -> str:
    """A relative change: +12.3%, -4.0%, 0.0%; blank when missing."""
    v = _float(value)
    if v is None:
        return ""
    return f"{v:+.1f}%" if round(v, 1) != 0 else "0.0%"


def text(value) -> str:
    if missing(value):
        return ""
    s = " ".join(str(value).split())
    return s if len(s) <= TEXT_LIMIT else s[:TEXT_LIMIT - 1] + "…"


def as_is(value) -> str:
    """Text already formatted by the caller: unchanged (blank when missing)."""
    return "" if missing(value) else str(value)


def general(value) -> str:
    """A column nothing is known about: integers as integers, other numbers with 4
    significant figures, text as text."""
    if isinstance(value, bool):
        return str(value)
    v = _float(value)
    if v is None:
        return text(value) if not missing(value) and not isinstance(value, (int, float)) else ""
    if v.is_integer() and abs(v) < 1e15:
        return f"{v:.0f}"
    return sig(v, 4)


# ------------------------------------------------------------------------------------------
# Known columns: header (with unit) and format, from ganbench.results.columns
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    header: str
    fmt: Callable[[object], str]
    numeric: bool = True


def formatter(name: str) -> Callable[[object], str]:
    """A format name of the column registry (``sig3``, ``fixed2``, ``int``, ``mib``, ``sci``,
    ``text``, ``as-is``, ``general``; see ganbench.specs.COLUMN_FORMAT) -> its function."""
    if name.startswith("sig"):
        figures = int(name[3:])
        return lambda value: sig(value, figures)
    if name.startswith("fixed"):
        return fixed(int(name[5:]))
    return {"int": integer, "mib": mib, "sci": scientific, "text": text, "as-is": as_is,
            }.get(name, general)


def format_of(column: str) -> Format:
    """The column's header (label and unit) and format, from the column registry
    (ganbench.results.columns: the core's columns and each metric plugin's declarations);
    an undeclared column shows its own name with :func:`general`."""
    from ganbench.results.columns import column as lookup

    info = lookup(column)
    return Format(info.header, formatter(info.format), info.format not in ("text", "as-is"))


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------
def terminal_width() -> int:
    """Columns of the terminal on stdout; :data:`DEFAULT_WIDTH` when it is not a terminal
    (``COLUMNS`` in the environment wins, as shutil documents)."""
    if "COLUMNS" in os.environ:
        try:
            return max(40, int(os.environ["COLUMNS"]))
        except ValueError:
            pass
    try:
        if os.isatty(1):
            return max(40, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)
    except OSError:
        pass
    return DEFAULT_WIDTH


def cells(df, columns: Sequence[str], formats: Optional[dict] = None,
           ) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows of strings, alignments "left"/"right") for ``columns`` of df, each
    formatted by its Format (``formats`` first); TFLOP/s scaled to GFLOP/s when all < 1.
    The HTML report builds its table from this too."""
    headers, body, align = [], [], []
    for column in columns:
        spec = (formats or {}).get(column) or format_of(column)
        values = list(df[column])
        header, fmt = spec.header, spec.fmt
        if column == "tflops":
            finite = [v for v in map(_float, values) if v is not None]
            if finite and max(abs(v) for v in finite) < 1:
                header = "GFLOP/s"
                values = [None if _float(v) is None else _float(v) * 1000 for v in values]
        texts = [fmt(v) for v in values]
        numeric = spec.numeric and all(t == "" or _looks_numeric(t) for t in texts)
        headers.append(header)
        body.append(texts)
        align.append("right" if numeric else "left")
    rows = [list(r) for r in zip(*body)] if body else []
    return headers, rows, align


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell.rstrip("%").replace("+", ""))
        return True
    except ValueError:
        return cell in ("inf", "-inf")


def _tabulate(headers, rows, align, style: str = "github") -> str:
    import tabulate as tabulate_module

    # tabulate pads every header by MIN_PADDING (2) extra spaces; the cells already have one
    # space each side in the github format, so the extra two only cost width.
    saved = tabulate_module.MIN_PADDING
    tabulate_module.MIN_PADDING = 0
    try:
        return tabulate_module.tabulate(rows, headers=headers, tablefmt=style,
                                        colalign=align, disable_numparse=True)
    finally:
        tabulate_module.MIN_PADDING = saved


def width_of(table_text: str) -> int:
    return max((len(line) for line in table_text.splitlines()), default=0)


def non_empty(df, columns: Iterable[str]) -> list[str]:
    """The columns of ``columns`` present in df with at least one value."""
    return [c for c in columns if c in df.columns and not all(missing(v) for v in df[c])]


def render(df, columns: Optional[Sequence[str]] = None, width: Optional[int] = None,
           droppable: Sequence[str] = (), keys: Sequence[str] = (), split: bool = False,
           formats: Optional[dict[str, Format]] = None, style: str = "github",
           hint: str = "choose with --columns") -> str:
    """``df[columns]`` as a markdown table for people.

    ``columns``: which and in what order (default every column of df); names df lacks are
    skipped. ``width``: the widest a line may be (None: no limit). When the table is wider,
    columns in ``droppable`` are left out, in that order, and a note after the table names
    them;
    if it still does not fit, the rightmost non-key columns are dropped the same way. With
    ``split=True`` nothing is dropped: the columns are cut into consecutive tables of at most
    ``width``, each starting with the ``keys`` columns (which are never dropped).
    ``formats``: column -> Format, overriding :func:`format_of` (e.g. ``as_is`` for cells the
    caller formatted). ``style``: "github" (markdown, for files and pasting) or "simple"
    (no pipes, two spaces between columns: the terminal, where width is scarce). ``hint``
    ends the note on dropped columns: how to see them.
    """
    cols = [c for c in (columns if columns is not None else list(df.columns)) if c in df.columns]
    if not cols:
        return "(no columns)"
    if len(df) == 0:
        return "(no rows)"
    full = _tabulate(*cells(df, cols, formats), style)
    if width is None or width_of(full) <= width:
        return full
    keys = [c for c in keys if c in cols]
    if split:
        return _split(df, cols, keys, width, formats, style)
    dropped: list[str] = []
    order = [c for c in droppable if c in cols and c not in keys]
    order += [c for c in reversed(cols) if c not in order and c not in keys]
    current = list(cols)
    out = full
    for column in order:
        if width_of(out) <= width or len(current) <= max(1, len(keys)):
            break
        current.remove(column)
        dropped.append(column)
        out = _tabulate(*cells(df, current, formats), style)
    if dropped:
        import textwrap

        note = (f"({len(dropped)} column(s) left out to fit {width} characters: "
                f"{', '.join(c for c in cols if c in dropped)}; {hint})")
        out += "\n" + "\n".join(textwrap.wrap(note, width=width, break_on_hyphens=False))
    return out


def _split(df, cols: list[str], keys: list[str], width: int, formats=None,
           style: str = "github") -> str:
    rest = [c for c in cols if c not in keys]
    parts, current = [], []
    for column in rest:
        trial = _tabulate(*cells(df, keys + current + [column], formats), style)
        if current and width_of(trial) > width:
            parts.append(_tabulate(*cells(df, keys + current, formats), style))
            current = []
        current.append(column)
    if current or not parts:
        parts.append(_tabulate(*cells(df, keys + current, formats), style))
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------------
# Timings taken under load
# ------------------------------------------------------------------------------------------
# When a row's step times cannot be trusted (issue 22: on a loaded machine SAGAN came out
# faster than DCGAN, 57 vs 41 img/s, where quiet it is 623 vs 1139, and nothing said so).
# The spread: quiet runs on the project's 2-core VM had p90/p10 of 1.16 to 1.74 (README, CPU
# step table); the loaded default run 3.0 to 4.5 (p10-p90 of 663-5360 ms). Above 2 the median
# of a short run is not a stable figure.
SPREAD_LIMIT = 2.0
# The share of the time the worker's threads were ready to run but waited for a core
# (/proc/self/task/*/schedstat): the direct measure of contention. The 30-step default run on
# the project's 2-core VM: quiet (load average 1.3) 0.004 (DCGAN) and 0.005 (SAGAN); with two
# busy processes beside it (load 4-5) 0.58 and 0.67, its DCGAN step 891 ms instead of 97. Over
# 10% the step times include other processes' turns. (CPU time over wall time, also recorded,
# is no rule: quiet it was 1.69 of 2 threads for DCGAN, whose small ops run partly on one.)
WAIT_LIMIT = 0.10
# The load average counts our own threads (one per core by default), so only a load above
# cores + 1 says that something else wanted a core while we trained.
LOAD_MARGIN = 1.0
# Steal: CPU time the hypervisor gave to other virtual machines; over 5% the step times
# include a host's other tenants.
STEAL_LIMIT_PCT = 5.0


def unreliable_timing(row: dict) -> list[str]:
    """Why the step times of ``row`` (a results row) are unreliable, one short phrase each;
    empty when nothing says so. Uses whichever columns the row has (older tables lack the
    load columns; rows without timings give nothing)."""
    reasons = []
    p10, p90 = _float(row.get("step_ms_p10")), _float(row.get("step_ms_p90"))
    if p10 and p90 and p90 / p10 > SPREAD_LIMIT:
        reasons.append(f"p90/p10 {p90 / p10:.1f}")
    if str(row.get("device", "cpu")).startswith("cuda"):
        return reasons  # the host's load does not time a GPU's kernels
    cores = _float(row.get("cores"))
    loads = [v for v in (_float(row.get("load_avg_start")), _float(row.get("load_avg_end")))
             if v is not None]
    if cores and loads and max(loads) > cores + LOAD_MARGIN:
        reasons.append(f"load {max(loads):.1f} on {cores:.0f} cores")
    wait = _float(row.get("cpu_wait_share"))
    if wait is not None and wait > WAIT_LIMIT:
        reasons.append(f"waited for a core {wait:.0%} of the time")
    steal = _float(row.get("steal_pct"))
    if steal is not None and steal > STEAL_LIMIT_PCT:
        reasons.append(f"steal {steal:.0f}%")
    return reasons


def timing_note(df, width: Optional[int] = None) -> str:
    """A note for under a table: the rows whose timings are unreliable and why ("" if none).
    Wrapped to ``width`` (None: one line)."""
    if df is None or len(df) == 0:
        return ""
    seeds = "seed" in df and df["seed"].dropna().nunique() > 1  # several rows per combo
    parts = []
    for row in df.to_dict("records"):
        reasons = unreliable_timing(row)
        if reasons:
            name = str(row.get("combo", "?"))
            if seeds and not missing(row.get("seed")):
                name += f" seed {integer(row['seed'])}"
            parts.append(f"{name} ({', '.join(reasons)})")
    if not parts:
        return ""
    note = (f"warning: timings taken under load or with a wide spread, not comparable with a "
            f"quiet run: {'; '.join(parts)}. Limits: p90/p10 > {SPREAD_LIMIT:g}, load > cores "
            f"+ {LOAD_MARGIN:g}, waiting for a core > {WAIT_LIMIT:.0%}, steal > "
            f"{STEAL_LIMIT_PCT:g}%")
    if width is None:
        return note
    import textwrap

    return "\n".join(textwrap.wrap(note, width=width, break_on_hyphens=False))


# ------------------------------------------------------------------------------------------
# Integer columns
# ------------------------------------------------------------------------------------------
def integer_columns(df, rows: Sequence[dict]):
    """df with every column whose values in ``rows`` are all Python ints (bools excepted;
    missing allowed) as pandas' nullable Int64, so a CSV says ``steps`` 10, not 10.0, when
    another row (the "real data" one) has no value there."""
    for column in df.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) \
                and str(df[column].dtype) != "Int64":
            df[column] = df[column].astype("Int64")
    return df


def parse_columns(value: Optional[str]) -> Optional[list[str]]:
    """'combo,img_per_s, fid_digits' -> ['combo', 'img_per_s', 'fid_digits']; None stays None.
    For ``--columns`` options (argparse ``type=``)."""
    if value is None:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        import argparse

        raise argparse.ArgumentTypeError("needs at least one column name")
    return names


def check_columns(requested: Sequence[str], available: Iterable[str]) -> None:
    """UserError (one line, exit 2) naming requested columns the table does not have."""
    from ganbench.errors import UserError

    available = list(available)
    unknown = [c for c in requested if c not in available]
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, available, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise UserError(f"--columns: no column {', '.join(hints)}; this table has: "
                        + ", ".join(available))
