"""SAGAN's step time and peak memory against image size and batch, per attention kernel (CPU).

    python scripts/scaling_table.py --out results/cpu-scaling --run-flags="--malloc default" \
        --best-kernel compile-attn --best-flags="--malloc keep" --steps 3 --warmup 1 \
        --cell-timeout 300        # the committed table (issue 23); add --resume to continue

Each cell (image size x batch x variant; default 32,64,128 x 16,64,256 x all four) is one
`ganbench run --metrics none --device cpu --quiet` (plus --steps, --warmup, --run-flags) in a
fresh subprocess, so each has its own peak RSS (peak_mem_bytes: the training worker's VmHWM).
Variants: eager, sdpa, compile-attn = sagan with that kernel; best = sagan,<--best-kernel> plus
--best-flags (give it with "=": its value starts with "--"). Cells run smallest first (pixels
per step, then size); every number comes from the cell's own results table. A cell that runs
out of memory, crashes, fails or passes --cell-timeout is recorded (oom, failed, timeout: its
error and whatever numbers its row has) and the next one runs; SIGKILL (the OOM killer) = oom.

Written to --out after every cell, atomically: table.csv (a row per cell: settings, status,
step ms median/p10/p90, img/s, peak and delta-peak bytes, N of the largest attention site,
load, error, command), table.md (step ms and peak MiB per size x batch and variant, beside the
bytes of eager's (B, N, N) scores at the largest site) and, at the end or on Ctrl-C,
scaling.png (both against image size, a line per variant and batch, log y; x at the top: no
number). Run folders: <--work>/<px>px-b<batch>-<variant> (default OUT/cells, with models and
samples: commit table.* and scaling.png). --resume keeps each cell of OUT/table.csv whose
command is the very one it would run now.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ganbench.config import auto_dtype
from ganbench.errors import UsageError, UserError
from ganbench.files import atomic
from ganbench.registry import get_registry
from ganbench.results import table as fmt
from ganbench.results.columns import header
from ganbench.results.store import read_table

ARCH = "sagan"
KERNELS = {"eager": "eager-attn", "sdpa": "sdpa-attn", "compile-attn": "compile-attn"}
VARIANTS = (*KERNELS, "best")
# Options this script sets per cell: in --best-flags / --run-flags they would fight its own.
OWN_OPTIONS = ("--plugins", "--image-size", "--batch-size", "--steps", "--warmup", "--metrics",
               "--device", "--out", "--quiet", "--force", "--resume", "--seeds", "--nproc")
FROM_ROW = ("step_ms_median", "step_ms_p10", "step_ms_p90", "img_per_s", "peak_mem_bytes",
            "peak_mem_delta_bytes", "dtype", "timed_steps", "load_avg_start", "load_avg_end",
            "cores")
COLUMNS = ["image_size", "batch_size", "variant", "kernel", "flags", "status", *FROM_ROW[:6],
           "attention_n", *FROM_ROW[6:], "timing_note", "error", "exit_code", "cell_wall_s",
           "command"]
MEASURED = ("ok", "diverged")  # statuses whose step times and memory are the step's own
SHOWN = {"oom": "OOM", "timeout": "timeout"}  # anything else without numbers: "failed"
ELEMENT_BYTES, MIB = {"fp32": 4, "bf16": 2, "fp16": 2}, 2 ** 20
STOP_GRACE_S = 15  # SIGTERM, then SIGKILL: ganbench stops its worker within 10 s of SIGTERM


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage + error is two lines; ours is one
        raise UsageError(message)


Cell = NamedTuple("Cell", [("size", int), ("batch", int), ("variant", str), ("kernel", str),
                           ("flags", tuple), ("name", str)])  # name: its run folder's


def _numbers(text: str, what: str, powers_of_two: bool = False) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{what} must be positive whole numbers, got {text!r}")
    for v in values if powers_of_two else ():
        if v & (v - 1):
            raise UserError(f"{what} must be powers of two, got {v}")
    return list(dict.fromkeys(values))


def _flags(text: str, what: str) -> tuple[str, ...]:
    try:
        flags = tuple(shlex.split(text))
    except ValueError as exc:
        raise UserError(f"{what} {text!r}: {exc}") from None
    own = [f.split("=")[0] for f in flags if f.split("=")[0] in OWN_OPTIONS]
    if own:
        raise UserError(f"{what} must not set {own[0]}: this script sets it for every cell")
    return flags


def parse(argv) -> argparse.Namespace:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for table.csv/.md, png")
    ap.add_argument("--work", type=Path, help="folder of the cells' run folders (OUT/cells)")
    for name, default, text in (
            ("--image-sizes", "32,64,128", "powers of two"), ("--batches", "16,64,256", ""),
            ("--variants", ",".join(VARIANTS), ""), ("--best-kernel", "sdpa-attn", ""),
            ("--best-flags", "", "the best variant's extra ganbench flags"),
            ("--run-flags", "", "extra ganbench flags for every cell")):
        ap.add_argument(name, default=default, help=f"{text} (default: {default!r})")
    for name, kind, default in (("--steps", int, 4), ("--warmup", int, 1),
                                ("--cell-timeout", float, 900.0)):  # timeout: s per cell
        ap.add_argument(name, type=kind, default=default, help=f"(default: {default})")
    ap.add_argument("--ganbench", help="the command that runs ganbench (default: this Python's "
                                       "`-m ganbench`, i.e. the ganbench it imports)")
    ap.add_argument("--resume", action="store_true", help="keep OUT/table.csv's finished cells")
    ap.add_argument("--force", action="store_true", help="start afresh over OUT/table.csv")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.warmup >= args.steps:
        raise UserError(f"need 0 <= --warmup < --steps (a timed step), got --steps "
                        f"{args.steps} --warmup {args.warmup}")
    if not args.cell_timeout > 0:
        raise UserError(f"--cell-timeout must be positive, got {args.cell_timeout:g}")
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: choose one")
    args.sizes = _numbers(args.image_sizes, "--image-sizes", powers_of_two=True)
    args.batch_list = _numbers(args.batches, "--batches")
    args.variant_list = list(dict.fromkeys(v.strip() for v in args.variants.split(",")))
    unknown = [v for v in args.variant_list if v not in VARIANTS]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.best = _flags(args.best_flags, "--best-flags")
    args.common = _flags(args.run_flags, "--run-flags")
    args.prefix = shlex.split(args.ganbench or "") or [sys.executable, "-m", "ganbench"]
    args.arch = get_registry().architectures[ARCH]
    unbuilt = sorted(set(args.sizes) - set(args.arch.image_sizes))
    if unbuilt:
        raise UserError(f"{ARCH} does not build {unbuilt[0]}x{unbuilt[0]} images; --image-sizes "
                        f"must be of {', '.join(map(str, args.arch.image_sizes))}")
    args.work = args.work or args.out / "cells"
    return args


def plan(args) -> list[Cell]:
    """Every cell, smallest first: pixels per step (size^2 x batch), then size, then variant."""
    cells = [Cell(s, b, v, KERNELS.get(v, args.best_kernel), args.best if v == "best" else (),
                  f"{s}px-b{b}-{v}") for s in args.sizes for b in args.batch_list
             for v in args.variant_list]
    return sorted(cells, key=lambda c: (c.size ** 2 * c.batch, c.size, VARIANTS.index(c.variant)))


def command(cell: Cell, args, shown: bool = False) -> list[str]:
    """The cell's argv; ``shown``: as typed (`ganbench run ...` unless --ganbench is given)."""
    prefix = ["ganbench"] if shown and not args.ganbench else args.prefix
    return [*prefix, "run", "--plugins", f"{ARCH},{cell.kernel}",
            "--image-size", str(cell.size), "--batch-size", str(cell.batch),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--metrics", "none",
            "--device", "cpu", "--quiet", "--force", "--out", str(args.work / cell.name),
            *args.common, *cell.flags]


def largest_n(arch, size: int, batch: int) -> int:
    """N = H*W at the architecture's largest attention site (sagan at 128 px: 64x64 = 4096)."""
    return max(n for _, n, _, _ in arch.attention_shapes(size, batch))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the cell's group, SIGKILL after STOP_GRACE_S (ganbench's worker, in a session
    of its own, dies with its parent: PR_SET_PDEATHSIG)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
            return


def _clean(value):
    return None if fmt.missing(value) else (value.item() if hasattr(value, "item") else value)


def result_row(folder: Path) -> dict | None:
    """The trained combination's row of a cell's results table; None if it wrote none."""
    try:
        df = read_table(folder)
    except UserError:
        return None
    df = df[df["status"] != "reference"] if "status" in df else df
    return None if df.empty else {k: _clean(v) for k, v in df.iloc[0].items()}


def outcome(folder: Path, code: int | None, log: str, timeout: float) -> dict:
    """status and error (and the row's numbers) of a finished, failed or stopped cell."""
    if code is None:
        return {"status": "timeout", "error": f"no row within --cell-timeout {timeout:g} s"}
    row = result_row(folder)
    if row is None and code == -signal.SIGKILL:
        return {"status": "oom", "error": "ganbench was killed by SIGKILL (the kernel's "
                                          "out-of-memory killer's signal) before a row"}
    if row is None:
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ganbench: error:")] or lines
        return {"status": "failed", "error": errors[-1][:300] if errors else
                f"ganbench exited {code} without a row"}
    status, error = str(row.get("status")), row.get("error")
    if status == "crashed" and "SIGKILL" in str(error):
        status, error = "oom", f"crashed: {error}"
    elif status not in MEASURED + ("oom",):
        status, error = "failed", f"{status}: {error}"
    return {**{key: row.get(key) for key in FROM_ROW}, "status": status, "error": error,
            "timing_note": "; ".join(fmt.unreliable_timing(row))}


def run_cell(cell: Cell, args) -> dict:
    argv = command(cell, args)
    args.work.mkdir(parents=True, exist_ok=True)
    log_path = args.work / f"{cell.name}.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:  # a file, not a pipe: a stray worker cannot hold it up
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=args.cell_timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            code = None
        except BaseException:  # Ctrl-C: the cell's group did not get it (its own session)
            stop(proc)
            raise
    row = {"image_size": cell.size, "batch_size": cell.batch, "variant": cell.variant,
           "kernel": cell.kernel, "flags": shlex.join([*args.common, *cell.flags]),
           "attention_n": largest_n(args.arch, cell.size, cell.batch), "exit_code": code,
           "cell_wall_s": round(time.monotonic() - start, 2),
           "command": shlex.join(command(cell, args, shown=True))}
    return {**row, **outcome(args.work / cell.name, code, log_path.read_text(errors="replace"),
                             args.cell_timeout)}


def measured(row, col: str) -> float | None:
    """The row's positive, finite number in ``col`` when its status measured the step."""
    value = pd.to_numeric(row.get(col), errors="coerce") if row["status"] in MEASURED else None
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def markdown(df: pd.DataFrame, args) -> str:
    def _md(head: list[str], body: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *body]]

    variants = [v for v in VARIANTS if v in set(df["variant"])]
    rows = {(r["image_size"], r["batch_size"], r["variant"]): r for r in df.to_dict("records")}

    def cell(size, batch, variant, col, show) -> str:
        row = rows.get((size, batch, variant))
        value = measured(row, col) if row else None
        if value is None:
            return SHOWN.get(row["status"], "failed") if row else ""
        return show(value) + (" †" if row.get("timing_note") and col.startswith("step") else "")

    head, steps, memory = ["px", "batch", f"largest site {header('N')}"], [], []
    eager = df[df["variant"] == "eager"]
    for size, batch in sorted({(int(s), int(b)) for s, b, _ in rows}):
        lead = [str(size), str(batch), str(n := largest_n(args.arch, size, batch))]
        steps.append(lead + [cell(size, batch, v, "step_ms_median", fmt.sig) for v in variants])
        here = eager[(eager["image_size"] == size) & (eager["batch_size"] == batch)]
        # eager's dtype: its row's, else another eager row's (an OOM row has none), else what
        # --dtype auto picks on this CPU
        dtype = [*map(str, here["dtype"].dropna()), *map(str, eager["dtype"].dropna()),
                 auto_dtype("cpu")][0]
        scores = batch * n * n * ELEMENT_BYTES.get(dtype, 4)
        memory.append(lead + [cell(size, batch, v, "peak_mem_bytes", fmt.mib) for v in variants]
                      + [f"{fmt.mib(scores)} ({dtype})"])
    defined = [f"- {v}: `--plugins {ARCH},{r['kernel']}` {r['flags'] or ''}".rstrip()
               for v in variants for r in [df[df["variant"] == v].iloc[0]]]
    lines = [f"# {ARCH}: step time and peak memory against image size and batch (CPU)", "",
             "Each cell is one `ganbench run` in a fresh process (scripts/scaling_table.py), "
             "e.g.", "", f"    {df['command'].iloc[0]}", "", *defined, "",
             f"## {header('step_ms_median')} (median of the timed steps)", "",
             *_md(head + variants, steps), "",
             f"## {header('peak_mem_bytes')} (the training worker's peak RSS)", "",
             *_md(head + variants + ["eager's N×N scores MiB"], memory), "",
             "eager's N×N scores: the (B, N, N) tensor q·kᵀ that eager-attn holds at the largest "
             "attention site (N = H·W of its feature map): B·N² elements at eager's dtype, for "
             "one forward; its backward keeps the softmax of it as well (as much again).", ""]
    flagged = df[[not fmt.missing(v) for v in df["timing_note"]]]
    if len(flagged):
        lines += ["† timed under load: " + "; ".join(
            f"{r.image_size} px b{r.batch_size} {r.variant} ({r.timing_note})"
            for r in flagged.itertuples()), ""]
    bad = df[~df["status"].isin(MEASURED)]
    lines += ["Cells without a number:", ""] * (len(bad) > 0) + [
        f"- {r.image_size} px b{r.batch_size} {r.variant}: {r.status}: {r.error}"
        for r in bad.itertuples()]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    variants = [v for v in VARIANTS if v in set(df["variant"])]
    batches = sorted(int(b) for b in df["batch_size"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    records = df.to_dict("records")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, col, scale in ((axes[0], "step_ms_median", 1), (axes[1], "peak_mem_bytes", MIB)):
        for vi, variant in enumerate(variants):
            for bi, batch in enumerate(batches):
                mine = [r for r in records if r["variant"] == variant and r["batch_size"] == batch]
                points = sorted((r["image_size"], measured(r, col) / scale) for r in mine
                                if measured(r, col))
                style = dict(color=colors[vi % len(colors)], ms=3 + 2 * (bi % 3))
                if points:
                    ax.plot(*zip(*points), linestyle=styles[bi % len(styles)], marker="o",
                            label=f"{variant}, batch {batch}", **style)
                for r in mine:  # no number: an x at the top edge, one height per variant
                    if not measured(r, col):
                        ax.plot(r["image_size"], 0.97 - 0.04 * vi, marker="x", clip_on=False,
                                transform=ax.get_xaxis_transform(), **style)
        ax.set_xscale("log", base=2)
        sizes = sorted(int(s) for s in df["image_size"].unique())
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xticks([], minor=True)
        if any(measured(r, col) for r in records):  # a log axis needs a positive number
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter("{x:g}")
        ax.set(xlabel="image size (px)", ylabel=header(col))
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # filled column by column
    fig.legend(handles, labels, loc="lower center", fontsize=8,
               ncol=max(1, math.ceil(len(labels) / len(batches))))
    fig.suptitle(f"{ARCH} training step on the CPU (x at the top: OOM, failed or timeout)")
    fig.tight_layout(rect=(0, 0.05 + 0.035 * len(batches), 1, 1))
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write(rows: dict, order: list[tuple], args, with_plot: bool) -> None:
    keys = [k for k in order if k in rows] + sorted(k for k in rows if k not in order)
    df = pd.DataFrame([rows[k] for k in keys], columns=COLUMNS)
    atomic.write_text(args.out / "table.csv", df.to_csv(index=False))
    atomic.write_text(args.out / "table.md", markdown(df, args))
    if with_plot:
        plot(df, args.out / "scaling.png")


def kept_rows(path: Path) -> dict:
    try:
        return {(int(r["image_size"]), int(r["batch_size"]), str(r["variant"])):
                {k: _clean(v) for k, v in r.items()} for r in pd.read_csv(path).to_dict("records")}
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot resume from {path}: {exc}".splitlines()[0]) from None


def main(argv=None) -> int:
    try:
        args = parse(argv)
        table_csv = args.out / "table.csv"
        if table_csv.exists() and not (args.resume or args.force):
            raise UserError(f"{args.out} already holds a scaling table: --resume continues "
                             "it, --force starts afresh")
        rows = kept_rows(table_csv) if args.resume and table_csv.exists() else {}
        args.out.mkdir(parents=True, exist_ok=True)
    except (UserError, OSError) as exc:  # OSError: --out cannot be created
        why = exc if isinstance(exc, UserError) else f"cannot create {args.out}: {exc.strerror}"
        print(f"ganbench: error: {why}", file=sys.stderr)
        return 2
    cells = plan(args)
    order = [c[:3] for c in cells]
    # SIGTERM (e.g. from `timeout`) as Ctrl-C: stop the cell, keep the table
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for i, cell in enumerate(cells, 1):
            old = rows.get(cell[:3])
            if old and old["command"] == shlex.join(command(cell, args, shown=True)):
                print(f"[{i}/{len(cells)}] {cell.name}: kept ({old['status']})", flush=True)
                continue
            row = rows[cell[:3]] = run_cell(cell, args)
            write(rows, order, args, with_plot=False)
            ms, mem = measured(row, "step_ms_median"), measured(row, "peak_mem_bytes")
            got = f"{fmt.sig(ms)} ms, {fmt.mib(mem)} MiB" if ms and mem else row["error"] or ""
            print(f"[{i}/{len(cells)}] {cell.name}: {row['status']} ({row['cell_wall_s']:.0f} s)"
                  f" {got}", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted: {len(rows)} cell(s) in {table_csv}; --resume continues",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if rows:
            write(rows, order, args, with_plot=True)
    print(f"table: {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
