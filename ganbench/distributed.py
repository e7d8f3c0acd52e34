"""Data-parallel training under torchrun: one process per rank, each combination in-process.

``torchrun --nproc-per-node N -m ganbench run ...`` (or ``ganbench run --nproc N ...``, which
execs exactly that) starts N processes that each run the whole sweep. :func:`run_ranks` replaces
the runner's loop there; :class:`DataParallel` is what :func:`ganbench.runner.execute` asks for
the few things that differ from one process (:class:`OneProcess` is the default, a no-op).

The contract, and why each choice was made:

- Process group: initialised from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR/PORT): nccl on CUDA with rank r on ``cuda:LOCAL_RANK``, gloo on the CPU.
- Batch: ``--batch-size`` is the *global* batch per step; each rank trains on batch/N images
  (N must divide it). Holding the global batch fixed means the same command at 1 or N ranks
  solves the same problem (same batch, same learning rates), so quality columns stay comparable.
- Data: :class:`ShardedBatches`. Every rank walks the same seeded shuffle in global batches and
  keeps its own contiguous slice, so within an epoch the ranks' shards are disjoint and at every
  step their union is exactly the batch one process would draw with ``--batch-size`` B.
- Noise: rank r seeds its z stream with ``seed + NOISE_STRIDE * r`` so ranks make different
  fakes (identical z on every rank would just repeat one rank's fakes N times). Results are
  reproducible for a given (seed, N); they are not identical across different N.
- Models: G and D are each wrapped in DistributedDataParallel with its defaults
  (``find_unused_parameters=False``, ``broadcast_buffers=True``).
  * The D step calls D twice (fake, then real) before one backward. That is correct under DDP:
    each forward only re-arms the reducer, and autograd sums a parameter's two uses in its single
    AccumulateGrad node, whose hook fires once per backward, so each gradient is all-reduced
    exactly once, as the sum over both calls (tests/test_distributed.py checks it equals the
    full-batch gradient). We keep two calls rather than concatenating real and fake so the step
    matches the one-process step (spectral norm does one power iteration per call in both).
  * ``fake`` is detached, so the D backward never reaches G: G's reducer is armed by that
    forward but none of its hooks fire, and nothing waits on them.
  * The G step backpropagates through D as well. Those D gradients are thrown away (opt_d clears
    them before the next D backward), so D runs under ``no_sync`` there (:func:`grad_sync_off`)
    to skip an all-reduce as large as D.
  * Buffers: DDP broadcasts rank 0's buffers before every forward. That covers spectral norm's
    u/v (equal on every rank anyway, because the weights are) and BatchNorm's running stats
    (rank 0's). In training BatchNorm normalises with per-rank statistics (batch/N images);
    ``--sync-bn`` converts it to SyncBatchNorm (global-batch statistics, as one process with the
    whole batch). torch's SyncBatchNorm rejects CPU tensors, so ``--sync-bn`` needs CUDA. After
    training rank 0's buffers are broadcast once more, so every replica ends equal to rank 0's.
- Timing: a synchronous step lasts as long as its slowest rank, so each step's time is the max
  over ranks (one all-reduce after training); images/s = global batch / median step.
- Writing: only rank 0 writes (tables, samples, models, metrics) and prints. The others wait at a
  barrier on a gloo "control" group with a long timeout: waiting while rank 0 works alone is
  expected there, and NCCL's watchdog (10 minutes by default) would otherwise kill the job.
- Failures: an exception ends that rank's process and torchrun stops the others; the rows
  already written stay (the table is rewritten atomically after each combination).
- ``--scaling``: before each combination's N-rank run, rank 0 trains it alone (no DDP) with the
  same per-rank batch while the others wait; that row goes to ``scaling-1rank/``, and the N-rank
  row gets ``img_per_s_1rank`` and ``scaling_efficiency = img_per_s / (N * img_per_s_1rank)``
  (weak scaling: each device does the same work in both; 1.0 is perfect).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganbench.errors import ConfigError

NOISE_STRIDE = 1000           # rank r's noise seed offset (train() seeds z with seed + 1)
CONTROL_TIMEOUT = timedelta(hours=6)   # how long ranks may wait for rank 0 working alone
BASELINE_DIR = "scaling-1rank"         # --scaling: the 1-rank rows and artifacts
DUMP_ENV = "GANBENCH_REPLICA_DUMP"     # debug: each rank saves its final G/D state here


# ------------------------------------------------------------------------------------------
# Hooks the training loop calls (no-ops unless the module is wrapped in DDP)
# ------------------------------------------------------------------------------------------
def _ddp(module: nn.Module) -> Optional[DistributedDataParallel]:
    inner = getattr(module, "_orig_mod", module)  # look through torch.compile's wrapper
    return inner if isinstance(inner, DistributedDataParallel) else None


def grad_sync_off(module: nn.Module):
    """Context for a forward whose parameter gradients will be discarded: ``no_sync`` under DDP
    (the backward then all-reduces nothing for this module), nothing otherwise."""
    ddp = _ddp(module)
    return ddp.no_sync() if ddp is not None else contextlib.nullcontext()


def first_nonfinite(losses: torch.Tensor, model: nn.Module) -> Optional[int]:
    """Index of the first row of ``losses`` (steps, k) holding a NaN/inf, or None.

    When ``model`` is DDP-wrapped the answer is agreed over its replicas (the earliest bad row on
    any rank), so every rank stops at the same step; were each rank to decide alone, one could
    leave the loop while the others wait in their next all-reduce forever.
    """
    bad = (~torch.isfinite(losses)).reshape(len(losses), -1).any(dim=1)
    first = int(bad.nonzero()[0]) if bool(bad.any()) else len(losses)
    ddp = _ddp(model)
    if ddp is not None:
        agreed = torch.tensor([first], device=losses.device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=ddp.process_group)
        first = int(agreed)
    return first if first < len(losses) else None


# ------------------------------------------------------------------------------------------
# What execute() asks: one process (default) or one rank of N
# ------------------------------------------------------------------------------------------
class ShardedBatches:
    """Rank ``rank``'s share of the one-process batches.

    Every rank walks ``Batches(images, global_batch, seed)`` (the same seeded shuffle on every
    rank) and keeps slice ``rank`` of each global batch: ``batch_size = global_batch / world``
    images. Shards are disjoint within an epoch; their union at each step is the global batch.
    """

    def __init__(self, images: torch.Tensor, global_batch: int, seed: int, rank: int,
                 world_size: int):
        from ganbench.train import Batches  # here, not at the top: train imports this module

        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size}")
        self.walk = Batches(images, global_batch, seed)
        self.batch_size = global_batch // world_size
        self._lo = rank * self.batch_size

    def next(self) -> torch.Tensor:
        return self.walk.next()[self._lo:self._lo + self.batch_size]

    def state(self) -> dict:  # checkpoints: the shared walk is the whole state
        return self.walk.state()

    def load_state(self, state: dict) -> None:
        self.walk.load_state(state)


class OneProcess:
    """The default: this process trains alone; every hook leaves things as they are."""

    rank = 0
    world_size = 1
    is_rank0 = True

    def batches(self, images: torch.Tensor, global_batch: int, seed: int):
        from ganbench.train import Batches

        return Batches(images, global_batch, seed)

    def wrap(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        return G, D

    def noise_seed(self, seed: int) -> int:
        return seed

    def step_seconds(self, seconds: list[float]) -> list[float]:
        return seconds

    def on_rank0(self, fn: Callable) -> Callable:
        return fn

    def finish(self, G: nn.Module, D: nn.Module, name: str) -> None:
        pass

    def columns(self, global_batch: int) -> dict:
        return {"world_size": 1}


class DataParallel(OneProcess):
    """One rank of a torchrun job (see the module docstring for the contract)."""

    def __init__(self, device: str, sync_bn: bool = False):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.is_rank0 = self.rank == 0
        self.device = device
        self.sync_bn = sync_bn
        self.backend = dist.get_backend()
        self.control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)

    @classmethod
    def start(cls, device: str, sync_bn: bool = False) -> "DataParallel":
        """Initialise the default process group from torchrun's environment; ``device`` is the
        resolved run device ('cpu' or 'cuda'), each rank's own GPU is picked here."""
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
            dist.init_process_group("nccl", device_id=torch.device(device))
        else:
            dist.init_process_group("gloo")
        return cls(device, sync_bn)

    def batches(self, images, global_batch, seed):
        return ShardedBatches(images, global_batch, seed, self.rank, self.world_size)

    def wrap(self, G, D):
        """DDP(G), DDP(D). The caller keeps using G and D themselves for sampling and saving:
        DDP trains those very modules, and convert_sync_batchnorm swaps BatchNorm children in
        place (the architectures' roots are never a BatchNorm)."""
        if self.sync_bn:
            G = nn.SyncBatchNorm.convert_sync_batchnorm(G)
            D = nn.SyncBatchNorm.convert_sync_batchnorm(D)
        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return (DistributedDataParallel(G, device_ids=ids),
                DistributedDataParallel(D, device_ids=ids))

    def noise_seed(self, seed):
        return seed + NOISE_STRIDE * self.rank

    def step_seconds(self, seconds):
        times = torch.tensor(seconds, dtype=torch.float64, device=self.device)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        return times.tolist()

    def on_rank0(self, fn):
        """Run ``fn`` (an evaluation) on rank 0 only; the others wait at the control barrier,
        not inside a training collective, so the wait is not charged to a timed step."""
        def call(*args, **kwargs):
            result = fn(*args, **kwargs) if self.is_rank0 else {}
            self.barrier()
            return result
        return call

    def finish(self, G, D, name):
        """Make every replica equal rank 0's (buffers too); in debug, dump each rank's state."""
        with torch.no_grad():
            for module in (G, D):
                for buf in module.buffers():
                    dist.broadcast(buf, src=0)
        folder = os.environ.get(DUMP_ENV)
        if folder:
            state = {f"G.{k}": v.detach().cpu() for k, v in G.state_dict().items()}
            state.update({f"D.{k}": v.detach().cpu() for k, v in D.state_dict().items()})
            Path(folder).mkdir(parents=True, exist_ok=True)
            torch.save(state, Path(folder) / f"{name}.rank{self.rank}.pt")

    def columns(self, global_batch):
        return {"world_size": self.world_size, "per_rank_batch": global_batch // self.world_size,
                "ddp_backend": self.backend, "sync_bn": self.sync_bn}

    def barrier(self) -> None:
        dist.barrier(group=self.control)

    def share(self, value):
        """Rank 0's ``value`` on every rank (a small picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]


# ------------------------------------------------------------------------------------------
# The sweep on every rank
# ------------------------------------------------------------------------------------------
def check(cfg, world_size: int) -> None:
    """Options that need knowing N; raises ConfigError (every rank raises the same)."""
    if cfg.batch_size % world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must be "
                          f"divisible by the {world_size} ranks")
    if cfg.sync_bn and not cfg.device.startswith("cuda"):
        raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm does not run on CPU "
                          "tensors")
    if cfg.scaling and world_size < 2:
        raise ConfigError("--scaling compares 1 rank with N: launch at least 2 ranks")
    if cfg.jobs > 1:
        raise ConfigError("--jobs runs combinations side by side in one process tree; under "
                          "torchrun each rank already runs them in-process, one after another")


def scaling_columns(row: dict, baseline: dict, world_size: int) -> dict:
    """img_per_s_1rank and scaling_efficiency = img_per_s / (N * img_per_s_1rank)."""
    one = baseline.get("img_per_s", float("nan")) if baseline.get("status") == "ok" else \
        float("nan")
    many = row.get("img_per_s", float("nan")) if row.get("status") == "ok" else float("nan")
    return {"img_per_s_1rank": one, "scaling_efficiency": many / (world_size * one)}


def run_ranks(cfg, echo=print, resume: bool = False):
    """The sweep on this rank: every combination, in order, with DDP; rank 0 writes.

    Returns (run folder, DataFrame) on rank 0 and (run folder, None) on the others.
    """
    from ganbench.config import resolve_device

    if resume:
        raise ConfigError("--resume under torchrun is not supported yet: checkpoints are per "
                          "process; rerun the unfinished combinations with --plugins")

    rep = DataParallel.start(resolve_device(cfg.device), cfg.sync_bn)
    try:
        return _sweep(rep, cfg, echo if rep.is_rank0 else (lambda *a, **k: None))
    finally:
        dist.destroy_process_group()


def _sweep(rep: DataParallel, cfg, echo):
    from ganbench import runner
    from ganbench.results import atomic_write_text, summary_markdown, write_table

    cfg, combos, notes, metric_names, data = runner.plan(cfg)  # same checks on every rank
    check(cfg, rep.world_size)
    if getattr(cfg, "checkpoint_every", 0):
        # Checkpoints are one process's state; N ranks would all write the same file. Resume of
        # a torchrun job is not supported yet, so they are off here.
        notes = notes + ["checkpoints are off under torchrun (resume is per process)"]
        cfg = dataclasses.replace(cfg, checkpoint_every=0)
    cfg = dataclasses.replace(cfg, device=rep.device)
    run_dir = None
    if rep.is_rank0:
        run_dir = runner.prepare_run_dir(cfg.out or runner.default_run_dir(cfg))
        if cfg.scaling:
            runner.prepare_run_dir(run_dir / BASELINE_DIR)
    run_dir = rep.share(run_dir)  # the folder name has a timestamp: rank 0's wins
    cfg = dataclasses.replace(cfg, out=run_dir)
    if rep.is_rank0:
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    for note in notes:
        echo(f"note: {note}")
    rows: list[dict] = []
    baselines: list[dict] = []
    df = None
    one_rank = dataclasses.replace(cfg, batch_size=cfg.batch_size // rep.world_size)
    for combo in combos:
        if cfg.scaling:
            if rep.is_rank0:  # alone, no DDP, the per-rank batch: the single-device figure
                baselines.append(runner.execute(one_rank, combo, run_dir / BASELINE_DIR, [],
                                                fresh_process=False))
                write_table(baselines, run_dir / BASELINE_DIR)
            rep.barrier()
        row = runner.execute(cfg, combo, run_dir, metric_names, fresh_process=False,
                             replicas=rep)
        if rep.is_rank0:
            if cfg.scaling:
                row.update(scaling_columns(row, baselines[-1], rep.world_size))
            rows.append(row)
            df = write_table(rows, run_dir)
            if row.get("status") != "ok":
                echo(f"{combo.name}: {row.get('status')}: {row.get('error', '')}")
        rep.barrier()  # the next DDP construction is a collective: start it together
    if metric_names and rep.is_rank0:
        rows.append(runner.reference_row(cfg, data, metric_names))
        df = write_table(rows, run_dir)
    if df is not None:
        echo(summary_markdown(df))
        echo(f"\nresults: {run_dir}")
    rep.barrier()
    return run_dir, df
