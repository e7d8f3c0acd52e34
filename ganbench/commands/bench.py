"""`ganbench bench attention`: time every available attention kernel at SAGAN's shapes."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from datetime import datetime
from pathlib import Path

from ganbench.results.table import parse_columns

NAME = "bench"
HELP = "micro-benchmark a component on its own (attention kernels)"

# Rows time at least --repeats calls and --min-time seconds each (see ganbench/bench/timing.py
# for why 20 calls and 0.5 s). CPU defaults keep the batch small so the default run (3 kernels
# x 4 sites x 2 passes) answers in about a minute on 2 cores; CUDA's are the textbook's batch.
CPU_DEFAULTS = dict(batch=8, repeats=20, min_time=0.5, warmup=2, dtype="fp32",
                    shapes="textbook")
CUDA_DEFAULTS = dict(batch=64, repeats=30, min_time=0.5, warmup=5, dtype="bf16", shapes="all")
QUICK = dict(batch=2, repeats=3, min_time=0.0, warmup=1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["attention"], help="what to benchmark")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"],
                   help="input dtype (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--batch", type=int, help="batch size (default: 64 on CUDA, 8 on CPU)")
    p.add_argument("--shapes", choices=["textbook", "scaled", "all"],
                   help="textbook: SAGAN's 4 sites on 64x64 digits; scaled: N=4096 (128x128 "
                        "images); all: both (default: all on CUDA, textbook on CPU)")
    p.add_argument("--kernels", metavar="NAMES",
                   help="comma-separated attention plugins (default: every available one)")
    p.add_argument("--option", action="append", default=[], metavar="KERNEL.KEY=VALUE",
                   help="factory option for one of --kernels, e.g. compile-attn.mode="
                        "max-autotune (repeatable; VALUE is JSON where it parses, else text)")
    p.add_argument("--variant", action="append", default=[],
                   metavar="KERNEL:KEY=VALUE[,KEY=VALUE...]",
                   help="extra rows for KERNEL built with these options, labelled as written, "
                        "e.g. triton-attn:backward=atomic (repeatable)")
    p.add_argument("--repeats", type=int,
                   help="at least this many timed calls per row (default: 30 CUDA, 20 CPU)")
    p.add_argument("--min-time", type=float, metavar="SECONDS",
                   help="and at least this many seconds of timed calls per row (default 0.5); "
                        "a row stops at 5000 calls or 10 s unless these ask for more")
    p.add_argument("--warmup", type=int, help="untimed calls first (default: 5 CUDA, 2 CPU)")
    p.add_argument("--out", type=Path, help="output folder (default "
                                            "results/runs/<time>-bench-attention)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON (the attention-bench.json format that "
                        "`ganbench compare` reads) instead of the table; progress stays on "
                        "stderr")
    p.add_argument("--columns", type=parse_columns, metavar="NAMES",
                   help="comma-separated columns of the printed table (default: the summary "
                        "columns that have values, fitted to the terminal)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: batch {QUICK['batch']}, {QUICK['repeats']} repeats, "
                        "no minimum time")


def run(args: argparse.Namespace) -> int:
    from ganbench.bench.output import COLUMN_CHOICES, check_out_dir
    from ganbench.bench.progress import BenchProgress
    from ganbench.errors import ConfigError

    # Checks that need no torch first: a mistake costs no torch import and prints one line.
    if args.columns:
        unknown = [c for c in args.columns if c not in COLUMN_CHOICES]
        if unknown:
            raise ConfigError(f"--columns: no column {', '.join(unknown)}; choose from "
                              + ", ".join(COLUMN_CHOICES))
    for flag, value, least in (("--batch", args.batch, 1), ("--repeats", args.repeats, 1),
                               ("--warmup", args.warmup, 0), ("--min-time", args.min_time, 0)):
        if value is not None and not (least <= value < math.inf):  # NaN fails this too
            raise ConfigError(f"{flag} must be a finite number >= {least}, got {value:g}")
    out = args.out or Path("results/runs") / (datetime.now().strftime("%Y%m%d-%H%M%S")
                                             + "-bench-attention")
    check_out_dir(out)  # before any timing: nothing is overwritten
    # Progress goes to stderr from here on (a heartbeat line if loading torch and the plugins
    # takes long); stdout is the table, or the JSON with --json.
    with BenchProgress() as progress:
        progress.doing("loading torch and the attention kernels")
        return _bench(args, out, progress)


def _bench(args: argparse.Namespace, out: Path, progress) -> int:
    from ganbench.bench.output import to_json, to_text, write_outputs
    from ganbench.bench.plan import parse_variant, plan_kernels
    from ganbench.bench.attention import run_benchmark
    from ganbench.bench.shapes import SHAPE_SETS
    from ganbench.bench.timing import MAX_CALLS, MAX_SECONDS, TimingPolicy
    from ganbench.config import parse_options, resolve_device
    from ganbench.files.atomic import WriteError
    from ganbench.results.store import ResultsWriteError

    device = resolve_device(args.device)
    settings = dict(CUDA_DEFAULTS if device.startswith("cuda") else CPU_DEFAULTS)
    if args.quick:
        settings.update(QUICK)
    for key in ("batch", "repeats", "min_time", "warmup", "dtype", "shapes"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    # The caps never undercut what was asked for explicitly.
    policy = TimingPolicy(warmup=settings["warmup"], min_calls=settings["repeats"],
                          min_seconds=settings["min_time"],
                          max_calls=max(MAX_CALLS, settings["repeats"]),
                          max_seconds=max(MAX_SECONDS, settings["min_time"]))
    names = None
    if args.kernels:
        names = [k.strip() for k in args.kernels.split(",") if k.strip()]
    # Every option and variant is checked here and every factory called in run_benchmark
    # before the first timing: a typo costs seconds, not a finished table.
    kernels = plan_kernels(names, parse_options(args.option),
                           [parse_variant(text) for text in args.variant])

    df, skipped = run_benchmark(device, settings["dtype"], settings["batch"],
                                SHAPE_SETS[settings["shapes"]], kernels=kernels, policy=policy,
                                progress=progress)
    progress.close()  # the bar (on a terminal) must be gone before the table is printed
    if df.empty:
        print("no attention kernel can run on this device:", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    command = "ganbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = f"command: `{command}`"
    if skipped:
        header += "\n\nskipped: " + "; ".join(f"{n} ({r})" for n, r in skipped)
    recorded = dict(settings, device=device, command=command, max_calls=policy.max_calls,
                    max_time=policy.max_seconds,
                    skipped=[{"kernel": n, "reason": r} for n, r in skipped])
    # Printed before the files are written: a disk that refuses them loses no result.
    if args.json:
        print(to_json(df, recorded), end="", flush=True)
    else:
        from ganbench.results.table import terminal_width

        print(to_text(df, args.columns, width=terminal_width()), flush=True)
    try:
        paths = write_outputs(df, out, header, recorded)
    except WriteError as exc:
        raise ResultsWriteError(f"{exc}; nothing in {out} was replaced, and the "
                                f"{'JSON' if args.json else 'table'} printed above is the "
                                f"complete result") from exc
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0 if (df["status"] == "ok").all() else 1
