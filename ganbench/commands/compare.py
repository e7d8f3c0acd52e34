"""`ganbench compare OLD NEW`: per-row deltas between two runs, two bench-attention tables or
two benchmark files.

Exit status: 0 when nothing regressed past a --fail-on threshold, 1 when something did (or a
combination that trained in OLD no longer trains in NEW) - also when stdout is a closed pipe
(``ganbench compare ... --fail-on ... | head``): the verdict is the exit status, not the
text - and 2 on unreadable or mismatched input, a malformed --fail-on, or a check that cannot
be made (a --fail-on quality metric computed at different image sizes or n; --metrics naming
only such metrics). Absolute times from two runs on a shared machine are noisy: where both
tables carry a spread, a change inside it is "within noise" (see ganbench.results.compare).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganbench.options import Option, add_options
from ganbench.results.table import parse_columns

NAME = "compare"
HELP = ("compare two run tables, two bench-attention tables or two pytest-benchmark JSON "
        "files and flag regressions")
SYNOPSIS = "OLD NEW"
DESCRIPTION = (
    "Deltas (signed %) per row and metric between two run tables, two bench-attention tables "
    "(rows: kernel, shape, pass) or two pytest-benchmark JSON files, knowing which direction is "
    "better (plugin metrics declare theirs); the p10-p90 spread and count where known, and "
    "\"within noise\" when each median lies inside the other's range. Quality metrics are not "
    "compared across image sizes or sample counts. --fail-on exits 1 on a regression, also when "
    "piped into `head`.")


OPTIONS = (
    Option("old", "baseline: run folder, results.json/.csv, attention-bench.json/.csv, or a "
           "pytest-benchmark JSON", type=Path),
    Option("new", "candidate, of the same kind as OLD", type=Path),
    Option("--fail-on", "comma-separated METRIC:+N% / METRIC:-N%: exit 1 when METRIC moves the "
           "bad way by more than N% (and beyond the noise where spreads are known), e.g. "
           "'img_per_s:-10%,fid_digits:+15%'", metavar="RULES"),
    Option("--metrics", "compare only these comma-separated columns", metavar="NAMES",
           type=parse_columns, default_text="every column whose better direction is known"),
    Option("--format", "output format: markdown is fitted to the terminal; csv and json carry "
           "every column at full precision", choices=("markdown", "csv", "json"),
           default="markdown"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def _emit(text: str) -> None:
    """Print; a reader that closed the pipe early does not change the exit status."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    from ganbench.results.compare import (compare, parse_fail_on, read_side,
                                  refused_metrics, regressions, render, setting_notes)
    from ganbench.errors import UserError
    from ganbench.results.table import terminal_width

    thresholds = parse_fail_on(args.fail_on)  # before reading: a typo fails fast
    metrics = args.metrics
    old, new = read_side(args.old), read_side(args.new)
    table = compare(old, new, thresholds, metrics)
    refused = refused_metrics(table)
    gated = sorted(m for m in refused if m in thresholds)
    if gated:  # a gate that cannot look must not pass
        m = gated[0]
        raise UserError(f"--fail-on {m}: cannot check it, the quality numbers were computed "
                        f"differently ({refused[m][0]}); compare runs made at one image size "
                        "and --eval-n, or drop it from --fail-on")
    if metrics and all(m in refused for m in metrics):
        raise UserError(f"nothing to compare: {', '.join(metrics)} were computed differently "
                        f"({next(iter(refused.values()))[0]}); quality numbers are only "
                        "comparable at one image size and --eval-n")
    label = {"benchmark": "benchmark", "bench-attention": "bench row"}.get(old.kind, "combo")
    width = terminal_width() if args.format == "markdown" else None
    _emit(render(table, args.format, label, width=width))
    for metric, reasons in refused.items():
        print(f"note: {metric} not compared: {'; '.join(reasons)} (quality numbers are "
              "only comparable at one image size and n)", file=sys.stderr)
    for note in setting_notes(old, new):
        print(f"note: {note}", file=sys.stderr)
    bad = regressions(table)
    if len(bad):
        names = ", ".join(sorted({f"{k}:{m}" for k, m in zip(bad["key"], bad["metric"])}))
        print(f"ganbench compare: {len(bad)} regression(s): {names}", file=sys.stderr)
        return 1
    return 0
