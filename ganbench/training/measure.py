"""How numbers are taken: step timers, peak memory, and the environment every row carries.

Rules (docs/measurement.md): warm-up steps are not counted; CUDA work is timed with CUDA events,
so the host never waits inside the loop and the figure is device time; we report the median
with p10/p90 and the count, and images/s = batch / median step.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch


class StepTimer:
    """Times steps; CUDA via events (read once at the end), CPU via perf_counter."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self._events: list[tuple] = []
        self._cpu: list[float] = []
        self._t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._pending = ev
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._pending, end))
        else:
            self._cpu.append(time.perf_counter() - self._t0)

    def seconds(self) -> list[float]:
        """All recorded step times in seconds (synchronises CUDA once)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000.0 for a, b in self._events]
        return list(self._cpu)


def summarize(seconds: list[float], batch_size: int) -> dict:
    """Median, p10, p90 (ms), count and images/s of the timed steps."""
    if not seconds:
        return {"step_ms_median": float("nan"), "step_ms_p10": float("nan"),
                "step_ms_p90": float("nan"), "timed_steps": 0, "img_per_s": float("nan")}
    arr = np.asarray(seconds) * 1000.0
    median = float(np.median(arr))
    return {"step_ms_median": median,
            "step_ms_p10": float(np.percentile(arr, 10)),
            "step_ms_p90": float(np.percentile(arr, 90)),
            "timed_steps": int(arr.size),
            "img_per_s": batch_size / (median / 1000.0)}


def _proc_status(field: str) -> Optional[int]:
    """A 'kB' field of /proc/self/status in bytes (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of one combination.

    CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats (tensor bytes the
    caching allocator handed out). CPU: tracemalloc cannot see tensor buffers, so we read the
    process's peak resident set (VmHWM). It is clean only in a fresh process per combination
    (the default): ``fresh`` records whether this process was fresh. ``peak_mem_bytes`` is
    the peak; ``peak_mem_delta_bytes`` subtracts the resident set before the models were built
    (interpreter, torch and data), which is the part the combination itself added.
    """

    def __init__(self, device: str, fresh: bool):
        self.cuda = device.startswith("cuda")
        self.fresh = fresh
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = _proc_status("VmRSS") or 0

    def read(self) -> dict:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            method = "cuda.max_memory_allocated"
        else:
            peak = _proc_status("VmHWM")
            if peak is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
                import resource

                scale = 1 if platform.system() == "Darwin" else 1024
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            method = "cpu.peak_rss(VmHWM)" + (", fresh process" if self.fresh else
                                              ", shared process: includes earlier work")
        return {"peak_mem_bytes": int(peak), "peak_mem_delta_bytes": int(max(0, peak - self.base)),
                "mem_method": method}


def _loadavg() -> Optional[float]:
    """The 1-minute load average (runnable and waiting threads, ours included), or None."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def _cpu_jiffies() -> Optional[tuple[int, int]]:
    """(steal, total) jiffies of all CPUs since boot from /proc/stat (Linux), else None.
    Steal: time this virtual machine's CPUs wanted to run but the hypervisor ran another
    guest (field 8 of the "cpu" line, proc(5))."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    values = [int(v) for v in fields[1:]]
    # guest and guest_nice (fields 9-10) are already counted in user and nice: leave them out
    return values[7], sum(values[:8])


def _run_queue() -> Optional[tuple[float, float]]:
    """(seconds on a CPU, seconds runnable but waiting for one), summed over this process's
    threads, from /proc/self/task/*/schedstat (Linux, schedstats; sched-stats.rst), else None.
    The wait is the direct measure of contention: a thread that waits was ready to run and
    another process had its core."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return None
    on_cpu = waiting = 0
    found = False
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
            on_cpu += int(fields[0])
            waiting += int(fields[1])
            found = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return (on_cpu / 1e9, waiting / 1e9) if found else None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LoadMonitor:
    """How busy the machine was while a combination trained, for the row (issue 22: a run on
    a loaded machine showed SAGAN faster than DCGAN and nothing said so).

    Columns: ``load_avg_start`` / ``load_avg_end`` (1-minute load average; our own threads
    count in it), ``cores`` (usable), ``cpu_s`` (this process's CPU time, all threads) and
    ``cpu_per_wall`` (cpu_s over the wall time: about ``torch_threads`` when the worker had
    its cores to itself, less when it waited for them), ``steal_pct`` (share of all CPUs'
    time the hypervisor gave to other guests, from /proc/stat; None where not available).
    Read :meth:`columns` once, after training.
    """

    def __init__(self):
        self.load_start = _loadavg()
        self.jiffies = _cpu_jiffies()
        self.queue = _run_queue()
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def columns(self) -> dict:
        wall = time.perf_counter() - self.wall0
        cpu = time.process_time() - self.cpu0
        steal = wait = None
        now = _cpu_jiffies()
        if self.jiffies is not None and now is not None and now[1] > self.jiffies[1]:
            steal = 100.0 * (now[0] - self.jiffies[0]) / (now[1] - self.jiffies[1])
        queue = _run_queue()
        if self.queue is not None and queue is not None:
            ran, waited = queue[0] - self.queue[0], queue[1] - self.queue[1]
            wait = waited / (ran + waited) if ran + waited > 0 else None
        return {"load_avg_start": self.load_start, "load_avg_end": _loadavg(),
                "cores": usable_cores(), "cpu_s": cpu,
                "cpu_per_wall": cpu / wall if wall > 0 else None,
                "cpu_wait_share": wait, "steal_pct": steal}


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> Optional[str]:
    """The ganbench checkout's commit (with '+dirty' if it has local changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cpus)"


def environment(device: str, dtype: str) -> dict:
    """The columns every row carries so a number can be traced to where it came from."""
    return {
        "device": device,
        "device_name": device_name(device),
        "dtype": dtype,
        "torch_version": torch.__version__,
        "triton_version": _version("triton"),
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    }
