"""`ganbench report RUN_DIR`: reprint a run's table; optionally write an HTML page or
github-action-benchmark JSON beside it (see ganbench.html_report)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "reprint the results table of a run folder (--html: a page with charts and images)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder (results/runs/...)")
    p.add_argument("--all-columns", action="store_true", help="print every column")
    p.add_argument("--html", nargs="?", const="", metavar="PATH",
                   help="also write one self-contained HTML page (default RUN_DIR/report.html)")
    p.add_argument("--format", choices=("table", "gab-json"), default="table",
                   help="gab-json: also write github-action-benchmark files gab-bigger.json "
                        "(customBiggerIsBetter) and gab-smaller.json (customSmallerIsBetter)")
    p.add_argument("--gab-dir", type=Path, metavar="DIR",
                   help="where --format gab-json writes (default RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    from ganbench.results import read_table, summary_markdown

    df = read_table(args.run_dir)
    print(summary_markdown(df, list(df.columns) if args.all_columns else None))
    if args.html is not None:
        from ganbench.html_report import write_html

        print(f"wrote {write_html(args.run_dir, Path(args.html) if args.html else None)}")
    if args.format == "gab-json":
        from ganbench.html_report import write_gab_json

        for path in write_gab_json(args.run_dir, args.gab_dir):
            print(f"wrote {path}")
    return 0
