"""Micro-benchmark of every available attention kernel at SAGAN's attention shapes: the rows.

For each kernel (from the plugin registry, plus any ``--variant`` built with other factory
options), shape and pass (forward; forward + backward) a row records:

* timing: the median time with p10/p90 and the count, per call and, on CUDA, per replay of one
  call captured in a CUDA graph (``graph_*``), which removes the host's launch gaps that
  dominate SAGAN's small shapes; timed with the core's timer, capture and summary, as many calls
  as :class:`~ganbench.bench.timing.TimingPolicy` asks (see ``timing.py``);
* throughput: TFLOP/s and GB/s from the cost model in ``kernels/attention/reference.py``, and
  the share of the device's roofline bound reached, with which term bounds it (``bound``:
  matmul FLOPs, memory bytes or softmax exponentials), where the device's peaks are known;
* accuracy: the relative error of o (and dq, dk, dv) against ``attend_reference`` in float64
  on fresh inputs; a row over its dtype's limit keeps its timings and gets the status
  "inaccurate: ..." (``accuracy.py``);
* peak extra memory, the backend that ran where a kernel can say (``attend.backend_used(q, k,
  v)``: sdpa-attn reports SDPA's flash/efficient/cuDNN/math choice), and the environment;
* ``suspect``: set on a forward row slower than its own forward + backward, which cannot be a
  real cost (recompilation or load during the forward's timing); see ``suspect.py``.

The table, notes and files are in ``output.py``, the chart in ``figure.py``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from typing import Callable, Iterable, Optional, Sequence, Union

import pandas as pd
import torch

from ganbench.bench import one_line, plan
from ganbench.bench.accuracy import AccuracyCase, accuracy_case, check_accuracy
# ``report`` (and any older caller) reaches the bench's outputs through this module too.
from ganbench.bench.output import to_json, to_text, write_outputs  # noqa: F401
from ganbench.bench.plan import KernelRun, build_attend, unique_known
from ganbench.bench.progress import BenchProgress
from ganbench.bench.roofline import device_peaks, roofline
from ganbench.bench.shapes import DTYPES, PASSES, Shape, make_call, make_inputs
from ganbench.bench.suspect import suspect_flags
from ganbench.bench.timing import (TimingPolicy, peak_extra_memory, summary, time_calls,
                                   time_graph)
from ganbench.kernels.attention.reference import (attention_exps, attention_flops,
                                                   attention_min_bytes)


def _empty_row(name: str, shape: Shape, B: int, pass_: str, flops: float, nbytes: float,
               exps: float) -> dict:
    """A row with every column, before anything is measured (NaN/None: not measured)."""
    nan = math.nan
    return dict(kernel=name, site=shape.site, pass_=pass_, batch=B, N=shape.N, Dqk=shape.Dqk,
                Dv=shape.Dv, status="ok", median_ms=nan, p10_ms=nan, p90_ms=nan, count=0,
                graph_median_ms=nan, graph_p10_ms=nan, graph_p90_ms=nan, graph_count=0,
                graph_status="not run: per-call timing failed",
                flops=flops, min_bytes=nbytes, exps=exps, tflops=nan, gb_per_s=nan,
                roofline_pct=nan, bound=None, rel_err_o=nan, rel_err_dq=nan, rel_err_dk=nan,
                rel_err_dv=nan, rel_err_max=nan, peak_extra_mem_bytes=nan, mem_method=None,
                backend=None, suspect=None)


def bench_one(name: str, attend, shape: Shape, B: int, dtype: str, device: str, pass_: str,
              policy: TimingPolicy, device_name: str,
              case: Optional[Callable[[], AccuracyCase]] = None,
              doing: Callable[[str], None] = lambda _: None) -> dict:
    """One row for one kernel x shape x pass: per-call and CUDA-graph timing, throughput,
    roofline share and bound, peak memory, accuracy.

    Never raises for a kernel's failure: an exception while timing gives the status "error:
    ..." (or "out of memory") and NaN measurements; a failing CUDA-graph capture only sets
    ``graph_status``; an accuracy check that fails or exceeds the dtype's limit sets the
    status and keeps the timings. ``case`` returns the accuracy inputs and float64 answers for
    ``shape`` (run_benchmark shares one per shape between kernels); default: computed here.
    ``doing`` hears each phase as it starts ("warm-up", "timing", "CUDA graph", ...).
    """
    q, k, v, do = make_inputs(B, shape, DTYPES[dtype], device)
    backward = pass_ == "fwd+bwd"
    flops = attention_flops(B, shape.N, shape.Dqk, shape.Dv, backward=backward)
    nbytes = attention_min_bytes(B, shape.N, shape.Dqk, shape.Dv, q.element_size(), backward)
    exps = attention_exps(B, shape.N, backward=backward)
    row = _empty_row(name, shape, B, pass_, flops, nbytes, exps)
    backend_used = getattr(attend, "backend_used", None)  # optional: see the module docstring
    if backend_used is not None:
        row["backend"] = backend_used(*(t.detach().requires_grad_(backward) for t in (q, k, v)))
    fn = make_call(attend, q, k, v, do, pass_)
    try:
        doing(f"{policy.warmup} warm-up call(s), compiling if the kernel does")
        for _ in range(policy.warmup):
            fn()
        doing("timing")
        seconds = time_calls(fn, device, replace(policy, warmup=0))
        doing("peak memory")
        row["peak_extra_mem_bytes"], row["mem_method"] = peak_extra_memory(fn, device)
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
        return row
    except Exception as exc:  # one failing kernel/shape must not lose the rest of the table
        row["status"] = one_line("error", exc)
        return row
    row.update(summary(seconds))
    median_s = row["median_ms"] / 1e3
    row.update(tflops=flops / median_s / 1e12, gb_per_s=nbytes / median_s / 1e9)
    if device.startswith("cuda"):
        doing("CUDA-graph capture and replays")
    graph_seconds, row["graph_status"] = time_graph(fn, device, policy)
    row.update(summary(graph_seconds, prefix="graph_"))
    bound_seconds, row["bound"] = roofline(flops, nbytes, exps, device_peaks(device_name, dtype))
    row["roofline_pct"] = 100.0 * bound_seconds / median_s
    doing("accuracy against the float64 reference")
    check_accuracy(row, attend, case or (lambda: accuracy_case(shape, B, dtype, device)), dtype)
    return row


def run_benchmark(device: str, dtype: str, batch: int, shapes: Sequence[Shape],
                  kernels: Optional[Iterable[Union[str, KernelRun]]] = None,
                  policy: TimingPolicy = TimingPolicy(), specs: Optional[dict] = None,
                  progress: Optional[BenchProgress] = None,
                  ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Benchmark ``kernels`` on ``shapes``, each row timed as ``policy`` says.

    ``kernels``: registered names (built with no options) or :class:`KernelRun` entries (from
    :func:`~ganbench.bench.plan.plan_kernels`); default: every registered kernel. Every factory
    is called before anything is timed, so a rejected option fails fast (ConfigError).
    ``progress`` hears the plan, each phase and each finished row (default: silent).
    Returns the table (one row per configuration x shape x pass, ``options`` as JSON, the
    ``suspect`` flags and the environment columns included) and the (label, reason) pairs
    skipped because the kernel cannot run on ``device``.
    """
    from ganbench.training.measure import environment

    progress = progress or BenchProgress(quiet=True)
    specs = plan.attention_specs() if specs is None else specs
    names = kernels if kernels is not None else sorted(specs)
    runs = unique_known((k if isinstance(k, KernelRun) else KernelRun(k, k) for k in names),
                        specs)
    progress.doing("reading the environment")
    env = environment(device, dtype)
    attends, skipped = [], []
    for run in runs:
        reason = specs[run.spec].why_unavailable(device)  # a variant: its base kernel's answer
        if reason is None:
            progress.doing(f"building {run.label}")
            attends.append((run, build_attend(run, specs[run.spec])))
        else:
            skipped.append((run.label, reason))
            progress.line(f"skipping {run.label}: {reason}")
    total = len(attends) * len(shapes) * len(PASSES)
    progress.start(total, f"bench attention: {len(attends)} kernel(s) x {len(shapes)} "
                          f"shape(s) x {len(PASSES)} passes = {total} rows on {device} "
                          f"({dtype}, batch {batch}); per row {policy.warmup} warm-up call(s), "
                          f"then >= {policy.min_calls} calls and >= {policy.min_seconds:g} s "
                          f"(at most {policy.max_calls} calls or {policy.max_seconds:g} s)")
    rows = []
    # Shape-major, kernels innermost: rows to be compared are measured close together in time,
    # so slow drifts of a shared machine (other jobs, clocks) bias them least.
    for shape in shapes:
        # One float64 reference per shape, shared by every kernel and both passes.
        case = functools.cache(functools.partial(accuracy_case, shape, batch, dtype, device))
        for pass_ in PASSES:
            for run, attend in attends:
                where = f"{run.label} {shape.site} {pass_}"
                row = bench_one(run.label, attend, shape, batch, dtype, device, pass_, policy,
                                env["device_name"], case=case,
                                doing=lambda phase, where=where: progress.doing(
                                    f"{where}: {phase}"))
                rows.append({**row, "options": json.dumps(run.options, sort_keys=True), **env})
                progress.row(row)
    df = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    if len(df):
        df["suspect"] = suspect_flags(df)
        for record in df[df["suspect"].notna()].to_dict("records"):
            progress.line(f"suspect: {record['kernel']} {record['site']} fwd: "
                          f"{record['suspect']}")
    return df, skipped
