"""`ganbench run --plugins NAMES`: train and measure every combination the names make."""

from __future__ import annotations

import argparse

from ganbench.options import RESUME_OVERRIDES, RUN_OPTIONS, add_options, columns, run_config

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
    """The options of ganbench.options.RUN_OPTIONS (one table: help, config, docs)."""
    add_options(p, RUN_OPTIONS)


def config_from_args(args: argparse.Namespace):
    """The RunConfig of the parsed command line (ganbench.options.run_config)."""
    return run_config(vars(args))


def run(args: argparse.Namespace) -> int:
    from ganbench.errors import ConfigError
    from ganbench.sweep.resume import RunInterrupted
    from ganbench.sweep.runner import run as run_all

    if args.resume is not None:
        return _resume(args)
    if args.retry_failed:
        raise ConfigError("--retry-failed goes with --resume RUN_DIR (it retrains the crashed, "
                          "oom and failed rows of that run)")
    cfg = config_from_args(args)  # validates before torch is imported
    if args.nproc is not None:  # becomes torchrun; each rank parses the same options again
        from ganbench.scaleout.pool import exec_torchrun, options_argv

        exec_torchrun(args.nproc, options_argv(args, add_arguments), cfg)
    try:
        run_dir, df = run_all(cfg, echo=print, force=args.force)
    except RunInterrupted as exc:
        return _interrupted(exc, cfg.world_size)
    return _finish(df)


def _finish(df) -> int:
    """Exit code 0 when every row is ok, 1 when any combination failed, diverged or crashed."""
    bad = df is not None and "status" in df and (~df["status"].isin(["ok", "reference"])).any()
    return 1 if bad else 0


def _resume(args: argparse.Namespace) -> int:
    """`run --resume RUN_DIR`: the saved settings, plus only the RESUME_OVERRIDES given."""
    import dataclasses

    from ganbench.errors import ConfigError
    from ganbench.sweep.resume import RunInterrupted, check_world_size, load_run_config
    from ganbench.sweep.runner import run as run_all
    from ganbench.scaleout.pool import launched_by_torchrun

    defaults = argparse.ArgumentParser(add_help=False)
    add_arguments(defaults)
    for action in defaults._actions:  # argparse has no public list of a parser's options
        if action.dest in ("resume", "help", *RESUME_OVERRIDES) or not action.option_strings:
            continue
        if getattr(args, action.dest, action.default) != action.default:
            flag = max(action.option_strings, key=len)
            raise ConfigError(f"--resume takes its settings from {args.resume}/config.json; "
                              f"drop {flag} (only --quiet, --in-process, --jobs, --nproc, "
                              "--retry-failed and --columns may be given)")
    cfg = load_run_config(args.resume)
    cfg = dataclasses.replace(cfg, quiet=args.quiet,  # how to run, not what: not inherited
                              isolate=cfg.isolate and not args.in_process,
                              jobs=args.jobs if args.jobs != 1 else cfg.jobs,
                              columns=columns(args.columns) or cfg.columns)
    if not launched_by_torchrun():  # under torchrun the ranks check it (ganbench.sweep.resume.start)
        check_world_size(args.resume, cfg.world_size, args.nproc or 1)
    if args.nproc is not None and args.nproc > 1:
        from ganbench.scaleout.pool import exec_torchrun, options_argv

        exec_torchrun(args.nproc, options_argv(args, add_arguments),
                      dataclasses.replace(cfg, jobs=1))
    try:
        run_dir, df = run_all(cfg, echo=print, resume=True, retry_failed=args.retry_failed)
    except RunInterrupted as exc:
        return _interrupted(exc, cfg.world_size)
    return _finish(df)


def _interrupted(exc, world_size: int = 1) -> int:
    """One line on stderr saying what is kept and how to go on; exit 130 (Ctrl-C) or 143."""
    import os
    import sys

    from ganbench.sweep.run_folder import resume_command

    world_size = int(os.environ.get("WORLD_SIZE", world_size))  # set on torchrun's ranks
    where = exc.run_dir
    print(f"ganbench: interrupted by {exc.args[0]}; finished rows are in {where}; continue with: "
          f"{resume_command(where, world_size)}", file=sys.stderr)
    return exc.exit_code
