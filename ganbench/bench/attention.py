"""Micro-benchmark of every available attention kernel at SAGAN's attention shapes.

For each kernel (from the plugin registry, plus any ``--variant`` built with other factory
options), shape and pass (forward; forward + backward) it records:

* timing: the median time with p10/p90 and the count, per call (CUDA events or perf_counter)
  and, on CUDA, per replay of one call captured in a CUDA graph (``graph_*``), which removes
  the host's launch gaps that dominate SAGAN's small shapes;
* throughput: TFLOP/s and GB/s from the cost model in ``kernels/attention/reference.py``, and
  the share of the device's roofline bound reached, with which term bounds it (``bound``:
  matmul FLOPs, memory bytes or softmax exponentials), where the device's peaks are known;
* accuracy: the relative error of o (and dq, dk, dv) against ``attend_reference`` in float64
  on fresh inputs; a row over its dtype's limit (:data:`ACCURACY_LIMITS`) keeps its timings
  and gets the status "inaccurate: ...";
* peak extra memory, the backend that ran where a kernel can say (``attend.backend_used(q, k,
  v)``: sdpa-attn reports SDPA's flash/efficient/cuDNN/math choice), and the environment.

Timing follows docs/measurement.md: warm-up calls (with torch.compile's and Triton's compilation)
are not counted; on CUDA each call is timed with CUDA events and read after one synchronise;
on the CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from ganbench.kernels.attention.reference import (attend_reference, attention_exps,
                                                   attention_flops, attention_min_bytes)


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


# ------------------------------------------------------------------------------------------
# Device peaks and the roofline
# ------------------------------------------------------------------------------------------
class Peaks(NamedTuple):
    """A device's peak rates: FLOP/s for the dtype, bytes/s of memory, exponentials/s."""

    flops: float
    bandwidth: float
    exps: float


# Dense peak FLOP/s per dtype, peak memory bandwidth and special-function (exp) rate, keyed by
# a substring of torch.cuda.get_device_name(); the first match wins, so the more specific names
# come first.
# FLOP/s and bandwidth: NVIDIA H100 and H200 Tensor Core GPU datasheets (SXM form factors:
# bf16/fp16 dense 989 TFLOP/s, fp32 non-tensor 67 TFLOP/s, HBM3 3.35 TB/s on H100, HBM3e
# 4.8 TB/s on H200; H100 PCIe: 756 TFLOP/s bf16 dense, 51 TFLOP/s fp32, 2.0 TB/s). fp32 uses the
# non-tensor-core peak because the kernels here run fp32 without TF32 (torch's default for
# matmul, and triton-attn's input_precision="ieee").
# exp rate: the softmax's exponentials run on the SM's special-function units, not the tensor
# cores, whatever the dtype. FlashAttention-3 (Shah et al. 2024, sec. 3): "H100 SXM5 has 989
# TFLOPS of FP16 matmul but only 3.9 TFLOPS of special functions". H200 is the same GH100 chip
# with the same tensor peaks (so the same SMs and clocks) and faster memory: 3.9e12. H100 PCIe
# scales by SMs x boost clock:
# 3.9e12 * (114 SMs * 1.755 GHz) / (132 SMs * 1.98 GHz) = 3.9e12 * 200.1 / 261.4 = 2.99e12,
# consistent with the ratio of the datasheets' tensor peaks (756 / 989 * 3.9e12 = 2.98e12).
H100_SXM_EXPS = 3.9e12
H100_PCIE_EXPS = 3.0e12
DEVICE_PEAKS = (
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}, 2.0e12, H100_PCIE_EXPS),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 3.35e12, H100_SXM_EXPS),
    ("H200", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 4.8e12, H100_SXM_EXPS),
)


def device_peaks(device_name: str, dtype: str) -> Optional[Peaks]:
    """The :class:`Peaks` of a known device for ``dtype``, else None."""
    for key, flops, bandwidth, exps in DEVICE_PEAKS:
        if key in device_name:
            return Peaks(flops[dtype], bandwidth, exps)
    return None


def roofline(flops: float, nbytes: float, exps: float,
             peaks: Optional[Peaks]) -> tuple[float, Optional[str]]:
    """(seconds, bound): the fewest seconds any kernel needs, and which term sets it.

    No kernel can beat the slowest of its matmuls at peak FLOP/s, its memory traffic at peak
    bandwidth and its exponentials at the special-function rate (the three units overlap at
    best, so the bound is their max, not their sum). ``bound`` is "matmul", "memory" or "exp".
    SAGAN's Dqk is 8 at N = 1024 and 4096, so per score a 16-bit kernel does 2*(8 + 64) = 144
    tensor-core FLOPs (0.15 ns on an H100 SXM) but one exp (0.26 ns): the exps bound it.
    Unknown device (``peaks`` None): (NaN, None).
    """
    if peaks is None:
        return math.nan, None
    terms = {"matmul": flops / peaks.flops, "memory": nbytes / peaks.bandwidth,
             "exp": exps / peaks.exps}
    bound = max(terms, key=terms.get)
    return terms[bound], bound


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------
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


GRAPH_WARMUP = 3  # side-stream calls before capture, as in torch's CUDA graphs example


def time_graph(fn: Callable[[], object], device: str, repeats: int) -> tuple[list[float], str]:
    """(seconds per replay, status) of ``fn`` captured once in a CUDA graph.

    A replay launches the whole captured call with one host call, so its time is the device's
    work without the per-kernel launch gaps that per-call timing includes (at SAGAN's small
    shapes every kernel takes ~0.3-0.8 ms per call on an H100 though its math is microseconds).
    ``fn`` must be capturable: its inputs live on the device and stay alive (the graph replays
    on the same addresses), it makes no host synchronisation, and its backward uses
    ``torch.autograd.grad`` rather than accumulating into ``.grad``.

    Never raises: on the CPU it returns ([], "not on CUDA"); a failing warm-up, capture or
    replay returns ([], "capture failed: <the exception's first line>").
    """
    if not device.startswith("cuda"):
        return [], "not on CUDA"
    try:
        # The outer stream context puts the caller's stream back even when a failed capture
        # leaves torch.cuda.graph's own stream context unexited (its __exit__ raises first).
        with torch.cuda.device(device), torch.cuda.stream(torch.cuda.current_stream()):
            # torch.cuda.graph's docs: warm up on a side stream first (lazy initialisation,
            # e.g. cuBLAS workspaces and autograd's per-stream state, must not be captured);
            # capture on that same stream so what it initialised is what the capture uses.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP):
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = _capture(fn, side)
            graph.replay()  # the first replay uploads the graph to the device: not counted
            events = [(torch.cuda.Event(enable_timing=True),
                       torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
            for start, end in events:  # replay() launches on the current stream, as do events
                start.record()
                graph.replay()
                end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end) / 1e3 for start, end in events], "ok"
    except Exception as exc:  # a kernel that cannot be captured must not lose its row
        return [], _one_line("capture failed", exc)


def _capture(fn: Callable[[], object], stream) -> "torch.cuda.CUDAGraph":
    """One call of ``fn`` captured on ``stream``. Raises ``fn``'s own exception when ``fn``
    fails: that also invalidates the capture, and capture_end's error would hide the cause."""
    graph, failure = torch.cuda.CUDAGraph(), None
    try:
        with torch.cuda.graph(graph, stream=stream):
            try:
                fn()
            except Exception as exc:
                failure = exc
    except Exception:
        if failure is None:
            raise
    if failure is not None:
        raise failure
    return graph


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


def _one_line(prefix: str, exc: BaseException) -> str:
    return f"{prefix}: {type(exc).__name__}: {exc}".splitlines()[0][:200]


def _inputs(B: int, shape: Shape, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = shape.Dqk ** -0.25  # unit-variance scores: timing is data-independent, NaNs are not
    q = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    k = (torch.randn(B, shape.N, shape.Dqk, generator=g) * s).to(device, dtype)
    v = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    do = torch.randn(B, shape.N, shape.Dv, generator=g).to(device, dtype)
    return q, k, v, do


def _call(attend, q, k, v, do, pass_: str) -> Callable[[], object]:
    """A zero-argument closure running one forward (no autograd) or forward + backward.

    The backward is ``torch.autograd.grad``, which returns dq, dk, dv instead of accumulating
    into ``.grad``: every call does the same work, and the closure can be captured in a CUDA
    graph (:func:`time_graph`) as it is timed per call. ``allow_unused``: a kernel ignoring an
    input is timed anyway; the accuracy check is what catches it.
    """
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                return attend(q, k, v)
        return forward
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]

    def forward_backward():
        return torch.autograd.grad(attend(*leaves), leaves, do, allow_unused=True)
    return forward_backward


def _percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """(median, p10, p90) in milliseconds; NaNs when there are no samples."""
    if not seconds:
        return math.nan, math.nan, math.nan
    return tuple(float(np.percentile(seconds, p)) * 1e3 for p in (50, 10, 90))


# ------------------------------------------------------------------------------------------
# Accuracy against the float64 reference
# ------------------------------------------------------------------------------------------
# Relative Frobenius error ||x - ref|| / ||ref|| allowed per input dtype, for o and for each of
# dq, dk, dv. Measured with eager attention against the float64 reference on all five SAGAN
# shapes (B = 2, seed 1, CPU): fp32 1.7e-7..5.0e-7; fp32 with TF32-rounded matmul operands
# (10-bit mantissa, unit roundoff 4.9e-4) 3.3e-4..6.4e-4; fp16 3.6e-4..7.9e-4; bf16
# 2.7e-3..6.5e-3. A masking or indexing bug (a dropped key, a wrong row) gives errors of order 1.
ACCURACY_LIMITS = {
    # 200x above fp32 arithmetic, 3x below the smallest TF32 error: a kernel silently using
    # TF32 for fp32 inputs is a finding (the fp32 peaks above assume it does not).
    "fp32": 1e-4,
    # 16-bit operands: fp16 rounds to 11 significant bits, bf16 to 8 (8x coarser); the limits
    # leave ~10x over the measured errors for a kernel that rounds P or dS once more than eager.
    "fp16": 1e-2,
    "bf16": 5e-2,
}
ACCURACY_SEED = 1   # fresh inputs: not the timing inputs (seed 0)
# The float64 reference runs this many batch elements at a time: its N x N matrices are then
# 268 MB each at N = 4096 whatever the benchmark's batch (64 at once would be 8.6 GB each).
ACCURACY_CHUNK = 2
GRADS = ("dq", "dk", "dv")


@dataclass(frozen=True)
class AccuracyCase:
    """Inputs (q, k, v, dO in the benchmark's dtype) and the float64 answers for them."""

    inputs: tuple
    o: torch.Tensor
    grads: tuple  # dq, dk, dv


def accuracy_case(shape: Shape, batch: int, dtype: str, device: str) -> AccuracyCase:
    """Fresh inputs at the benchmark's ``batch`` and ``attend_reference``'s o, dq, dk, dv for
    them in float64 on ``device``, computed :data:`ACCURACY_CHUNK` batch elements at a time.

    The kernel is checked at the batch it was timed at, so a kernel specialised per shape
    (torch.compile, Triton) is not compiled again for the check. The reference takes the
    inputs after rounding to ``dtype``, so the error measured is the kernel's arithmetic, not
    the rounding of its inputs.
    """
    q, k, v, do = _inputs(batch, shape, DTYPES[dtype], device, seed=ACCURACY_SEED)
    outs, grads = [], []
    for start in range(0, batch, ACCURACY_CHUNK):
        part = slice(start, start + ACCURACY_CHUNK)
        leaves = [t[part].detach().double().requires_grad_() for t in (q, k, v)]
        o = attend_reference(*leaves)
        grads.append(torch.autograd.grad(o, leaves, do[part].double()))
        outs.append(o.detach())
    return AccuracyCase((q, k, v, do), torch.cat(outs),
                        tuple(torch.cat(g) for g in zip(*grads)))


def relative_error(x: Optional[torch.Tensor], ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| (Frobenius) in float64; inf where ``x`` has a NaN or inf.

    ``x`` None (a gradient autograd found unused) counts as zeros. A shape other than
    ``ref``'s is a ValueError, not a broadcast.
    """
    if x is None:
        x = torch.zeros_like(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shape {tuple(x.shape)}, expected {tuple(ref.shape)}")
    x = x.detach().double()
    if not bool(torch.isfinite(x).all()):
        return math.inf
    num, den = float(torch.linalg.vector_norm(x - ref)), float(torch.linalg.vector_norm(ref))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def measure_accuracy(attend, case: AccuracyCase, backward: bool) -> dict[str, float]:
    """{"o": err} for the forward, or {"o", "dq", "dk", "dv": err} for forward + backward.

    The kernel gets copies of the inputs: ``case`` is shared by every kernel at this shape, and
    one writing into its inputs must not change what the next one is checked on.
    """
    q, k, v, do = (t.clone() for t in case.inputs)
    if not backward:
        with torch.no_grad():
            return {"o": relative_error(attend(q, k, v), case.o)}
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    o = attend(*leaves)
    grads = torch.autograd.grad(o, leaves, do, allow_unused=True)
    errors = {"o": relative_error(o, case.o)}
    errors.update({name: relative_error(g, ref)
                   for name, g, ref in zip(GRADS, grads, case.grads)})
    return errors


def _check_accuracy(row: dict, attend, case: Callable[[], AccuracyCase], dtype: str) -> None:
    """Fill the rel_err_* columns; a row over the limit, or a failing check, gets a status."""
    try:
        errors = measure_accuracy(attend, case(), backward=row["pass_"] == "fwd+bwd")
    except Exception as exc:  # the timings stand; the row says why it has no errors
        row["status"] = _one_line("accuracy check failed", exc)
        return
    for name, err in errors.items():
        row[f"rel_err_{name}"] = err
    worst = max(errors, key=errors.get)
    row["rel_err_max"] = errors[worst]
    limit = ACCURACY_LIMITS[dtype]
    if not errors[worst] <= limit:
        row["status"] = f"inaccurate: rel err {errors[worst]:.3g} > limit {limit:g} ({worst})"


# ------------------------------------------------------------------------------------------
# One row
# ------------------------------------------------------------------------------------------
def _empty_row(name: str, shape: Shape, B: int, pass_: str, flops: float, nbytes: float,
               exps: float) -> dict:
    """A row with every column, before anything is measured (NaN/None: not measured)."""
    nan = math.nan
    return dict(kernel=name, site=shape.site, pass_=pass_, batch=B, N=shape.N, Dqk=shape.Dqk,
                Dv=shape.Dv, status="ok", median_ms=nan, p10_ms=nan, p90_ms=nan, count=0,
                graph_median_ms=nan, graph_p10_ms=nan, graph_p90_ms=nan,
                graph_status="not run: per-call timing failed",
                flops=flops, min_bytes=nbytes, exps=exps, tflops=nan, gb_per_s=nan,
                roofline_pct=nan, bound=None, rel_err_o=nan, rel_err_dq=nan, rel_err_dk=nan,
                rel_err_dv=nan, rel_err_max=nan, peak_extra_mem_bytes=nan, mem_method=None,
                backend=None)


def bench_one(name: str, attend, shape: Shape, B: int, dtype: str, device: str, pass_: str,
              warmup: int, repeats: int, device_name: str,
              case: Optional[Callable[[], AccuracyCase]] = None) -> dict:
    """One row for one kernel x shape x pass: per-call and CUDA-graph timing, throughput,
    roofline share and bound, peak memory, accuracy.

    Never raises for a kernel's failure: an exception while timing gives the status "error:
    ..." (or "out of memory") and NaN measurements; a failing CUDA-graph capture only sets
    ``graph_status``; an accuracy check that fails or exceeds :data:`ACCURACY_LIMITS` sets the
    status and keeps the timings. ``case`` returns the accuracy inputs and float64 answers for
    ``shape`` (run_benchmark shares one per shape between kernels); default: computed here.
    """
    q, k, v, do = _inputs(B, shape, DTYPES[dtype], device)
    backward = pass_ == "fwd+bwd"
    flops = attention_flops(B, shape.N, shape.Dqk, shape.Dv, backward=backward)
    nbytes = attention_min_bytes(B, shape.N, shape.Dqk, shape.Dv, q.element_size(), backward)
    exps = attention_exps(B, shape.N, backward=backward)
    row = _empty_row(name, shape, B, pass_, flops, nbytes, exps)
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
        row["status"] = _one_line("error", exc)
        return row
    median, p10, p90 = _percentiles_ms(seconds)
    row.update(median_ms=median, p10_ms=p10, p90_ms=p90, count=len(seconds),
               tflops=flops / (median / 1e3) / 1e12, gb_per_s=nbytes / (median / 1e3) / 1e9)
    graph_seconds, row["graph_status"] = time_graph(fn, device, repeats)
    row["graph_median_ms"], row["graph_p10_ms"], row["graph_p90_ms"] = \
        _percentiles_ms(graph_seconds)
    bound_seconds, row["bound"] = roofline(flops, nbytes, exps, device_peaks(device_name, dtype))
    row["roofline_pct"] = 100.0 * bound_seconds / (median / 1e3)
    _check_accuracy(row, attend, case or (lambda: accuracy_case(shape, B, dtype, device)), dtype)
    return row


# ------------------------------------------------------------------------------------------
# Which kernels, built how
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelRun:
    """One kernel configuration: rows labelled ``label`` in the kernel column, built with
    ``factory(**options)`` of the registered kernel ``spec``, available where it is."""

    label: str
    spec: str
    options: dict = field(default_factory=dict)


# A comma starts the next KEY=VALUE only where "KEY=" follows it, so a JSON value can hold
# commas: "k:sizes=[64,128],mode=x" is sizes=[64, 128] and mode="x".
_NEXT_OPTION = re.compile(r",(?=\s*[A-Za-z_][\w-]*\s*=)")


def parse_variant(text: str) -> KernelRun:
    """'triton-attn:backward=atomic' -> KernelRun('triton-attn:backward=atomic', 'triton-attn',
    {'backward': 'atomic'}); several options are comma-separated.

    Values are read as ``--option``'s are (``ganbench.config.parse_options``): JSON where they
    parse (3, 0.5, true), else text. Bad syntax is a ConfigError; whether the kernel exists is
    checked by :func:`plan_kernels`.
    """
    from ganbench.config import parse_options
    from ganbench.errors import ConfigError
    from ganbench.specs import NAME_PATTERN

    kernel, sep, rest = text.partition(":")
    kernel = kernel.strip()
    items = [item.strip() for item in _NEXT_OPTION.split(rest)] if rest.strip() else []
    pairs = [item.partition("=") for item in items]
    if not (sep and NAME_PATTERN.match(kernel) and pairs
            and all(eq and key.strip() for key, eq, _ in pairs)):
        raise ConfigError(f"--variant takes KERNEL:KEY=VALUE[,KEY=VALUE...] (e.g. "
                          f"triton-attn:backward=atomic), got {text!r}")
    options = parse_options([f"{kernel}.{item}" for item in items])[kernel]
    label = kernel + ":" + ",".join(f"{key.strip()}={value.strip()}" for key, _, value in pairs)
    return KernelRun(label, kernel, options)


def _unique_known(runs: Iterable[KernelRun], specs: dict) -> list[KernelRun]:
    """``runs`` in order, each label once (a label fixes the options, so a kernel or variant
    named twice runs once); UnknownPluginError for a run of no registered kernel."""
    from ganbench.errors import UnknownPluginError

    unique: dict[str, KernelRun] = {}
    for run in runs:
        unique.setdefault(run.label, run)
    unknown = list(dict.fromkeys(r.spec for r in unique.values() if r.spec not in specs))
    if unknown:
        raise UnknownPluginError(f"unknown attention kernel(s) {', '.join(unknown)}; "
                                 f"available: {', '.join(sorted(specs))}")
    return list(unique.values())


def plan_kernels(kernels: Optional[Sequence[str]] = None, options: Optional[dict] = None,
                 variants: Sequence[KernelRun] = (), specs: Optional[dict] = None,
                 ) -> list[KernelRun]:
    """The configurations ``bench attention`` runs: each of ``kernels`` (default: every
    registered one) built with its entry of ``options`` ({kernel: {key: value}}, from
    ``--option``), then each of ``variants`` (from ``--variant``) with its own options only.

    ConfigError where ``options`` names a kernel not in ``kernels`` (a variant takes its options
    in its own text); UnknownPluginError for a kernel not registered.
    """
    from ganbench.errors import ConfigError

    specs = attention_specs() if specs is None else specs
    names = list(kernels) if kernels is not None else sorted(specs)
    options = options or {}
    stray = [name for name in options if name not in names]
    if stray:
        raise ConfigError(f"--option {stray[0]}.…: {stray[0]} is not among the kernels "
                          f"benchmarked ({', '.join(names)}); for another configuration of a "
                          f"kernel use --variant KERNEL:KEY=VALUE")
    runs = [KernelRun(name, name, dict(options.get(name, {}))) for name in names]
    return _unique_known(runs + list(variants), specs)


def build_attend(run: KernelRun, spec):
    """``spec.factory(**run.options)``; a TypeError or ValueError from a factory given options
    (an unknown option, a bad value) becomes a one-line ConfigError naming kernel and options."""
    from ganbench.errors import ConfigError

    try:
        return spec.factory(**run.options)
    except (TypeError, ValueError) as exc:
        if not run.options:
            raise  # not the user's doing: a broken plugin keeps its traceback
        given = ", ".join(f"{key}={value!r}" for key, value in run.options.items())
        raise ConfigError(f"{run.label}: {spec.name} rejected option(s) {given}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from exc


# ------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------
def attention_specs() -> dict:
    """name -> AttentionSpec, from the process-wide plugin registry."""
    from ganbench.registry import get_registry

    return get_registry().attention


def run_benchmark(device: str, dtype: str, batch: int, shapes: Sequence[Shape],
                  kernels: Optional[Iterable[Union[str, KernelRun]]] = None, repeats: int = 20,
                  warmup: int = 3, specs: Optional[dict] = None,
                  echo: Callable[[str], None] = print,
                  ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Benchmark ``kernels`` on ``shapes``.

    ``kernels``: registered names (built with no options) or :class:`KernelRun` entries (from
    :func:`plan_kernels`); default: every registered kernel. Every factory is called before
    anything is timed, so a rejected option fails fast (ConfigError, see :func:`build_attend`).
    Returns the table (one row per configuration x shape x pass, ``options`` as JSON and the
    environment columns included) and the (label, reason) pairs skipped because the kernel
    cannot run on ``device``.
    """
    from ganbench.training.measure import environment

    specs = attention_specs() if specs is None else specs
    names = kernels if kernels is not None else sorted(specs)
    runs = _unique_known((k if isinstance(k, KernelRun) else KernelRun(k, k) for k in names),
                         specs)
    env = environment(device, dtype)
    attends, skipped = [], []
    for run in runs:
        reason = specs[run.spec].why_unavailable(device)  # a variant: its base kernel's answer
        if reason is None:
            attends.append((run, build_attend(run, specs[run.spec])))
        else:
            skipped.append((run.label, reason))
            echo(f"skipping {run.label}: {reason}")
    rows = []
    # Shape-major, kernels innermost: rows to be compared are measured close together in time,
    # so slow drifts of a shared machine (other jobs, clocks) bias them least.
    for shape in shapes:
        # One float64 reference per shape, shared by every kernel and both passes.
        case = functools.cache(functools.partial(accuracy_case, shape, batch, dtype, device))
        for pass_ in PASSES:
            for run, attend in attends:
                row = bench_one(run.label, attend, shape, batch, dtype, device, pass_, warmup,
                                repeats, env["device_name"], case=case)
                echo(_progress_line(row))
                rows.append({**row, "options": json.dumps(run.options, sort_keys=True), **env})
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    return df, skipped


def _progress_line(row: dict) -> str:
    graph = "" if math.isnan(row["graph_median_ms"]) else f" (graph {row['graph_median_ms']:.3f})"
    return (f"{row['kernel']:>13} {row['site']:<16} {row['pass_']:<7} {row['median_ms']:9.3f} ms"
            f"{graph}  err {row['rel_err_max']:8.1e}  {row['status']}")


# ------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ["kernel", "site", "pass", "batch", "N", "Dqk", "Dv", "median_ms", "p10_ms",
                   "p90_ms", "graph_median_ms", "count", "tflops", "gb_per_s", "roofline_pct",
                   "bound", "rel_err_max", "peak_extra_mem_bytes", "backend", "status"]
# Left out first when the table must fit a terminal (the file and --all-columns keep them).
DROPPABLE = ["Dqk", "Dv", "batch", "p10_ms", "p90_ms", "count", "gb_per_s", "backend", "bound"]
JSON_KIND = "ganbench-bench-attention"  # ganbench.results.compare.BENCH_KIND reads this format


def _notes(df: pd.DataFrame) -> list[str]:
    """One line per derived column saying how it was measured, from the table itself."""
    env = df.iloc[0]
    lines = [f"device: {env['device_name']} ({env['device']}), dtype {env['dtype']}, "
             f"torch {env['torch_version']}, triton {env['triton_version']}, "
             f"commit {env['git_commit']}"]
    methods = df["mem_method"].dropna().unique()
    lines.append("extra MiB (peak_extra_mem_bytes): " + ("; ".join(methods) if len(methods)
                                                         else "no row ran"))
    if "graph_status" in df and df["graph_median_ms"].notna().any():
        note = ("graph ms: per replay of one call captured in a CUDA graph (no host "
                "launch gaps)")
        failed = df[df["graph_status"] != "ok"]
        if len(failed):
            reasons = failed.groupby("graph_status", sort=False)["kernel"].unique()
            note += "; not measured: " + "; ".join(f"{', '.join(kernels)} ({reason})"
                                                   for reason, kernels in reasons.items())
        lines.append(note)
    if "bound" in df and df["bound"].notna().any():
        lines.append("% roofline: 100 * max(FLOPs / peak FLOP/s, min bytes / bandwidth, exps / "
                     "exp rate) / median time; bound: the largest term")
    elif "bound" in df:
        lines.append("% roofline and bound: not shown, the peaks of this device are unknown")
    if "rel_err_max" in df and env["dtype"] in ACCURACY_LIMITS:
        lines.append("rel err: max ||x - ref|| / ||ref|| over o (fwd) or o, dq, dk, dv "
                     "(fwd+bwd) against attend_reference in float64 on fresh inputs; limit for "
                     f"{env['dtype']}: "
                     f"{ACCURACY_LIMITS[env['dtype']]:g}")
    return lines


def _shown(df: pd.DataFrame, columns: Optional[Sequence[str]]) -> list[str]:
    """The requested columns, or the summary ones that have a value in some row (on the CPU
    the CUDA-graph, roofline and bound columns are empty: left out)."""
    from ganbench.results.table import non_empty

    if columns:
        return [c for c in columns if c in df.columns]
    return non_empty(df, SUMMARY_COLUMNS)


def to_markdown(df: pd.DataFrame, header: str = "",
                columns: Optional[Sequence[str]] = None) -> str:
    """The summary columns (those with values) as a markdown table with units in the headers,
    after an optional header paragraph and notes on how the columns were measured: the text
    of attention-bench.md."""
    from ganbench.results.table import render

    table = render(df, _shown(df, columns)) if len(df) else "(no rows)"
    lines = [header] if header else []
    if len(df):
        lines += _notes(df)
    return "\n\n".join(lines + [table]) + "\n"


def to_text(df: pd.DataFrame, columns: Optional[Sequence[str]] = None,
            width: Optional[int] = None) -> str:
    """The table for a terminal: notes, then the columns fitted to ``width`` (secondary columns
    left out first, named in a note)."""
    from ganbench.results.table import render

    if not len(df):
        return "(no rows)"
    table = render(df, _shown(df, columns), width=width, style="simple",
                   droppable=() if columns else DROPPABLE, keys=["kernel", "site", "pass"])
    return "\n".join(_notes(df) + ["", table])


def to_json(df: pd.DataFrame, settings: Optional[dict] = None) -> str:
    """The bench JSON (``attention-bench.json``, ``bench attention --json``):
    ``{"kind": "ganbench-bench-attention", "settings": {...}, "rows": [...]}``, one row per
    kernel x site x pass with every column, missing values null. ``ganbench compare`` and
    ``ganbench report`` read it; rows are keyed by kernel, site and pass."""
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    return json.dumps({"kind": JSON_KIND, "settings": dict(settings or {}), "rows": records},
                      indent=1, default=str) + "\n"


def check_out_dir(out_dir: Path) -> None:
    """Refuse (ConfigError, exit 2) an ``--out`` that is an existing file, or a folder that
    already holds a bench's results: nothing is overwritten. Called before any timing."""
    from ganbench.errors import ConfigError

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is an existing file; bench attention writes a "
                          "folder: choose a new folder name")
    existing = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out {out_dir}: {existing} is a file, not a folder")
    taken = [p.name for p in sorted(out_dir.glob("attention-bench.*"))] if out_dir.is_dir() else []
    if taken:
        raise ConfigError(f"--out {out_dir} already holds {', '.join(taken)}; choose another "
                          "folder (nothing was overwritten)")


def plot_times(df: pd.DataFrame, path: Path) -> None:
    """Grouped bars: median time per kernel for each shape, one panel per pass, log scale.

    Every row with a timing is drawn; a kernel with an inaccurate row says so in the legend.
    Where CUDA-graph replay times exist, each bar carries a black mark at that time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = df[df["median_ms"].notna()]
    fig, axes = plt.subplots(1, len(PASSES), figsize=(12, 4.5), sharey=True)
    kernels = sorted(timed["kernel"].unique())
    inaccurate = set(timed[timed["status"].str.startswith("inaccurate")]["kernel"])
    sites = list(dict.fromkeys(df["site"]))
    width = 0.8 / max(1, len(kernels))
    drew_graph = False
    for ax, pass_ in zip(axes, PASSES):
        part = timed[timed["pass"] == pass_]
        for i, kernel in enumerate(kernels):
            times = part[part["kernel"] == kernel].set_index("site")["median_ms"]
            xs = [j + i * width for j in range(len(sites))]
            label = kernel + (" (inaccurate)" if kernel in inaccurate else "")
            ax.bar(xs, [times.get(s, np.nan) for s in sites], width, label=label)
            # CUDA only: the graph-replay time as a black bar inside the per-call one; the gap
            # between them is host launch overhead.
            graph = part[part["kernel"] == kernel].set_index("site").get("graph_median_ms")
            if graph is not None and graph.notna().any():
                ax.scatter(xs, [graph.get(s, np.nan) for s in sites], marker="_", s=120,
                           color="black", zorder=3,
                           label="CUDA-graph replay" if not drew_graph else None)
                drew_graph = True
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
    for ax in axes:  # the graph mark's legend entry may sit on either panel
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(df: pd.DataFrame, out_dir: Path, header: str = "",
                  settings: Optional[dict] = None) -> dict[str, Path]:
    """attention-bench.{csv,json,md,png} in ``out_dir`` (csv and json: every column, the json
    in :func:`to_json`'s format; md: the summary columns); returns the paths by format. No png
    when no row has a timing. Each file is written atomically."""
    from ganbench.files.atomic import write_text as atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"attention-bench.{ext}" for ext in ("csv", "json", "md", "png")}
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["json"], to_json(df, settings))
    atomic_write_text(paths["md"], to_markdown(df, header))
    if df["median_ms"].notna().any():
        plot_times(df, paths["png"])
    else:
        del paths["png"]
    return paths
