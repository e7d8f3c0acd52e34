"""`ganbench report RUN_DIR`: reprint a run's table (fitted to the terminal, or chosen columns,
or every column, or JSON); optionally write an HTML page or github-action-benchmark JSON beside
it (see ganbench.results.html). A bench-attention folder or JSON prints the kernels' table.
A run with several seeds per combination prints one row per combination (median [interval]
over seeds) and the verdicts under it; --reference picks what they judge against."""

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
    Option("--reference", "with several seeds: judge every combination against COMBO in the "
           "verdicts", metavar="COMBO", default_text="the run's --reference, else every pair"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def _check_reference(reference: str, df) -> None:
    """--reference names a trained combination of the table (UserError, exit 2, if not)."""
    import difflib

    from ganbench.errors import UserError
    from ganbench.results.columns import REFERENCE_STATUS

    if "combo" not in df:
        raise UserError("--reference needs a run table (with a combo column)")
    rows = df[df["status"] != REFERENCE_STATUS] if "status" in df else df
    names = list(dict.fromkeys(str(c) for c in rows["combo"]))
    if reference not in names:
        close = difflib.get_close_matches(reference, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"--reference {reference}: not a combination of this run{hint}; it "
                        f"has: {', '.join(names)}")


def check_numbers(df, where) -> None:
    """UserError (one line) naming the first cell of a numeric column (one the column registry
    formats as a number) that does not read as a number: a hand-edited table would otherwise
    print ``abc`` as a throughput."""
    from ganbench.errors import UserError
    from ganbench.results.columns import column as lookup
    from ganbench.results.table import missing

    for name in df.columns:
        info = lookup(name)
        if not info.declared or info.format in ("text", "as-is", "general"):
            continue  # undeclared or free-form: text is allowed there
        for i, value in enumerate(df[name]):
            if missing(value) or (isinstance(value, (int, float)) and
                                  not isinstance(value, bool)):
                continue
            try:
                float(value)
            except (TypeError, ValueError):
                row = df["combo"].iloc[i] if "combo" in df else f"row {i + 1}"
                raise UserError(f"{where}: {name} of {row} is {value!r}, not a number; was "
                                "the table edited by hand? Fix or remove that value") from None


def _planned(run_dir: Path):
    """How many rows the run in ``run_dir`` planned (its config.json's plugins, each under
    each of its seeds), or None when that cannot be told (no config, plugins no longer
    installed, a budget run: it may stop early by design)."""
    try:
        from ganbench.registry import get_registry
        from ganbench.sweep.matrix import build_matrix

        config = json.loads((Path(run_dir) / "config.json").read_text())
        registry = get_registry()
        combos, _ = build_matrix(tuple(config["plugins"]), registry)
        if config.get("baseline"):
            from ganbench.training.textbook import baseline_combos

            combos = baseline_combos(combos, registry) + combos
        return len(combos) * max(1, len(config.get("seeds") or ()))
    except Exception:  # a note, never a reason for report to fail
        return None


def run(args: argparse.Namespace) -> int:
    from ganbench.results.sides import is_bench_table
    from ganbench.results.store import display_columns, summary_markdown, with_display_columns
    from ganbench.api.runs import read_results
    from ganbench.errors import UserError
    from ganbench.results.table import check_columns, render, terminal_width
    from ganbench.sweep.run_folder import unfinished_note

    df = read_results(args.run_dir)  # what ganbench.load(RUN_DIR).table reads
    check_numbers(df, args.run_dir)
    bench = is_bench_table(df)
    if bench and (args.html is not None or args.format == "gab-json"):
        raise UserError("--html and --format gab-json need a run folder, not a "
                        "bench-attention table")
    if args.reference is not None:
        _check_reference(args.reference, df)
        df.attrs["reference"] = args.reference
    elif Path(args.run_dir).is_dir():
        from ganbench.results.store import configured_reference

        df.attrs["reference"] = configured_reference(args.run_dir)
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
    if not bench and Path(args.run_dir).is_dir():  # on stderr: stdout stays the table
        note = unfinished_note(args.run_dir, _planned(args.run_dir))
        if note:
            print(f"note: {note}", file=sys.stderr)
    if args.html is not None:
        from ganbench.results.html import write_html

        path = write_html(args.run_dir, Path(args.html) if args.html else None,
                          args.reference)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.format == "gab-json":
        from ganbench.results.html import write_gab_json

        for path in write_gab_json(args.run_dir, args.gab_dir):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
