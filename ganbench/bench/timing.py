"""Timing one attention call with the core's tools: the step timer and percentile summary of
``ganbench.training.measure`` and the CUDA-graph capture of ``ganbench.training.graphs``.

What the bench adds is only how many calls a row times (:class:`TimingPolicy`): enough for a
stable median, adaptively, within a cap. Warm-up calls (which include torch.compile's and
Triton's compilation) are not counted; on CUDA calls are timed with CUDA events read after one
synchronise per batch of calls, on the CPU with ``time.perf_counter`` (both: ``StepTimer``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from ganbench.bench import one_line
from ganbench.training import graphs, measure

# How many calls a row times. Measured on the project's loaded 2-core VM (load average 10-12,
# 2026-12): with 3 calls per row, single calls stalled for 9-73 ms where the same call
# otherwise took 0.06-0.3 ms (an OpenMP thread waiting for a descheduled sibling), so a
# 3- or 5-call median can be a stall.
# - MIN_CALLS = 20: with n calls, the distribution-free 95% interval of the median is between
#   order statistics k and n+1-k where P(Binomial(n, 1/2) < k) <= 2.5%; n = 5 has no such
#   interval (the extremes cover 93.75%), n = 20 gives [x(6), x(15)] (95.9%: the 30th to 75th
#   percentile; scipy.stats.binom). With 20 calls p10 and p90 also sit between the 2nd/3rd and
#   18th/19th calls, not on the extremes.
# - MIN_SECONDS = 0.5: a row must span many stalls to let the median step over them rather
#   than be one: 0.5 s is ~10 stalls of 50 ms; fast rows (0.03 ms calls) then time thousands
#   of calls instead of 20 calls in under a millisecond.
# - MAX_CALLS = 5000: the median's 95% interval is then the 48.6th to 51.4th percentile; more
#   calls only add time (and CUDA event pairs) while a shared machine's drift dominates.
# - MAX_SECONDS = 10: bounds a row of slow calls (N = 4096 on a CPU takes seconds per call) to
#   ~10 s of timed calls even when that is fewer than MIN_CALLS; ``count`` says how many.
MIN_CALLS = 20
MIN_SECONDS = 0.5
MAX_CALLS = 5000
MAX_SECONDS = 10.0
GRAPH_WARMUP = 3  # side-stream calls before capture, as in torch's CUDA graphs example


@dataclass(frozen=True)
class TimingPolicy:
    """How a row is timed: ``warmup`` untimed calls, then timed calls until there are at least
    ``min_calls`` of them *and* they add up to at least ``min_seconds``; timing stops earlier
    at ``max_calls`` calls, or before a call that would take the timed seconds past
    ``max_seconds`` at the mean so far, whichever comes first (the caps win over the
    minimums). ValueError for a value out of range."""

    warmup: int = 3
    min_calls: int = MIN_CALLS
    min_seconds: float = MIN_SECONDS
    max_calls: int = MAX_CALLS
    max_seconds: float = MAX_SECONDS

    def __post_init__(self):
        if self.warmup < 0 or self.min_calls < 1 or self.max_calls < 1:
            raise ValueError("warmup must be >= 0, min_calls and max_calls >= 1")
        if not (self.min_seconds >= 0 and self.max_seconds > 0):
            raise ValueError("min_seconds must be >= 0 and max_seconds > 0")

    def calls_to_add(self, seconds: list[float]) -> int:
        """How many more calls to time after ``seconds``, 0 when done. Sized from the mean so
        far, so that one more batch meets both minimums without passing either cap."""
        n, total = len(seconds), float(sum(seconds))
        if n >= self.max_calls or total >= self.max_seconds:
            return 0
        if n >= self.min_calls and total >= self.min_seconds:
            return 0
        if n == 0:
            return 1  # a probe: its time sizes the next batch
        per_call = total / n
        if per_call <= 0:  # a timer too coarse to see the call: only the count can be met
            by_time = self.max_calls
        else:  # - 1e-9: (0.59 - 0.58) / 0.01 is 1.0000000000000009 in floats: 1 call, not 2
            by_time = math.ceil((self.min_seconds - total) / per_call - 1e-9)
        # Calls that fit under max_seconds at the mean so far: none left stops here, below
        # the minimums if need be (a cap, not a target).
        room = (math.floor((self.max_seconds - total) / per_call + 1e-9) if per_call > 0
                else self.max_calls)
        if room < 1:
            return 0
        return max(1, min(max(self.min_calls - n, by_time), self.max_calls - n, room))


def _on(device: str):
    """Work on ``device`` (CUDA: its current stream, put back afterwards even when a failed
    capture leaves torch.cuda.graph's own stream context unexited); nothing off CUDA."""
    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.cuda.device(device))
    stack.enter_context(torch.cuda.stream(torch.cuda.current_stream()))
    return stack


def time_calls(fn: Callable[[], object], device: str, policy: TimingPolicy) -> list[float]:
    """Seconds per timed call of ``fn``, after ``policy.warmup`` untimed calls, as many calls
    as ``policy`` asks for. Timed by the core's :class:`ganbench.training.measure.StepTimer`
    (CUDA events on ``device``'s current stream, else perf_counter)."""
    with _on(device):
        for _ in range(policy.warmup):
            fn()
        timer = measure.StepTimer(device)
        seconds: list[float] = []
        while (more := policy.calls_to_add(seconds)) > 0:
            for _ in range(more):
                timer.start()
                fn()
                timer.stop()
            seconds = timer.seconds()  # CUDA: one synchronise per batch, not per call
        return seconds


def time_graph(fn: Callable[[], object], device: str, policy: TimingPolicy,
               graph_factory: Optional[Callable[[], object]] = None) -> tuple[list[float], str]:
    """(seconds per replay, status) of ``fn`` captured once in a CUDA graph, replays counted
    as ``policy`` says (its warm-up is replaced by :data:`GRAPH_WARMUP` eager calls on a side
    stream and one uncounted replay, which uploads the graph).

    A replay launches the whole captured call with one host call, so its time is the device's
    work without the per-kernel launch gaps that per-call timing includes (at SAGAN's small
    shapes every kernel takes ~0.3-0.8 ms per call on an H100 though its math is microseconds).
    ``fn`` must be capturable: its inputs live on the device and stay alive (the graph replays
    on the same addresses), it makes no host synchronisation, and its backward uses
    ``torch.autograd.grad`` rather than accumulating into ``.grad``.

    Never raises: off CUDA it returns ([], "not on CUDA") unless ``graph_factory`` supplies a
    stand-in graph (CPU tests); a failing warm-up, capture or replay returns
    ([], "capture failed: <the exception's first line>").
    """
    if graph_factory is None and not device.startswith("cuda"):
        return [], "not on CUDA"
    try:
        with _on(device):
            graph = (graph_factory or torch.cuda.CUDAGraph)()

            def warm_up_then_capture():
                # torch.cuda.graph's docs: warm up on a side stream (lazy initialisation must
                # not be captured), here captured on that same stream so the state it set up
                # is the state the capture uses.
                for _ in range(GRAPH_WARMUP):
                    fn()
                stream = torch.cuda.current_stream() if device.startswith("cuda") else None
                graphs.capture(graph, fn, stream=stream)

            graphs.on_side_stream(warm_up_then_capture, device)
            graph.replay()  # the first replay uploads the graph to the device: not counted
            return time_calls(graph.replay, device, replace(policy, warmup=0)), "ok"
    except Exception as exc:  # a kernel that cannot be captured must not lose its row
        return [], one_line("capture failed", exc)


# The core summary's keys -> the bench's columns.
_SUMMARY_COLUMNS = {"step_ms_median": "median_ms", "step_ms_p10": "p10_ms",
                    "step_ms_p90": "p90_ms", "timed_steps": "count"}


def summary(seconds: list[float], prefix: str = "") -> dict:
    """{prefix + "median_ms", "p10_ms", "p90_ms", "count"} of ``seconds``, from the core's
    :func:`ganbench.training.measure.summarize` (the run table's median and percentiles):
    NaNs and 0 for no samples."""
    stats = measure.summarize(list(seconds), batch_size=1)
    return {prefix + column: stats[key] for key, column in _SUMMARY_COLUMNS.items()}


def peak_extra_memory(fn: Callable[[], object], device: str) -> tuple[float, str]:
    """Peak bytes one call allocates beyond what is live before it, and how it was measured."""
    if not device.startswith("cuda"):
        return math.nan, ("not measured: CPU tensor buffers are invisible to tracemalloc, and "
                          "this process's peak RSS is shared by every row of the run")
    with _on(device):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(device)  # the inputs (q, k, v, dO) and older
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated(device) - before), \
            "cuda.max_memory_allocated - memory_allocated before the call (inputs excluded)"
