"""The best CPU configuration of the SAGAN step, against the textbook's step (issue 23).

    python scripts/cpu_step_best.py --out results/cpu-step-best               # both parts
    python scripts/cpu_step_best.py --out /tmp/csb --image-size 32 --batch-size 8 \\
        --speed-steps 4 --warmup 2 --variants bf16,best-guess --quality-steps 0   # a smoke run

Part 1, speed: every candidate configuration is an ordinary ``ganbench run`` of
``--plugins sagan`` (a fresh process per run, as users get it), one after another on the same
machine, at --image-size and --batch-size (default 64 and 64: results/cpu-textbook-baseline's
point). The first run adds ``--baseline textbook``, so it holds the textbook row (the chapter's
step: fp32, contiguous, eager, glibc's allocator) and every row's ``speedup_vs_textbook`` is
its images/s over that row's. Each run gets a fresh, empty inductor cache
(TORCHINDUCTOR_CACHE_DIR), so ``compile_s`` is a cold compile, as a user's first run pays.
``payback_steps`` = compile_s / (step time saved against the same configuration uncompiled):
how many steps a compile needs before it is cheaper than not compiling.

Part 2, quality: the configurations named by --quality (default: eager fp32, the default bf16,
the compiled step and the fastest of part 1) trained for --quality-steps (600) under --seeds
seeds at --quality-image-size (32, the CPU default; 64 px x 600 steps x 3 seeds x 4
configurations would take ~5 h on 2 cores), scored with fid-digits and kid-digits; medians and
intervals come from each run's summary.csv, and ``ganbench compare`` of each against eager
fp32 gives the verdict on fid_digits over the seeds.

Writes into --out: speed.csv, quality.csv, table.md (both tables, the machine and the load),
and the run folders under --out/runs (kept: every number in the tables comes from them).
A failed run is recorded with its error and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

# name -> (ganbench run flags, extra environment). "fp32" is ganbench's step with the book's
# arithmetic and layout; "bf16" is bf16 autocast and channels_last with glibc's allocator as it
# comes (the CPU default before --malloc keep). Every variant names its --malloc, so a change
# of the default cannot change what a variant measures.
VARIANTS = {
    "fp32": ("--dtype fp32 --memory-format contiguous --malloc default", {}),
    "bf16": ("--dtype bf16 --memory-format channels_last --malloc default", {}),
    "bf16-contiguous": ("--dtype bf16 --memory-format contiguous --malloc keep", {}),
    "bf16+keep": ("--dtype bf16 --memory-format channels_last --malloc keep", {}),
    "bf16+compile-models": ("--dtype bf16 --compile models --malloc default", {}),
    "bf16+compile-step": ("--dtype bf16 --compile step --malloc default", {}),
    "bf16+keep+compile-models": ("--dtype bf16 --malloc keep --compile models", {}),
    # the attention op alone compiled (a plugin, not a run flag: the later --plugins wins)
    "bf16+keep+compile-attn": ("--plugins sagan,compile-attn --dtype bf16 --malloc keep", {}),
    "bf16+keep+compile-step": ("--dtype bf16 --malloc keep --compile step", {}),
    "bf16+keep+1-thread": ("--dtype bf16 --malloc keep", {"OMP_NUM_THREADS": "1"}),
    # oneDNN's fp32 math mode: fp32 convolutions and matmuls computed in bf16 inside oneDNN
    "fp32+keep+onednn-bf16": ("--dtype fp32 --malloc keep",
                              {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}),
    "bf16+keep+compile-step-autotune": (
        "--dtype bf16 --malloc keep --compile step --compile-mode max-autotune-no-cudagraphs",
        {}),
}
# The uncompiled twin of each compiled variant, for payback_steps.
UNCOMPILED = {"bf16+compile-models": "bf16", "bf16+compile-step": "bf16",
              "bf16+keep+compile-step": "bf16+keep", "bf16+keep+compile-models": "bf16+keep",
              "bf16+keep+compile-step-autotune": "bf16+keep"}
SPEED_COLUMNS = ["variant", "flags", "env", "status", "step_ms_median", "step_ms_p10",
                 "step_ms_p90", "img_per_s", "speedup_vs_textbook", "compile_s",
                 "payback_steps", "peak_mem_bytes", "load_avg_start", "load_avg_end",
                 "cpu_wait_share", "malloc", "compile_scope", "error"]


def ganbench(args: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """Run ``python -m ganbench`` with ``args``; (exit code, last stderr lines)."""
    try:
        done = subprocess.run([sys.executable, "-m", "ganbench", *args], env=env, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    return done.returncode, " | ".join(done.stderr.strip().splitlines()[-3:])


def fresh_env(extra: dict, cache_root: Path) -> dict:
    env = {**os.environ, **extra}
    env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-", dir=cache_root)
    return env


def speed(args, out: Path) -> pd.DataFrame:
    rows = []
    for i, name in enumerate(args.variants):
        flags, extra = VARIANTS[name]
        run_dir = out / "runs" / f"speed-{name}"
        argv = ["run", "--plugins", "sagan", "--image-size", str(args.image_size),
                "--batch-size", str(args.batch_size), "--steps", str(args.speed_steps),
                "--warmup", str(args.warmup), "--metrics", "none", "--device", "cpu",
                "--quiet", "--force", "--out", str(run_dir), *shlex.split(flags)]
        if i == 0:
            argv += ["--baseline", "textbook"]
        t0 = time.perf_counter()
        code, err = ganbench(argv, fresh_env(extra, out), args.run_timeout)
        print(f"speed {name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        results = run_dir / "results.csv"
        if not results.exists():
            rows.append({"variant": name, "flags": flags, "status": f"exit {code}",
                         "error": err})
            continue
        for _, r in pd.read_csv(results).iterrows():
            book = r.get("step") == "textbook"
            rows.append({"variant": "textbook" if book else name,
                         "flags": "(the book's step)" if book else flags,
                         "env": "" if book else " ".join(f"{k}={v}" for k, v in extra.items()),
                         **{c: r.get(c) for c in SPEED_COLUMNS[3:] if c in r}})
    df = pd.DataFrame(rows)
    book = df.loc[df.variant == "textbook", "img_per_s"]
    if len(book):
        df["speedup_vs_textbook"] = df["img_per_s"] / float(book.iloc[0])
    for compiled, plain in UNCOMPILED.items():
        a, b = df[df.variant == compiled], df[df.variant == plain]
        if len(a) and len(b):
            saved = float(b.step_ms_median.iloc[0]) - float(a.step_ms_median.iloc[0])
            df.loc[a.index, "payback_steps"] = (float(a.compile_s.iloc[0]) * 1000 / saved
                                                if saved > 0 else float("inf"))
    return df.reindex(columns=[c for c in SPEED_COLUMNS if c in df.columns or c == "error"])


def fastest(df: pd.DataFrame) -> str:
    ok = df[(df.status == "ok") & (df.variant != "textbook")]
    return str(ok.sort_values("step_ms_median").variant.iloc[0])


def quality(args, out: Path, names: list[str]) -> pd.DataFrame:
    rows, ref_dir = [], None
    for name in names:
        flags, extra = VARIANTS[name]
        run_dir = out / "runs" / f"quality-{name}"
        argv = ["run", "--plugins", "sagan", "--image-size", str(args.quality_image_size),
                "--steps", str(args.quality_steps), "--seeds", str(args.seeds),
                "--metrics", "fid-digits,kid-digits", "--device", "cpu", "--quiet", "--force",
                "--out", str(run_dir), *shlex.split(flags)]
        t0 = time.perf_counter()
        if args.reuse and (run_dir / "summary.csv").exists():  # trained by an earlier call
            code, err = 0, ""
            wall = json.loads((run_dir / "reuse-wall.json").read_text())["wall_s"] \
                if (run_dir / "reuse-wall.json").exists() else float("nan")
        else:
            code, err = ganbench(argv, fresh_env(extra, out), args.run_timeout * args.seeds)
            wall = time.perf_counter() - t0
            if run_dir.is_dir():
                (run_dir / "reuse-wall.json").write_text(json.dumps({"wall_s": wall}))
        print(f"quality {name}: exit {code} in {wall:.0f} s", flush=True)
        row = {"variant": name, "flags": flags, "exit": code, "wall_s": round(wall) if wall == wall else wall}
        summary = run_dir / "summary.csv"
        if summary.exists():
            s = pd.read_csv(summary).iloc[0]
            rows_ok = pd.read_csv(run_dir / "results.csv").query("status == 'ok'")
            if "compile_s" in rows_ok:
                row["compile_s_median"] = rows_ok["compile_s"].median()
            for col in ("fid_digits", "kid_digits", "img_per_s", "step_ms_median"):
                for part in ("", "_ci_low", "_ci_high"):
                    if f"{col}{part}" in s:
                        row[f"{col}{part}"] = s[f"{col}{part}"]
            row["seeds"] = s.get("n_seeds", args.seeds)
        else:
            row["error"] = err
        if ref_dir is None:
            ref_dir = run_dir
        elif summary.exists():
            row.update(verdict(ref_dir, run_dir))
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(ref_dir: Path, run_dir: Path) -> dict:
    """fid_digits of RUN against REF over the seeds, by the run's own verdicts
    (ganbench.results.verdicts: Welch's t-test on the per-seed values, as `ganbench compare`
    judges multi-seed runs). Not `ganbench compare` itself: it pairs rows by combination name,
    and a variant that changes the kernel (compile-attn) is another combination."""
    from ganbench.results.verdicts import verdicts

    sides = []
    for name, run in (("reference", ref_dir), ("candidate", run_dir)):
        df = pd.read_csv(run / "results.csv")
        sides.append(df[df.status == "ok"].assign(combo=name))
    table = verdicts(pd.concat(sides, ignore_index=True), reference="reference",
                     metrics=["fid_digits"])
    row = table[table.combo == "candidate"].iloc[0]
    return {"fid_verdict": row.verdict, "fid_p": row.p_value,
            "fid_test": row.test.split(" on ")[0]}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"load average before: {os.getloadavg()[0]:.2f}")


def write_tables(out: Path, speed_df, quality_df, note: str) -> None:
    parts = [f"# The best CPU step configuration\n\nMachine: {note}\n"]
    if speed_df is not None:
        speed_df.to_csv(out / "speed.csv", index=False)
        parts.append("## Speed\n\n" + speed_df.drop(columns=["error"], errors="ignore")
                     .to_markdown(index=False, floatfmt=".3g") + "\n")
    if quality_df is not None and len(quality_df):
        quality_df.to_csv(out / "quality.csv", index=False)
        parts.append("## Quality over seeds\n\n" + quality_df.to_markdown(index=False,
                                                                          floatfmt=".3g") + "\n")
    (out / "table.md").write_text("\n".join(parts))


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--speed-steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, first one also runs the textbook row")
    ap.add_argument("--quality", default="fp32,bf16,bf16+compile-step,FASTEST",
                    help="variants trained for quality (FASTEST: part 1's fastest); the first "
                         "is the reference of the verdicts")
    ap.add_argument("--quality-steps", type=int, default=600, help="0: skip part 2")
    ap.add_argument("--quality-image-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--run-timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--reuse", action="store_true",
                    help="part 2: keep a quality run folder that already has its summary.csv "
                         "(trained by an earlier call) instead of training it again")
    args = ap.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants + args.quality.split(",")
               if v not in VARIANTS and v != "FASTEST"]
    if unknown:
        ap.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    note = machine()
    speed_df = speed(args, out) if args.variants else None
    write_tables(out, speed_df, None, note)
    quality_df = None
    if args.quality_steps > 0:
        best = fastest(speed_df) if speed_df is not None else None
        names = list(dict.fromkeys(best if q == "FASTEST" else q
                                   for q in args.quality.split(",") if q != "FASTEST" or best))
        quality_df = quality(args, out, names)
    write_tables(out, speed_df, quality_df, note + f"; after: {os.getloadavg()[0]:.2f}")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
