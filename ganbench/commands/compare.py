"""`ganbench compare OLD NEW`: per-row deltas between two runs, two bench-attention tables or
two benchmark files.

Exit status: 0 when nothing regressed past a --fail-on threshold, 1 when something did (or a
combination that trained in OLD no longer trains in NEW) - also when stdout is a closed pipe
(``ganbench compare ... --fail-on ... | head``): the verdict is the exit status, not the
text - and 2 on unreadable or mismatched input, a malformed --fail-on, or a check that cannot
be made (a --fail-on quality metric computed at different image sizes or n; --metrics naming
only such metrics). Absolute times from two runs on a shared machine are noisy: where both
runs have several seeds the seed distributions are tested, where both tables carry a spread a
change inside it is "within noise", and a change under 1% is always within noise (see
ganbench.results.compare). After the table, one line counts the verdicts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganbench.results.table import parse_columns

NAME = "compare"
HELP = ("compare two run tables, two bench-attention tables or two pytest-benchmark JSON "
        "files and flag regressions")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", type=Path, help="baseline: run folder, results.json/.csv, "
                                          "attention-bench.json/.csv, or a pytest-benchmark JSON")
    p.add_argument("new", type=Path, help="candidate, of the same kind as OLD")
    p.add_argument("--fail-on", metavar="RULES",
                   help="comma-separated METRIC:+N%% / METRIC:-N%%: exit 1 when METRIC moves "
                        "the bad way by more than N%% and beyond the noise (seeds, spreads, "
                        "1%%), e.g. 'img_per_s:-10%%,fid_digits:+15%%'; for a closer-to-real "
                        "metric (precision, density, IS) N bounds the growth of its distance "
                        "to the real-data row, either sign")
    p.add_argument("--metrics", metavar="NAMES", type=parse_columns,
                   help="compare only these comma-separated columns (default: every column "
                        "whose better direction is known)")
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                   help="output format (default markdown, fitted to the terminal; csv and "
                        "json carry every column at full precision)")


def _emit(text: str) -> None:
    """Print; a reader that closed the pipe early does not change the exit status."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    from ganbench.errors import UserError
    from ganbench.results.compare import (compare, parse_fail_on, read_side, refused_metrics,
                                          regressions, setting_notes, summary_line)
    from ganbench.results.compare_render import render
    from ganbench.results.table import terminal_width

    thresholds = parse_fail_on(args.fail_on)  # before reading: a typo fails fast
    metrics = args.metrics
    old, new = read_side(args.old), read_side(args.new)
    table = compare(old, new, thresholds, metrics)
    refused = refused_metrics(table)
    gated = sorted(m for m in refused if m in thresholds)
    if gated:  # a gate that cannot look must not pass
        m = gated[0]
        if refused[m][0].startswith("no real-data row"):
            raise UserError(f"--fail-on {m}: cannot check it, it is judged by its distance to "
                            f"the real-data row and there is {refused[m][0]}; run with "
                            "metrics on both sides, or drop it from --fail-on")
        raise UserError(f"--fail-on {m}: cannot check it, the quality numbers were computed "
                        f"differently ({refused[m][0]}); compare runs scored at one image size "
                        "and --eval-n, or drop it from --fail-on")
    if metrics and all(m in refused for m in metrics):
        raise UserError(f"nothing to compare: {', '.join(metrics)} cannot be compared "
                        f"({next(iter(refused.values()))[0]}); quality numbers are only "
                        "comparable at one metric image size and --eval-n, with a real-data row")
    label = {"benchmark": "benchmark", "bench-attention": "bench row"}.get(old.kind, "combo")
    width = terminal_width() if args.format == "markdown" else None
    _emit(render(table, args.format, label, width=width))
    if args.format == "markdown":  # csv/json stay machine-readable: the count goes to stderr
        _emit(summary_line(table))
    else:
        print(summary_line(table), file=sys.stderr)
    for metric, reasons in refused.items():
        why = ("a closer-to-real metric needs the real-data row on both sides"
               if all(r.startswith("no real-data row") for r in reasons) else
               "quality numbers are only comparable at one metric image size and n")
        print(f"note: {metric} not compared: {'; '.join(reasons)} ({why})", file=sys.stderr)
    for note in setting_notes(old, new):
        print(f"note: {note}", file=sys.stderr)
    bad = regressions(table)
    if len(bad):
        names = ", ".join(sorted({f"{k}:{m}" for k, m in zip(bad["key"], bad["metric"])}))
        print(f"ganbench compare: {len(bad)} regression(s): {names}", file=sys.stderr)
        return 1
    return 0
