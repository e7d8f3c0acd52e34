"""`ganbench report RUN_DIR`: reprint a run's table."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "reprint the results table of a run folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder (results/runs/...)")
    p.add_argument("--all-columns", action="store_true", help="print every column")


def run(args: argparse.Namespace) -> int:
    from ganbench.results import read_table, summary_markdown

    df = read_table(args.run_dir)
    print(summary_markdown(df, list(df.columns) if args.all_columns else None))
    return 0
