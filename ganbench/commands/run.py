"""`ganbench run --plugins NAMES`: train and measure every combination the names make."""

from __future__ import annotations

import argparse
import dataclasses
import re

from ganbench.options import RUN_OPTIONS, add_options

NAME = "run"
HELP = "train and benchmark every combination of the named plugins"
SYNOPSIS = "--plugins NAMES"
DESCRIPTION = (
    "Train and benchmark every combination the named architectures, losses and attention "
    "kernels make: images/s, step-time median and p10-p90 spread, peak memory, sample quality "
    "(digit-classifier FID, IS, precision/recall, density/coverage, mode coverage), sample "
    "grids and attention maps, written to a run folder after every row (results.csv/.json/.md). "
    "An interrupted run continues with --resume; --nproc N trains data-parallel under torchrun, "
    "--jobs K trains K combinations side by side.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # A value like "-3s" (a negative --budget) must reach parse_budget, which names the mistake
    # in one line; argparse takes anything starting with "-" that is not a plain negative
    # number for an option and stops with its usage text instead. This parser has no option
    # that looks like a number with a unit, so such words are safe to read as values.
    if hasattr(p, "_negative_number_matcher"):  # argparse has no public switch for this
        p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d*\.?\d+[a-z]+$")
    add_options(p, RUN_OPTIONS)  # ganbench.options: one table for help, config and docs


def given_options(args: argparse.Namespace) -> dict:
    """The options the user gave (those differing from their defaults), by name, in the
    parser's order: what a resume may take from the command line."""
    defaults = argparse.ArgumentParser(add_help=False)
    add_arguments(defaults)
    return {action.dest: getattr(args, action.dest) for action in defaults._actions
            if action.option_strings and action.dest not in ("help", "resume")
            and getattr(args, action.dest, action.default) != action.default}


def run(args: argparse.Namespace) -> int:
    """Through ganbench.api, the path ``ganbench.run()`` takes: the options -> a RunConfig
    (ganbench.api.options, before torch is imported), then ganbench.api.runs.execute. The CLI
    adds the exit codes and, for --nproc, the exec of torchrun."""
    from ganbench.api.options import run_config
    from ganbench.api.runs import execute
    from ganbench.scaleout.pool import launched_by_torchrun
    from ganbench.sweep.resume import RunInterrupted, check_world_size

    resume = args.resume is not None
    options = given_options(args) if resume else {
        k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    cfg = run_config(options, args.resume)  # validates before torch is imported
    if resume and not launched_by_torchrun():  # under torchrun the ranks check it
        check_world_size(args.resume, cfg.world_size, args.nproc or 1)
    if (args.nproc or 1) > 1 and cfg.compile == "step":
        from ganbench.errors import UserError

        raise UserError("--compile step compiles one process's whole iteration; it is not "
                        "combined with --nproc (use --compile models)")
    if args.nproc is not None and (not resume or args.nproc > 1):
        from ganbench.scaleout.pool import exec_torchrun, options_argv  # each rank parses again

        exec_torchrun(args.nproc, options_argv(args, add_arguments),
                      dataclasses.replace(cfg, jobs=1) if resume else cfg)
    try:
        _, df = execute(cfg, resume=resume, retry_failed=args.retry_failed, force=args.force,
                        echo=print)
    except RunInterrupted as exc:
        return _interrupted(exc, cfg.world_size)
    return _finish(df)


def _finish(df) -> int:
    """Exit code 0 when every row is ok, 1 when any combination failed, diverged or crashed."""
    bad = df is not None and "status" in df and (~df["status"].isin(["ok", "reference"])).any()
    return 1 if bad else 0


def _interrupted(exc, world_size: int = 1) -> int:
    """One line on stderr saying what is kept and how to go on; exit 130 (Ctrl-C) or 143."""
    import os
    import sys

    from ganbench.sweep.run_folder import resume_command

    from ganbench.sweep.run_folder import previous_run

    world_size = int(os.environ.get("WORLD_SIZE", world_size))  # set on torchrun's ranks
    where = exc.run_dir
    rows = [r for r in previous_run(where).rows if r.get("status") != "reference"]
    kept = f"finished rows are in {where}" if rows else f"no row finished yet in {where}"
    print(f"ganbench: interrupted by {exc.args[0]}; {kept}; continue with: "
          f"{resume_command(where, world_size)}", file=sys.stderr)
    return exc.exit_code
