"""`ganbench bench attention`: time every available attention kernel at SAGAN's shapes."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path

from ganbench.options import Option, add_options
from ganbench.results.table import parse_columns

NAME = "bench"
HELP = "micro-benchmark a component on its own (attention kernels)"
SYNOPSIS = "attention"
DESCRIPTION = (
    "Time every attention kernel at SAGAN's shapes (and N=4096), forward and forward+backward: "
    "time per call and per CUDA-graph replay, TFLOP/s, GB/s, peak memory, % of roofline and its "
    "bound (matmul, memory or exp), error against the float64 reference (rows over the dtype's "
    "limit are marked inaccurate). --json prints the attention-bench.json that `ganbench "
    "compare` reads; progress goes to stderr.")

# CPU defaults are small so the run answers in about a minute on 2 cores (eager fwd+bwd at
# N=1024, B=8 takes ~0.1 s per call there); CUDA defaults are the textbook's batch of 64.
CPU_DEFAULTS = dict(batch=8, repeats=5, warmup=2, dtype="fp32", shapes="textbook")
CUDA_DEFAULTS = dict(batch=64, repeats=30, warmup=5, dtype="bf16", shapes="all")
QUICK = dict(batch=2, repeats=3, warmup=1)


def _per_device(key: str) -> str:
    return f"{CUDA_DEFAULTS[key]} on CUDA, {CPU_DEFAULTS[key]} on CPU"


OPTIONS = (
    Option("what", "what to benchmark", choices=("attention",)),
    Option("--device", "auto (cuda if available), cpu, cuda[:N]", default="auto"),
    Option("--dtype", "input dtype", choices=("fp32", "bf16", "fp16"),
           default_text=_per_device("dtype")),
    Option("--batch", "batch size", type=int, metavar="N", default_text=_per_device("batch")),
    Option("--shapes", "textbook: SAGAN's 4 sites on 64x64 digits; scaled: N=4096 (128x128 "
           "images); all: both", choices=("textbook", "scaled", "all"),
           default_text=_per_device("shapes")),
    Option("--kernels", "comma-separated attention plugins", metavar="NAMES",
           default_text="every available one"),
    Option("--option", "factory option for one of --kernels, e.g. compile-attn.mode="
           "max-autotune (repeatable; VALUE is JSON where it parses, else text)",
           action="append", metavar="KERNEL.KEY=VALUE"),
    Option("--variant", "extra rows for KERNEL built with these options, labelled as written, "
           "e.g. triton-attn:backward=atomic (repeatable)", action="append",
           metavar="KERNEL:KEY=VALUE[,KEY=VALUE...]"),
    Option("--repeats", "timed calls per row", type=int, metavar="N",
           default_text=_per_device("repeats")),
    Option("--warmup", "untimed calls first", type=int, metavar="N",
           default_text=_per_device("warmup")),
    Option("--out", "output folder", type=Path, metavar="DIR",
           default_text="results/runs/<time>-bench-attention"),
    Option("--json", "print the results as JSON (the attention-bench.json format that "
           "`ganbench compare` reads) instead of the table; progress stays on stderr",
           action="store_true"),
    Option("--columns", "comma-separated columns of the printed table", type=parse_columns,
           metavar="NAMES", default_text="the summary columns that have values, fitted to the "
           "terminal"),
    Option("--quick", f"smoke test: batch {QUICK['batch']}, {QUICK['repeats']} repeats, "
           f"{QUICK['warmup']} warm-up call", action="store_true"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    from ganbench.bench.attention import (SHAPE_SETS, SUMMARY_COLUMNS, check_out_dir,
                                          parse_variant, plan_kernels, run_benchmark, to_json,
                                          to_text, write_outputs)
    from ganbench.config import parse_options, resolve_device
    from ganbench.errors import ConfigError

    device = resolve_device(args.device)
    settings = dict(CUDA_DEFAULTS if device.startswith("cuda") else CPU_DEFAULTS)
    if args.quick:
        settings.update(QUICK)
    for key in ("batch", "repeats", "warmup", "dtype", "shapes"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if settings["batch"] < 1 or settings["repeats"] < 1 or settings["warmup"] < 0:
        raise ConfigError("--batch and --repeats must be >= 1, --warmup >= 0")
    out = args.out or Path("results/runs") / (datetime.now().strftime("%Y%m%d-%H%M%S")
                                             + "-bench-attention")
    check_out_dir(out)  # before any timing: nothing is overwritten
    if args.columns:
        unknown = [c for c in args.columns if c not in SUMMARY_COLUMNS]
        if unknown:
            raise ConfigError(f"--columns: no column {', '.join(unknown)}; choose from "
                              + ", ".join(SUMMARY_COLUMNS))
    names = None
    if args.kernels:
        names = [k.strip() for k in args.kernels.split(",") if k.strip()]
    # Every option and variant is checked here and every factory called in run_benchmark
    # before the first timing: a typo costs seconds, not a finished table.
    kernels = plan_kernels(names, parse_options(args.option),
                           [parse_variant(text) for text in args.variant])

    # Progress and skips go to stderr: stdout is the table (or the JSON with --json).
    df, skipped = run_benchmark(device, settings["dtype"], settings["batch"],
                                SHAPE_SETS[settings["shapes"]], kernels=kernels,
                                repeats=settings["repeats"], warmup=settings["warmup"],
                                echo=lambda line: print(line, file=sys.stderr, flush=True))
    if df.empty:
        print("no attention kernel can run on this device:", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    command = "ganbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = f"command: `{command}`"
    if skipped:
        header += "\n\nskipped: " + "; ".join(f"{n} ({r})" for n, r in skipped)
    recorded = dict(settings, device=device, command=command,
                    skipped=[{"kernel": n, "reason": r} for n, r in skipped])
    paths = write_outputs(df, out, header, recorded)
    if args.json:
        print(to_json(df, recorded), end="")
    else:
        from ganbench.results.table import terminal_width

        print(to_text(df, args.columns, width=terminal_width()))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0 if (df["status"] == "ok").all() else 1
