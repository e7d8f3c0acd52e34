"""Beyond one process, at the process level: the ``--nproc`` shortcut to torchrun and
``--jobs K`` (independent combinations side by side). Standard library only, so the CLI can
exec torchrun without paying for ``import torch`` first.

The training itself under torchrun is in :mod:`ganbench.scaleout.distributed`. Spreading a sweep
over a cluster is left to existing engines (submitit on Slurm, Ray): see
examples/sweep_submitit.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import threading
from typing import Callable, Iterable, Iterator, TypeVar

from ganbench.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

# Set by torchrun (and by any launcher that initialises torch.distributed from the environment).
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or an equivalent env:// launcher) started as a rank."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def check_one_process(cfg) -> None:
    """Options that only mean something under torchrun; raises ConfigError outside it."""
    for flag, on in (("--sync-bn", cfg.sync_bn), ("--scaling", cfg.scaling)):
        if on:
            raise ConfigError(f"{flag} needs several ranks: add --nproc N, or launch with "
                              "torchrun --nproc-per-node N -m ganbench run ...")


# ------------------------------------------------------------------------------------------
# --nproc N: exec torchrun with the same options
# ------------------------------------------------------------------------------------------
def options_argv(args: argparse.Namespace, add_arguments: Callable, drop=("nproc",)) -> list:
    """The options in ``args`` (those differing from their defaults) as a command line that
    ``add_arguments``' parser turns back into the same values; ``drop`` names dests left out.

    Built from the parsed values rather than sys.argv, so it is right however main() was called.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    argv: list[str] = []
    for action in parser._actions:  # argparse has no public list of a parser's options
        if not action.option_strings or action.dest in drop:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)  # the long form
        if action.nargs == 0:  # store_true / store_false / store_const: the flag alone
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def torchrun_command(nproc: int, run_argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m ganbench run ...``.

    ``--standalone``: one machine, a rendezvous on a free local port (no address to choose).
    For several machines, call torchrun yourself with --nnodes and --rdzv-endpoint.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "ganbench", "run", *run_argv]


def check_ranks(cfg, world_size: int, device: str) -> None:
    """Options that need knowing N (and the resolved device); ConfigError, one line."""
    if cfg.batch_size % world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must be "
                          f"divisible by the {world_size} ranks (e.g. --batch-size "
                          f"{max(world_size, cfg.batch_size // world_size * world_size)})")
    if cfg.sync_bn and not device.startswith("cuda"):
        raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm does not run on CPU "
                          "tensors")
    if cfg.scaling and world_size < 2:
        raise ConfigError("--scaling compares 1 rank with N: launch at least 2 ranks")
    if cfg.jobs > 1:
        raise ConfigError("--jobs and --nproc do not combine: under torchrun every rank runs "
                          "the combinations in-process, one after another")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_ranks(device: str) -> tuple[int, str]:
    """(how many ranks fit here, what they are): one per CUDA device, else one per CPU core.

    More ranks than cores only time-slice the same cores (each rank also runs its own intra-op
    threads), and each rank holds a full copy of the models and data: ``--nproc 99`` on two
    cores started 99 ranks and set off the out-of-memory killer."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.device_count(), "CUDA device(s)"
    return usable_cpus(), "CPU core(s) available to this process"


def exec_torchrun(nproc: int, run_argv: list[str], cfg=None):
    """Replace this process with torchrun (signals then reach torchrun, which forwards them to
    every rank). Does not return. ``cfg`` (the validated RunConfig) lets every check that needs
    only the arguments fail here, once, before any rank starts."""
    if launched_by_torchrun():
        raise ConfigError("--nproc inside a torchrun job: torchrun already started the ranks")
    if nproc < 1:
        raise ConfigError(f"--nproc must be a positive integer, got {nproc}")
    if cfg is not None:
        from ganbench.config import resolve_device

        device = resolve_device(cfg.device)
        check_ranks(cfg, nproc, device)
        limit, what = max_ranks(device)
        if nproc > limit:
            raise ConfigError(f"--nproc {nproc} is more than the {limit} {what} here; use "
                              f"--nproc {max(1, limit)} or fewer")
    command = torchrun_command(nproc, run_argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


# ------------------------------------------------------------------------------------------
# --jobs K: independent combinations side by side
# ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def threads_per_job(jobs: int):
    """While K workers run at once, give each cpu_count/K intra-op threads (via
    OMP_NUM_THREADS, read by torch in each freshly spawned worker) instead of letting K workers
    each start cpu_count threads. A value the user set is kept."""
    if jobs <= 1 or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def each_finished(items: Iterable[T], work: Callable[[T], R], jobs: int) -> Iterator[tuple]:
    """Yield (item, work(item)) for every item, running up to ``jobs`` at once.

    jobs == 1: in order, one after another. jobs > 1: in the order they finish; ``work`` runs in
    a daemon thread (it is the runner's run_one, which spawns a worker process and waits on it,
    so threads only wait). Daemon threads because an interrupted parent must not wait for them:
    on exit multiprocessing terminates the daemon workers they are waiting on. An exception in
    ``work`` is re-raised here.
    """
    items = list(items)
    if jobs <= 1:
        for item in items:
            yield item, work(item)
        return
    done: "queue.Queue[tuple]" = queue.Queue()

    def target(item):
        try:
            done.put((item, work(item), None))
        except BaseException as exc:  # handed to the consuming thread
            done.put((item, None, exc))

    pending, running = list(items), 0
    with threads_per_job(jobs):
        while pending or running:
            while pending and running < jobs:
                threading.Thread(target=target, args=(pending.pop(0),), daemon=True).start()
                running += 1
            item, result, error = done.get()
            running -= 1
            if error is not None:
                raise error
            yield item, result
