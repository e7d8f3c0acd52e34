"""`ganbench report RUN_DIR`: reprint a run's table (fitted to the terminal, or chosen columns,
or every column, or JSON); optionally write an HTML page or github-action-benchmark JSON beside
it (see ganbench.results.html). A bench-attention folder or JSON prints the kernels' table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ganbench.options import Option, add_options
from ganbench.results.table import parse_columns

NAME = "report"
HELP = "reprint the results table of a run folder (--html: a page with charts and images)"
SYNOPSIS = "RUN_DIR"
DESCRIPTION = (
    "Reprint a run's table, fitted to the terminal (units in the headers, blanks for missing "
    "values); --columns to choose, --all-columns (cut into tables that fit), --json for "
    "scripts; also reads a bench-attention folder. --html writes one self-contained page: "
    "table, images/s and memory charts, quality curves, sample grids, attention maps.")


OPTIONS = (
    Option("run_dir", "a run folder (results/runs/...), its results.json/.csv, or a "
           "bench-attention one", type=Path),
    Option("--all-columns", "print every column (cut into several tables that fit the "
           "terminal, each starting with the row's name)", action="store_true", exclusive="shown"),
    Option("--columns", "comma-separated columns to print, in this order (e.g. "
           "combo,img_per_s,fid_digits; step_ms is the median with p10-p90)", type=parse_columns,
           metavar="NAMES", exclusive="shown"),
    Option("--json", "print the rows as JSON ({\"rows\": [...]}, missing values null) for "
           "scripts, instead of the table", action="store_true", exclusive="shown"),
    Option("--html", "also write one self-contained HTML page", nargs="?", const="",
           metavar="PATH", default_text="RUN_DIR/report.html when given without PATH"),
    Option("--format", "gab-json: also write github-action-benchmark files gab-bigger.json "
           "(customBiggerIsBetter) and gab-smaller.json (customSmallerIsBetter)",
           choices=("table", "gab-json"), default="table"),
    Option("--gab-dir", "where --format gab-json writes", type=Path, metavar="DIR",
           default_text="RUN_DIR"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def _read(path: Path):
    """The table of a run or bench-attention folder/file (UserError if it is neither)."""
    from ganbench.results.store import read_table

    path = Path(path)
    if path.is_dir() and not any((path / n).exists() for n in ("results.json", "results.csv")):
        for name in ("attention-bench.json", "attention-bench.csv"):
            if (path / name).exists():
                return read_table(path / name)
    return read_table(path)


def run(args: argparse.Namespace) -> int:
    from ganbench.results.compare import is_bench_table
    from ganbench.results.store import display_columns, summary_markdown, with_display_columns
    from ganbench.results.table import check_columns, render, terminal_width

    from ganbench.errors import UserError

    df = _read(args.run_dir)
    bench = is_bench_table(df)
    if bench and (args.html is not None or args.format == "gab-json"):
        raise UserError("--html and --format gab-json need a run folder, not a "
                        "bench-attention table")
    if args.json:
        records = df.astype(object).where(df.notna(), None).to_dict("records")
        print(json.dumps({"rows": records}, indent=1, default=str))
    elif bench:
        from ganbench.bench.attention import to_text

        if args.columns:
            check_columns(args.columns, df.columns)
        print(to_text(df, columns=list(df.columns) if args.all_columns else args.columns,
                      width=terminal_width()))
    elif args.all_columns:
        print(render(with_display_columns(df), list(df.columns), width=terminal_width(),
                     keys=["combo"], split=True, style="simple"))
    else:
        if args.columns:
            check_columns(args.columns, display_columns(df))
        print(summary_markdown(df, args.columns, width=terminal_width()))
    if args.html is not None:
        from ganbench.results.html import write_html

        path = write_html(args.run_dir, Path(args.html) if args.html else None)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.format == "gab-json":
        from ganbench.results.html import write_gab_json

        for path in write_gab_json(args.run_dir, args.gab_dir):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
