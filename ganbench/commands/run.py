"""`ganbench run --plugins NAMES`: train and measure every combination the names make."""

from __future__ import annotations

import argparse
from pathlib import Path

# Kept in step with ganbench.config.DEFAULT_CHECKPOINT_EVERY (not imported: `ganbench --help`
# must not import torch, and config is cheap but this module imports only the standard library).
DEFAULT_CHECKPOINT_EVERY = 50
DEFAULT_STALL_TIMEOUT_S = 600  # ganbench.config.DEFAULT_STALL_TIMEOUT_S, likewise
# Options that say how to run rather than what to measure: the only ones --resume accepts.
RESUME_OVERRIDES = ("quiet", "in_process", "jobs", "nproc", "retry_failed", "columns",
                    "stall_timeout")

NAME = "run"
HELP = "train and benchmark every combination of the named plugins"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", metavar="NAMES",
                   help="comma-separated architectures, losses and attention kernels, "
                        "e.g. dcgan,sagan or sagan,triton-attn (see `ganbench plugins`); "
                        "required unless --resume")
    p.add_argument("--metrics", metavar="NAMES",
                   help="comma-separated metric plugins, or 'none' (default: all available)")
    p.add_argument("--data", default="embedded", metavar="SOURCE",
                   help="embedded (default, shipped MNIST subset), mnist:DIR (IDX files), "
                        "folder:DIR (images)")
    p.add_argument("--digits", default="7,8", help="digits to train on, or 'all' (default "
                                                  "7,8 as the textbook)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    p.add_argument("--steps", type=int, help="training iterations (default: 180 on CPU, "
                                             "1000 on CUDA)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="32, 64 or 128 (default: 32 on CPU, 64 on "
                                                  "CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto",
                   help="auto (default: bf16 autocast on CPUs with native bf16, fp32 on other "
                        "CPUs and on CUDA), fp32, or bf16 (autocast)")
    p.add_argument("--memory-format", default="channels_last",
                   choices=["channels_last", "contiguous"],
                   help="memory format of G's and D's weights and activations (default "
                        "channels_last)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default min(10, steps/5))")
    p.add_argument("--eval-n", type=int, default=None,
                   help="generated samples per metric evaluation (default 2000, or half the "
                        "held-out digits when fewer: 1001 for the embedded 7s and 8s; more is "
                        "an error)")
    p.add_argument("--eval-every", type=int, default=0, metavar="K",
                   help="also evaluate every K steps and write quality curves")
    p.add_argument("--target-fid", type=float, metavar="X",
                   help="record the wall time at which fid_digits first drops below X")
    p.add_argument("--baseline", choices=["textbook"],
                   help="also train each architecture with the textbook's own step (fp32, "
                        "eager, its default loss and kernel) and add speedup_vs_textbook to "
                        "every row")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture each training step once as a CUDA graph and replay it "
                        "(CUDA only; the row says if capture was impossible and why)")
    p.add_argument("--compile", action="store_true", help="torch.compile the whole G and D")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode for --compile")
    p.add_argument("--option", action="append", default=[], metavar="PLUGIN.KEY=VALUE",
                   help="an option for an attention kernel's factory, e.g. "
                        "compile-attn.mode=max-autotune (repeatable)")
    p.add_argument("--out", type=Path, help="run folder (default results/runs/<time>-<names>)")
    p.add_argument("--columns", metavar="NAMES",
                   help="comma-separated columns of the printed table (default: the ones that "
                        "matter, fitted to the terminal; results.csv always has every column)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress, notes or warnings on stderr and no table on stdout: only "
                        "the line 'results: RUN_DIR' (the table is in RUN_DIR/results.md); "
                        "errors are still shown")
    p.add_argument("--in-process", action="store_true",
                   help="train in this process instead of one fresh process per combination "
                        "(faster start; CPU peak memory is then not per combination)")
    faults = p.add_argument_group("interrupts and resume")
    faults.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY,
                        metavar="K",
                        help="save each combination's training state every K steps to "
                             "RUN_DIR/checkpoints/ so --resume can continue it (default "
                             f"{DEFAULT_CHECKPOINT_EVERY}; 0: never)")
    faults.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                        help="stop a combination's worker after this long without progress "
                             "(progress comes every 10 steps and at each phase); its row says "
                             f"'stalled at step K' (default: {DEFAULT_STALL_TIMEOUT_S}; 0: "
                             "never; not with --in-process)")
    faults.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run with the settings in its "
                             "config.json: finished combinations keep their rows, an "
                             "unfinished one continues from its last checkpoint (only "
                             f"{', '.join('--' + o.replace('_', '-') for o in RESUME_OVERRIDES)} "
                             "may be given with it; --nproc must be the run's)")
    faults.add_argument("--retry-failed", action="store_true",
                        help="with --resume: also retrain the combinations whose row says "
                             "crashed, oom or failed, from their last checkpoint")
    faults.add_argument("--force", action="store_true",
                        help="start afresh in an --out folder that holds another run: its "
                             "rows, checkpoints and artifacts are deleted first")
    scale = p.add_argument_group("scale-out (README: Scale-out)")
    scale.add_argument("--nproc", type=int, metavar="N",
                       help="data-parallel training on N ranks: execs `torchrun --standalone "
                            "--nproc-per-node N -m ganbench run` with the other options. "
                            "--batch-size stays the global batch (N ranks x batch/N each)")
    scale.add_argument("--sync-bn", action="store_true",
                       help="with N ranks: BatchNorm -> SyncBatchNorm (global-batch "
                            "statistics; CUDA only)")
    scale.add_argument("--scaling", action="store_true",
                       help="with N ranks: also time each combination on 1 rank (per-rank "
                            "batch) and fill scaling_efficiency")
    scale.add_argument("--jobs", type=int, default=1, metavar="K",
                       help="train K combinations at once, each in its own worker process "
                            "(timings then share the machine: see parallel_jobs)")


def _columns(value):
    from ganbench.errors import ConfigError

    names = tuple(p.strip() for p in (value or "").split(",") if p.strip())
    if value is not None and not names:
        raise ConfigError("--columns is empty; give comma-separated column names")
    return names or None


def config_from_args(args: argparse.Namespace):
    from ganbench.config import RunConfig, parse_digits, parse_names, parse_options
    from ganbench.errors import ConfigError

    if args.plugins is None:
        raise ConfigError("--plugins is required, e.g. --plugins dcgan,sagan (or continue a run "
                          "with --resume RUN_DIR)")
    metrics = None
    if args.metrics is not None:
        metrics = () if args.metrics.strip().lower() == "none" else parse_names(args.metrics,
                                                                                "--metrics")
    return RunConfig(plugins=parse_names(args.plugins, "--plugins"), metrics=metrics,
                     data=args.data, digits=parse_digits(args.digits), device=args.device,
                     steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                     seed=args.seed, dtype=args.dtype,
                     memory_format=args.memory_format, warmup=args.warmup, eval_n=args.eval_n,
                     eval_every=args.eval_every, target_fid=args.target_fid,
                     compile=args.compile, compile_mode=args.compile_mode,
                     baseline=args.baseline, cuda_graph=args.cuda_graph,
                     options=parse_options(args.option), out=args.out,
                     quiet=args.quiet, isolate=not args.in_process,
                     columns=_columns(args.columns),
                     checkpoint_every=args.checkpoint_every,
                     jobs=args.jobs, sync_bn=args.sync_bn, scaling=args.scaling,
                     **_stall(args))


def _stall(args: argparse.Namespace) -> dict:
    """{"stall_timeout": --stall-timeout} when given (a bad value fails in RunConfig)."""
    return {} if args.stall_timeout is None else {"stall_timeout": args.stall_timeout}


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
            allowed = ", ".join("--" + o.replace("_", "-") for o in RESUME_OVERRIDES)
            raise ConfigError(f"--resume takes its settings from {args.resume}/config.json; "
                              f"drop {flag} (only {allowed} may be given)")
    cfg = load_run_config(args.resume)
    cfg = dataclasses.replace(cfg, quiet=args.quiet,  # how to run, not what: not inherited
                              isolate=cfg.isolate and not args.in_process,
                              jobs=args.jobs if args.jobs != 1 else cfg.jobs,
                              columns=_columns(args.columns) or cfg.columns, **_stall(args))
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

    from ganbench.sweep.run_folder import previous_run

    world_size = int(os.environ.get("WORLD_SIZE", world_size))  # set on torchrun's ranks
    where = exc.run_dir
    rows = [r for r in previous_run(where).rows if r.get("status") != "reference"]
    kept = f"finished rows are in {where}" if rows else f"no row finished yet in {where}"
    print(f"ganbench: interrupted by {exc.args[0]}; {kept}; continue with: "
          f"{resume_command(where, world_size)}", file=sys.stderr)
    return exc.exit_code
