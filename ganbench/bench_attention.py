"""Micro-benchmark of every available attention kernel at SAGAN's attention shapes.

For each kernel (from the plugin registry), shape and pass (forward; forward + backward) it
records the median time with p10/p90 and the count, TFLOP/s and GB/s from the cost model in
``kernels/attention/reference.py``, peak extra memory, the share of the device's roofline bound
reached (where the device's peaks are known), the backend that ran where a kernel can say
(``attend.backend_used(q, k, v)``: sdpa-attn reports SDPA's flash/efficient/cuDNN/math
choice), and the environment.

Timing follows DESIGN.md: warm-up calls (which include torch.compile's and Triton's compilation)
are not counted; on CUDA each call is timed with CUDA events and read after one synchronise;
on the CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ganbench.kernels.attention.reference import attention_flops, attention_min_bytes


@dataclass(frozen=True)
class Shape:
    """One attention call site: ``site`` says where SAGAN (64x64 digits) uses it."""

    site: str
    N: int     # tokens = H * W of the feature map
    Dqk: int   # C / 8
    Dv: int    # C


# SAGAN's self-attention blocks on 64x64 digits: G after its 16x16 and 32x32 layers, D at 8x8
# and 4x4 (N = H*W, Dqk = C/8, Dv = C for the channel counts of the textbook's G and D).
TEXTBOOK_SHAPES = (
    Shape("G 16x16", 256, 16, 128),
    Shape("G 32x32", 1024, 8, 64),
    Shape("D 8x8", 64, 32, 256),
    Shape("D 4x4", 16, 64, 512),
)
# The same G scaled to 128x128 images: its last attention block sees a 64x64 map.
SCALED_SHAPES = (Shape("G 64x64 (128px)", 4096, 8, 64),)
SHAPE_SETS = {"textbook": TEXTBOOK_SHAPES, "scaled": SCALED_SHAPES,
              "all": TEXTBOOK_SHAPES + SCALED_SHAPES}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PASSES = ("fwd", "fwd+bwd")

# Dense peak FLOP/s per dtype and peak memory bandwidth, keyed by a substring of
# torch.cuda.get_device_name(); the first match wins, so the more specific names come first.
# Source: NVIDIA H100 and H200 Tensor Core GPU datasheets (SXM form factors: bf16/fp16 dense
# 989 TFLOP/s, fp32 non-tensor 67 TFLOP/s, HBM3 3.35 TB/s on H100, HBM3e 4.8 TB/s on H200;
# H100 PCIe: 756 TFLOP/s bf16 dense, 51 TFLOP/s fp32, 2.0 TB/s). fp32 uses the non-tensor-core
# peak because the kernels here run fp32 without TF32 (torch's default for matmul, and
# triton-attn's input_precision="ieee").
DEVICE_PEAKS = (
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}, 2.0e12),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 3.35e12),
    ("H200", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 4.8e12),
)


def device_peaks(device_name: str, dtype: str) -> Optional[tuple[float, float]]:
    """(peak FLOP/s, peak bytes/s) for a known device, else None."""
    for key, flops, bandwidth in DEVICE_PEAKS:
        if key in device_name:
            return flops[dtype], bandwidth
    return None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: str, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` uncounted ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.startswith("cuda"):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]  # ms -> s
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds


def peak_extra_memory(fn: Callable[[], object], device: str) -> tuple[float, str]:
    """Peak bytes one call allocates beyond what is live before it, and how it was measured."""
    if not device.startswith("cuda"):
        return math.nan, ("not measured: CPU tensor buffers are invisible to tracemalloc, and "
                          "this process's peak RSS is shared by every row of the run")
    _sync(device)
    before = torch.cuda.memory_allocated(device)  # the inputs (q, k, v, dO) and anything older
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return float(torch.cuda.max_memory_allocated(device) - before), \
        "cuda.max_memory_allocated - memory_allocated before the call (inputs excluded)"


def _inputs(B: int, shape: Shape, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = shape.Dqk ** -0.25  # unit-variance scores: timing is data-independent, NaNs are not
    q = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    k = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    v = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    do = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    return q, k, v, do


def _call(attend, q, k, v, do, pass_: str) -> Callable[[], object]:
    """A zero-argument closure running one forward (no autograd) or forward + backward."""
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                return attend(q, k, v)
        return forward
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]

    def forward_backward():
        for t in leaves:
            t.grad = None  # otherwise later calls add into .grad, an extra pass the first skips
        attend(*leaves).backward(do)
    return forward_backward


def bench_one(name: str, attend, shape: Shape, B: int, dtype: str, device: str, pass_: str,
              warmup: int, repeats: int, device_name: str,
              ) -> dict:
    """One row: timing, derived throughput, memory and roofline share for one combination."""
    q, k, v, do = _inputs(B, shape, DTYPES[dtype], device)
    backward = pass_ == "fwd+bwd"
    flops = attention_flops(B, shape.N, shape.Dqk, shape.Dv, backward=backward)
    nbytes = attention_min_bytes(B, shape.N, shape.Dqk, shape.Dv, q.element_size(), backward)
    row = dict(kernel=name, site=shape.site, pass_=pass_, batch=B, N=shape.N, Dqk=shape.Dqk,
               Dv=shape.Dv, status="ok", median_ms=math.nan, p10_ms=math.nan, p90_ms=math.nan,
               count=0, flops=flops, min_bytes=nbytes, tflops=math.nan, gb_per_s=math.nan,
               roofline_pct=math.nan, peak_extra_mem_bytes=math.nan, mem_method=None,
               backend=None)
    backend_used = getattr(attend, "backend_used", None)  # optional: see the module docstring
    if backend_used is not None:
        row["backend"] = backend_used(*(t.detach().requires_grad_(backward) for t in (q, k, v)))
    fn = _call(attend, q, k, v, do, pass_)
    try:
        seconds = time_calls(fn, device, warmup, repeats)
        row["peak_extra_mem_bytes"], row["mem_method"] = peak_extra_memory(fn, device)
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
        return row
    except Exception as exc:  # one failing kernel/shape must not lose the rest of the table
        row["status"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return row
    median = float(np.median(seconds))
    row.update(median_ms=median * 1e3, p10_ms=float(np.percentile(seconds, 10)) * 1e3,
               p90_ms=float(np.percentile(seconds, 90)) * 1e3, count=len(seconds),
               tflops=flops / median / 1e12, gb_per_s=nbytes / median / 1e9)
    peaks = device_peaks(device_name, dtype)
    if peaks is not None:
        # Roofline: no kernel can beat max(compute time at peak, memory time at peak bandwidth).
        bound = max(flops / peaks[0], nbytes / peaks[1])
        row["roofline_pct"] = 100.0 * bound / median
    return row


def attention_specs() -> dict:
    """name -> AttentionSpec, from the process-wide plugin registry."""
    from ganbench.registry import get_registry

    return get_registry().attention


def run_benchmark(device: str, dtype: str, batch: int, shapes: Sequence[Shape],
                  kernels: Optional[Iterable[str]] = None, repeats: int = 20, warmup: int = 3,
                  specs: Optional[dict] = None,
                  echo: Callable[[str], None] = print) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Benchmark ``kernels`` (default: all registered) on ``shapes``.

    Returns the table (one row per kernel x shape x pass, environment columns included) and
    the (kernel, reason) pairs skipped because the kernel cannot run on ``device``.
    """
    from ganbench.errors import UnknownPluginError
    from ganbench.measure import environment

    specs = attention_specs() if specs is None else specs
    names = list(kernels) if kernels is not None else sorted(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise UnknownPluginError(f"unknown attention kernel(s) {', '.join(unknown)}; "
                                 f"available: {', '.join(sorted(specs))}")
    env = environment(device, dtype)
    attends, skipped = {}, []
    for name in names:
        reason = specs[name].why_unavailable(device)
        if reason is None:
            attends[name] = specs[name].factory()
        else:
            skipped.append((name, reason))
            echo(f"skipping {name}: {reason}")
    rows = []
    # Shape-major, kernels innermost: rows to be compared are measured close together in time,
    # so slow drifts of a shared machine (other jobs, clocks) bias them least.
    for shape in shapes:
        for pass_ in PASSES:
            for name, attend in attends.items():
                row = bench_one(name, attend, shape, batch, dtype, device, pass_, warmup,
                                repeats, env["device_name"])
                echo(f"{name:>13} {shape.site:<16} {pass_:<7} {row['median_ms']:9.3f} ms  "
                     f"{row['status']}")
                rows.append({**row, **env})
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    return df, skipped


# ------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ["kernel", "site", "pass", "batch", "N", "Dqk", "Dv", "median_ms", "p10_ms",
                   "p90_ms", "count", "tflops", "gb_per_s", "roofline_pct",
                   "peak_extra_mem_bytes", "backend", "status"]


def to_markdown(df: pd.DataFrame, header: str = "") -> str:
    """The summary columns as a markdown table, after an optional header paragraph."""
    view = df[[c for c in SUMMARY_COLUMNS if c in df.columns]]
    table = view.to_markdown(index=False, floatfmt=".4g")
    env = df.iloc[0] if len(df) else None
    lines = [header] if header else []
    if env is not None:
        lines.append(f"device: {env['device_name']} ({env['device']}), dtype {env['dtype']}, "
                     f"torch {env['torch_version']}, triton {env['triton_version']}, "
                     f"commit {env['git_commit']}")
        methods = df["mem_method"].dropna().unique()
        lines.append("peak_extra_mem_bytes: " + ("; ".join(methods) if len(methods) else "no row ran"))
    return "\n\n".join(lines + [table]) + "\n"


def plot_times(df: pd.DataFrame, path: Path) -> None:
    """Grouped bars: median time per kernel for each shape, one panel per pass, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["status"] == "ok"]
    fig, axes = plt.subplots(1, len(PASSES), figsize=(12, 4.5), sharey=True)
    kernels = sorted(ok["kernel"].unique())
    sites = list(dict.fromkeys(df["site"]))
    width = 0.8 / max(1, len(kernels))
    for ax, pass_ in zip(axes, PASSES):
        part = ok[ok["pass"] == pass_]
        for i, kernel in enumerate(kernels):
            times = part[part["kernel"] == kernel].set_index("site")["median_ms"]
            xs = [j + i * width for j in range(len(sites))]
            ax.bar(xs, [times.get(s, np.nan) for s in sites], width, label=kernel)
        ax.set_xticks([j + width * (len(kernels) - 1) / 2 for j in range(len(sites))])
        ax.set_xticklabels([f"{s}\nN={n}" for s, n in zip(sites, df.drop_duplicates("site")["N"])],
                           fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{pass_}")
        ax.set_xlabel("attention site (SAGAN on 64x64 digits unless noted)")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("median time per call (ms, log scale)")
    env = df.iloc[0]
    fig.suptitle(f"attention kernels, batch {env['batch']}, {env['dtype']}, {env['device_name']}",
                 fontsize=10)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(df: pd.DataFrame, out_dir: Path, header: str = "") -> dict[str, Path]:
    """attention-bench.{csv,json,md,png} in ``out_dir``; returns the paths by format."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"attention-bench.{ext}" for ext in ("csv", "json", "md", "png")}
    df.to_csv(paths["csv"], index=False)
    df.to_json(paths["json"], orient="records", indent=1)
    paths["md"].write_text(to_markdown(df, header))
    if (df["status"] == "ok").any():
        plot_times(df, paths["png"])
    else:
        del paths["png"]
    return paths
