"""`ganbench run --plugins NAMES`: train and measure every combination the names make."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

# Both cheap (standard library only below them): `ganbench --help` must not import torch.
from ganbench.api.options import RESUME_OVERRIDES
from ganbench.config import DEFAULT_CHECKPOINT_EVERY, DEFAULT_STALL_TIMEOUT_S

NAME = "run"
HELP = "train and benchmark every combination of the named plugins"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # A value like "-3s" (a negative --budget) must reach parse_budget, which names the mistake
    # in one line; argparse takes anything starting with "-" that is not a plain negative
    # number for an option and stops with its usage text instead. This parser has no option
    # that looks like a number with a unit, so such words are safe to read as values.
    if hasattr(p, "_negative_number_matcher"):  # argparse has no public switch for this
        p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d*\.?\d+[a-z]+$")
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
    p.add_argument("--steps", type=int, help="training iterations (default: 600 on CPU, "
                                             "1000 on CUDA)")
    p.add_argument("--budget", metavar="TIME",
                   help="train every combination for the same wall time instead of the same "
                        "steps, e.g. 90s or 2m (training only: model building and the final "
                        "metrics are not counted, evaluations of --eval-every are); the row's "
                        "steps column says how far each got. Not with --steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="32, 64 or 128 (default: 32 on CPU, 64 on "
                                                  "CUDA)")
    p.add_argument("--seed", type=int, default=0,
                   help="the run's seed (default 0): it seeds training (initial weights, noise, "
                        "batch order) and the evaluation's samples")
    p.add_argument("--seeds", metavar="K|A,B,..",
                   help="train every combination under several seeds: K = the K seeds --seed, "
                        "--seed+1, ..., --seed+K-1; a list (0,3,7) = exactly those. One row per "
                        "(combination, seed); files get .seed<S> in their names (with one seed "
                        "the names stay as they are). The evaluation's samples stay --seed's, "
                        "so only training differs between seeds")
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
                   help="record, per seed, the wall time and step at which the run's target "
                        "metric (fid_digits: the first metric that declares a target column) "
                        "first passes X, checked at every --eval-every evaluation and at the "
                        "end; a row that never does says 'not reached'")
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
    p.add_argument("--reference", metavar="COMBO",
                   help="with several seeds: judge every combination against COMBO (e.g. "
                        "dcgan+bce) in the verdicts under the table, instead of every pair")
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
    faults.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT_S,
                        metavar="SECONDS",
                        help="stop a combination's worker after this long without progress "
                             "(progress comes every 10 steps and at each phase); its row says "
                             f"'stalled at step K' (default: {DEFAULT_STALL_TIMEOUT_S:g}; 0: "
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
