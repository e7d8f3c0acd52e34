"""`ganbench run --plugins NAMES`: train and measure every combination the names make."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "run"
HELP = "train and benchmark every combination of the named plugins"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", required=True, metavar="NAMES",
                   help="comma-separated architectures, losses and attention kernels, "
                        "e.g. dcgan,sagan or sagan,triton-attn (see `ganbench plugins`)")
    p.add_argument("--metrics", metavar="NAMES",
                   help="comma-separated metric plugins, or 'none' (default: all available)")
    p.add_argument("--data", default="embedded", metavar="SOURCE",
                   help="embedded (default, shipped MNIST subset), mnist:DIR (IDX files), "
                        "folder:DIR (images)")
    p.add_argument("--digits", default="7,8", help="digits to train on, or 'all' (default "
                                                  "7,8 as the textbook)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    p.add_argument("--steps", type=int, help="training iterations (default: 150 on CPU, "
                                             "1000 on CUDA)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, help="32, 64 or 128 (default: 32 on CPU, 64 on "
                                                  "CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="fp32", help="fp32 (default) or bf16 (autocast)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default min(10, steps/5))")
    p.add_argument("--eval-n", type=int, default=2000, help="generated samples per metric "
                                                            "evaluation (default 2000)")
    p.add_argument("--eval-every", type=int, default=0, metavar="K",
                   help="also evaluate every K steps and write quality curves")
    p.add_argument("--target-fid", type=float, metavar="X",
                   help="record the wall time at which fid_digits first drops below X")
    p.add_argument("--compile", action="store_true", help="torch.compile the whole G and D")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode for --compile")
    p.add_argument("--option", action="append", default=[], metavar="PLUGIN.KEY=VALUE",
                   help="an option for an attention kernel's factory, e.g. "
                        "compile-attn.mode=max-autotune (repeatable)")
    p.add_argument("--out", type=Path, help="run folder (default results/runs/<time>-<names>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    p.add_argument("--in-process", action="store_true",
                   help="train in this process instead of one fresh process per combination "
                        "(faster start; CPU peak memory is then not per combination)")


def config_from_args(args: argparse.Namespace):
    from ganbench.config import RunConfig, parse_digits, parse_names, parse_options

    metrics = None
    if args.metrics is not None:
        metrics = () if args.metrics.strip().lower() == "none" else parse_names(args.metrics,
                                                                                "--metrics")
    return RunConfig(plugins=parse_names(args.plugins, "--plugins"), metrics=metrics,
                     data=args.data, digits=parse_digits(args.digits), device=args.device,
                     steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                     seed=args.seed, dtype=args.dtype, warmup=args.warmup, eval_n=args.eval_n,
                     eval_every=args.eval_every, target_fid=args.target_fid,
                     compile=args.compile, compile_mode=args.compile_mode,
                     options=parse_options(args.option), out=args.out,
                     quiet=args.quiet, isolate=not args.in_process)


def run(args: argparse.Namespace) -> int:
    from ganbench.runner import run as run_all

    cfg = config_from_args(args)  # validates before torch is imported
    echo = (lambda *a, **k: None) if args.quiet else print
    run_dir, df = run_all(cfg, echo=echo)
    if args.quiet:
        print(run_dir)
    bad = df is not None and "status" in df and (~df["status"].isin(["ok", "reference"])).any()
    return 1 if bad else 0
