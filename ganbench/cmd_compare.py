"""`ganbench compare OLD NEW`: per-combination deltas between two runs or two benchmark files.

Exit status: 0 when nothing regressed past a --fail-on threshold, 1 when something did (or a
combination that trained in OLD no longer trains in NEW), 2 on unreadable or mismatched input
or a malformed --fail-on. Without --fail-on the command only reports (absolute times from two
runs on a shared machine are noisy: see tests/benchmarks/ratios.py for the CI timing check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "compare"
HELP = "compare two run tables or two pytest-benchmark JSON files and flag regressions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", type=Path, help="baseline: run folder, results.json/.csv, or a "
                                          "pytest-benchmark JSON")
    p.add_argument("new", type=Path, help="candidate, of the same kind as OLD")
    p.add_argument("--fail-on", metavar="RULES",
                   help="comma-separated METRIC:+N%% / METRIC:-N%%: exit 1 when METRIC moves "
                        "the bad way by more than N%%, e.g. 'img_per_s:-10%%,fid_digits:+15%%'")
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                   help="output format (default markdown)")


def run(args: argparse.Namespace) -> int:
    from ganbench.compare import (compare, parse_fail_on, read_side, regressions, render,
                                  setting_notes)

    thresholds = parse_fail_on(args.fail_on)  # before reading: a typo fails fast
    old, new = read_side(args.old), read_side(args.new)
    table = compare(old, new, thresholds)
    print(render(table, args.format, "benchmark" if old.kind == "benchmark" else "combo"))
    for note in setting_notes(old, new):
        print(f"note: {note}", file=sys.stderr)
    bad = regressions(table)
    if len(bad):
        names = ", ".join(sorted({f"{k}:{m}" for k, m in zip(bad["key"], bad["metric"])}))
        print(f"ganbench compare: {len(bad)} regression(s): {names}", file=sys.stderr)
        return 1
    return 0
