"""One combination in a fresh process, supervised: whatever happens there becomes a row.

Each combination trains in its own spawned process (unless ``--in-process``): a crash, a CUDA
error or an out-of-memory there becomes a row with status ``failed``/``oom``/``crashed`` and
the sweep goes on, and the CPU peak-memory figure (peak RSS) belongs to that combination alone.

The worker is tied to its parent's life (:func:`tie_to_parent`): it is killed when the parent
dies, however the parent dies, so an orphan can never train on beside a resumed run. Its
checkpoint stays on disk when it crashes or is killed, for ``--resume --retry-failed``.

The worker starts its own session (``setsid``), so it and anything a plugin starts from it
(``os.fork``, ``subprocess``) form one process group, and when the combination ends, however
it ends, the parent kills that group (:func:`end_group`): no process outlives its combination.
A worker that reports no progress for ``--stall-timeout`` seconds (a plugin that hangs) is
stopped the same way; its row is ``failed`` with "stalled at step K". (With ``--in-process``
there is no worker to stop, and no stall timeout.)

Messages from worker to parent, over one multiprocessing queue:

- ``("event", kind, data)``: progress (see :mod:`ganbench.sweep.progress`);
- ``("warning", text)``: a Python warning raised in the worker (the parent shows each once);
- ``("ok", row)``, ``("interrupted",)`` or ``(status, one-line error, traceback)``: the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Optional

from ganbench.config import RunConfig
from ganbench.errors import UserError
from ganbench.sweep.execute import execute, failure_status, one_line
from ganbench.sweep.run_folder import log_failure

PR_SET_PDEATHSIG = 1        # from <linux/prctl.h>
WATCHDOG_PERIOD_S = 0.5     # how often a worker checks that its parent is still there
STOP_GRACE_S = 10           # SIGTERM, then SIGKILL after this long


def _ignore(*args, **kwargs) -> None:
    pass


# ------------------------------------------------------------------------------------------
# Inside the worker
# ------------------------------------------------------------------------------------------
def tie_to_parent(parent_pid: int) -> None:
    """Make this process die with ``parent_pid``.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, the kernel's own guarantee. Everywhere (and in
    case prctl is unavailable): a daemon thread that polls ``os.getppid()`` and kills this
    process once the parent has gone (the process is then re-parented, so its parent pid
    changes). If the parent died before either was in place, exit at once.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_PERIOD_S)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="ganbench-parent-watchdog", daemon=True).start()


@contextlib.contextmanager
def warnings_sent(send: Callable[[str], None]):
    """Within the body, Python warnings are handed to ``send(text)`` instead of printed (the
    parent de-duplicates them over the whole run). The filters stay as they are."""
    def show(message, category, filename, lineno, file=None, line=None):
        send(f"{category.__name__}: {message} ({Path(filename).name}:{lineno})")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _worker(cfg_dict: dict, trial, run_dir: str, metric_names: list[str], queue,
            resume: bool = False, parent_pid: Optional[int] = None) -> None:
    """The spawned process: train, then send ("ok", row), ("interrupted",) or
    (status, one-line error, traceback)."""
    with contextlib.suppress(OSError):  # a group of its own: see end_group
        os.setsid()
    if parent_pid is not None:
        tie_to_parent(parent_pid)
    cfg = RunConfig.from_dict(cfg_dict)

    def report(kind: str, **data) -> None:
        queue.put(("event", kind, data))

    try:
        with warnings_sent(lambda text: queue.put(("warning", text))):
            row = execute(cfg, trial, Path(run_dir), metric_names,
                          fresh_process=True, resume=resume, report=report)
        queue.put(("ok", row))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: not a failed row
        queue.put(("interrupted",))
    except BaseException as exc:  # reported to the parent as a failed (or oom) row
        queue.put((failure_status(exc), one_line(exc), traceback.format_exc()))


# ------------------------------------------------------------------------------------------
# In the parent
# ------------------------------------------------------------------------------------------
def run_one(cfg: RunConfig, trial, run_dir: Path, metric_names: list[str],
            resume: bool = False, report: Callable = _ignore,
            warn: Callable[[str], None] = _ignore) -> dict:
    """The row of one trial (:class:`ganbench.sweep.trials.Trial`: a combination under one
    seed); failures become rows with status (failed, oom, crashed) and error.
    ``report(kind, **data)`` receives the worker's progress, ``warn(text)`` its warnings. A
    KeyboardInterrupt (Ctrl-C, or SIGTERM via :func:`ganbench.sweep.resume.interrupts_reported`)
    stops the worker and propagates: an interrupted combination gets no row."""
    base = trial.identity()
    if not cfg.isolate:
        try:
            with warnings_sent(warn):
                return execute(cfg, trial, run_dir, metric_names, fresh_process=False,
                               resume=resume, report=report)
        except UserError:  # the user's mistake ends the run; a plugin's (PluginError) is a row
            raise
        except Exception as exc:
            log_failure(run_dir, trial.stem, traceback.format_exc())
            status = failure_status(exc)
            if status == "oom":
                _release_cuda_cache()  # so the next combination starts with free memory
            return {**base, "status": status, "error": one_line(exc)}

    report("phase", phase="starting worker")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(cfg.to_dict(), trial,
                                             str(run_dir), metric_names, queue, resume,
                                             os.getpid()),
                       daemon=True)
    proc.start()
    try:
        message = _wait(proc, queue, report, warn, cfg.stall_timeout)
        if message is not None and message[0] == "stalled":
            stop(proc)
        proc.join()
    except BaseException:
        stop(proc)
        raise
    finally:
        left = end_group(proc.pid)
        if left:
            warn(f"{trial.stem}: its worker left {left} process(es) running (a plugin that "
                 "forks or starts programs?); they were killed")
    if message is None:
        return {**base, "status": "crashed", "error": describe_exit(proc.exitcode)}
    if message[0] == "stalled":
        error = stalled_error(*message[1:])
        log_failure(run_dir, trial.stem, error + "\n")
        return {**base, "status": "failed", "error": error}
    if message[0] == "ok":
        return message[1]
    if message[0] == "interrupted":
        raise KeyboardInterrupt
    log_failure(run_dir, trial.stem, message[2])
    return {**base, "status": message[0], "error": message[1]}


def stalled_error(step: int, phase: str, seconds: float) -> str:
    """The row's error for a worker stopped by --stall-timeout."""
    where = f"at step {step}" if phase == "training" else f"at step {step} ({phase})"
    return (f"stalled {where}: no progress for {seconds:g} s (--stall-timeout {seconds:g}); "
            "the worker was stopped")


def _wait(proc, queue, report: Callable, warn: Callable,
          stall_timeout: float = 0) -> Optional[tuple]:
    """Pass on events and warnings until the worker's final message; None if it died first;
    ``("stalled", step, phase, stall_timeout)`` when nothing came for ``stall_timeout``
    seconds (0: wait for ever). The step is the last one the worker reported."""
    step, phase = 0, "starting worker"
    last = time.monotonic()
    poll = 1.0 if not stall_timeout else min(1.0, stall_timeout / 4)
    while True:
        try:
            message = queue.get(timeout=poll)
        except queue_module.Empty:
            if proc.is_alive():
                if stall_timeout and time.monotonic() - last > stall_timeout:
                    return ("stalled", step, phase, stall_timeout)
                continue
            # It may have sent its row just before exiting: read what is left.
            message = _get_nowait(queue)
            while message is not None and message[0] in ("event", "warning"):
                message = _get_nowait(queue)
            return message
        last = time.monotonic()
        if message[0] == "event":
            if message[1] == "step":
                step = int(message[2].get("step", step))
            elif message[1] == "phase":
                phase = str(message[2].get("phase", phase))
            report(message[1], **message[2])
        elif message[0] == "warning":
            warn(message[1])
        else:
            return message


def _get_nowait(queue):
    try:
        return queue.get(timeout=0.5)
    except queue_module.Empty:
        return None


def stop(proc) -> None:
    """Terminate a worker (SIGTERM), then kill it if it has not gone within STOP_GRACE_S."""
    proc.terminate()
    proc.join(STOP_GRACE_S)
    if proc.is_alive():
        proc.kill()
        proc.join()


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (Linux /proc; [] elsewhere)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            if int(fields[2]) == pgid and fields[0] != "Z":  # pgrp, not a zombie
                members.append(int(entry.name))
    return members


def end_group(pgid: int) -> int:
    """Kill every process left in the worker's process group (the worker's pid is its
    id: it called setsid). Returns how many were found. Never this process's own group."""
    if pgid == os.getpgrp():  # the worker could not make a group of its own
        return 0
    left = len(group_members(pgid))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return left


def describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (the system's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"worker was killed by {name} before reporting{hint}"
    return f"worker exited with code {code} before reporting"


def _release_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
