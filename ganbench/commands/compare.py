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
    from ganbench.api.compare import comparison
    from ganbench.results.table import terminal_width

    result = comparison(args.old, args.new, args.fail_on, args.metrics)  # ganbench.api's
    width = terminal_width() if args.format == "markdown" else None
    _emit(result.to_text(args.format, width))
    if args.format == "markdown":  # csv/json stay machine-readable: the count goes to stderr
        _emit(result.summary_line)
    else:
        print(result.summary_line, file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    bad = result.regressions
    if len(bad):
        names = ", ".join(sorted({f"{k}:{m}" for k, m in zip(bad["key"], bad["metric"])}))
        print(f"ganbench compare: {len(bad)} regression(s): {names}", file=sys.stderr)
        return 1
    return 0
