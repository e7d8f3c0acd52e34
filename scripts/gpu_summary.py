"""The last thing scripts/gpu_check.sh prints: one short summary of everything it measured.

    python scripts/gpu_summary.py OUT_DIR        # prints it and writes OUT_DIR/summary.md

The device tool returns only the end of a command's output, so the answers the issue asks for
are gathered here from the files the check wrote: the SAGAN step table and the two targets read
from it (the best configuration's speed against the textbook's step; graphed triton-attn
against graphed sdpa-attn at every site), the CUDA test tally, triton-attn against the best
other kernel per shape (per call and per CUDA-graph replay), which arithmetic fp32 used, the
variant sweep and the training rows. A missing file (a step that was skipped or timed out) is
reported as such, never as a number.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd


def _fp32(out: Path) -> list[str]:
    path = out / "fp32-precision.txt"
    if not path.exists():
        return ["fp32 arithmetic: not measured (no fp32-precision.txt)"]
    lines = path.read_text().splitlines()
    verdict = [line for line in lines if line.startswith("verdict:")]
    errors = [line.strip() for line in lines if re.match(r"\s+\S+\s+[\d.]+e[-+]\d+$", line)]
    return [f"fp32 arithmetic of triton-attn: {verdict[0] if verdict else 'no verdict'} "
            f"({'; '.join(errors[:3])})"]


TARGET_SPEEDUP = 3.0  # issue 12: the best SAGAN configuration >= 3x the textbook row (goal 5x)


def _step_table(out: Path) -> list[str]:
    path = out / "step-table" / "step-table.csv"
    if not path.exists():
        return ["step table: not run"]
    df = pd.read_csv(path)
    cols = [c for c in ("step", "kernel", "dtype", "graph", "status", "step_ms_median",
                        "img_per_s", "speedup_vs_textbook", "kernels_per_step",
                        "launch_calls_per_step", "cuda_graph") if c in df]
    lines = ["step table (SAGAN):", df[cols].to_markdown(index=False, floatfmt=".3g")]
    ok = df[(df["status"] == "ok") & (df["step"] != "textbook")]
    if "speedup_vs_textbook" in df and ok["speedup_vs_textbook"].notna().any():
        best = ok.loc[ok["speedup_vs_textbook"].idxmax()]
        verdict = "met" if best["speedup_vs_textbook"] >= TARGET_SPEEDUP else "NOT met"
        lines.append(f"best configuration: {best['kernel']} {best['dtype']}"
                     f"{' graphed' if best.get('graph') in (True, 'True') else ''} at "
                     f"{best['speedup_vs_textbook']:.2f}x the textbook step "
                     f"(target {TARGET_SPEEDUP:g}x: {verdict})")
    else:
        lines.append("best configuration: no speedup measured (textbook row missing or failed)")
    return lines


def graphed_triton_vs_sdpa(df: pd.DataFrame) -> pd.DataFrame:
    """Per site (fwd+bwd): triton-attn's and sdpa-attn's CUDA-graph replay times and their
    ratio (<= 1: triton-attn at least as fast, the issue's target)."""
    ok = df[(df["status"] == "ok") & (df["pass"] == "fwd+bwd")]
    if "graph_median_ms" not in ok:
        return pd.DataFrame()
    rows = []
    for (site, n), part in ok.groupby(["site", "N"], sort=False):
        t = part[part["kernel"] == "triton-attn"]["graph_median_ms"].dropna()
        o = part[part["kernel"] == "sdpa-attn"]["graph_median_ms"].dropna()
        if len(t) and len(o):
            rows.append(dict(site=site, N=n, triton_graph_ms=t.min(), sdpa_graph_ms=o.min(),
                             ratio=t.min() / o.min()))
    return pd.DataFrame(rows)


def _tests(out: Path) -> list[str]:
    path = out / "cuda-tests.txt"
    if not path.exists():
        return ["CUDA tests: not run"]
    lines = path.read_text().splitlines()
    tally = [line for line in lines if re.search(r"\d+ (passed|failed)", line)]
    failed = [line.split(" - ")[0] for line in lines if line.startswith("FAILED")]
    result = [f"CUDA tests: {tally[-1].strip('= ') if tally else 'no summary (cut off?)'}"]
    result += [f"  {name}" for name in failed[:12]]
    if len(failed) > 12:
        result.append(f"  ... and {len(failed) - 12} more")
    return result


def triton_vs_best_other(df: pd.DataFrame) -> pd.DataFrame:
    """Per site and pass: the fastest triton-attn row and the fastest other kernel, per call
    and per graph replay, and their ratios (> 1: triton-attn is slower). Only rows whose
    status is "ok" count: an inaccurate kernel's speed is not a result."""
    ok = df[df["status"] == "ok"].copy()
    ok["is_triton"] = ok["kernel"].str.startswith("triton-attn")
    rows = []
    for (site, n, pass_), part in ok.groupby(["site", "N", "pass"], sort=False):
        triton, other = part[part["is_triton"]], part[~part["is_triton"]]
        if triton.empty or other.empty:
            continue
        t, o = triton.loc[triton["median_ms"].idxmin()], other.loc[other["median_ms"].idxmin()]
        backend = o.get("backend")
        row = dict(site=site, N=n, pass_=pass_, triton=t["kernel"], triton_ms=t["median_ms"],
                   best_other=o["kernel"] + (f" ({backend})" if isinstance(backend, str) else ""),
                   other_ms=o["median_ms"], ratio=t["median_ms"] / o["median_ms"])
        graph = part["graph_median_ms"] if "graph_median_ms" in part else None
        if graph is not None and graph.notna().any():
            tg, og = triton["graph_median_ms"].min(), other["graph_median_ms"].min()
            row.update(triton_graph_ms=tg, other_graph_ms=og, graph_ratio=tg / og)
        rows.append(row)
    return pd.DataFrame(rows).rename(columns={"pass_": "pass"})


def _bench(out: Path) -> list[str]:
    path = out / "bench-bf16.csv"
    if not path.exists():
        return ["attention benchmark: not run"]
    df = pd.read_csv(path)
    lines = [f"attention benchmark ({df['dtype'].iloc[0]}, batch {df['batch'].iloc[0]}): "
             f"{(df['status'] == 'ok').sum()}/{len(df)} rows ok"]
    bad = df[df["status"] != "ok"]
    lines += [f"  {r['kernel']} {r['site']} {r['pass']}: {r['status']}"
              for _, r in bad.head(8).iterrows()]
    versus = triton_vs_best_other(df)
    if len(versus):
        lines.append(versus.to_markdown(index=False, floatfmt=".3g"))
    graphed = graphed_triton_vs_sdpa(df)
    if len(graphed):
        slower = graphed[graphed["ratio"] > 1]
        lines.append("graphed triton-attn vs graphed sdpa-attn, fwd+bwd: "
                     + ("at least as fast at every site" if slower.empty else
                        f"slower at {', '.join(slower['site'])}"))
        lines.append(graphed.to_markdown(index=False, floatfmt=".3g"))
    return lines


def _sweep(out: Path) -> list[str]:
    path = out / "bench-sweep.csv"
    if not path.exists():
        return ["variant sweep: not run"]
    df = pd.read_csv(path)
    part = df[df["pass"] == "fwd+bwd"].sort_values("median_ms")
    cols = [c for c in ("kernel", "median_ms", "graph_median_ms", "rel_err_max", "status")
            if c in part]
    return ["variant sweep, fwd+bwd, fastest first:",
            part[cols].to_markdown(index=False, floatfmt=".3g")]


def _ncu(out: Path) -> list[str]:
    path = out / "ncu-attention.txt"
    if not path.exists():
        return ["ncu profile: not run"]
    lines, kernel = [], None
    for line in path.read_text().splitlines():
        # triton-attn's kernels: _tiled_fwd_kernel, _tiled_bwd_kernel, _small_fwd_kernel, ...
        name = re.search(r"(\w*_(?:fwd|bwd)\w*_kernel)\b", line)
        if name and "(" in line:
            kernel = name.group(1)
        elif kernel and re.search(r"^\s+(Duration|Registers Per Thread|Achieved Occupancy)\b",
                                  line):
            lines.append(f"  {kernel}: {' '.join(line.split())}")
    return ["ncu profile (N=4096, per launch):"] + (lines or ["  no kernel sections found"])


def _train(out: Path) -> list[str]:
    path = out / "train-results.csv"
    if not path.exists():
        return ["training: no table"]
    df = pd.read_csv(path)
    cols = [c for c in ("combo", "status", "img_per_s", "step_ms_median", "speedup_vs_textbook",
                        "cuda_graph", "peak_mem_mib", "fid_digits") if c in df]
    return ["training:", df[cols].to_markdown(index=False, floatfmt=".4g")]


def summarize(out: Path) -> str:
    sections = [_step_table(out), _tests(out), _bench(out), _fp32(out), _sweep(out), _ncu(out),
                _train(out)]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/gpu_summary.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    text = summarize(out)
    (out / "summary.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
