"""Data-parallel training under torchrun: one process per rank, each combination in-process.

``torchrun --nproc-per-node N -m ganbench run ...`` (or ``ganbench run --nproc N ...``, which
execs exactly that) starts N processes that each run the whole sweep (:mod:`ganbench.scaleout.ranks`);
:class:`DataParallel` is what :func:`ganbench.sweep.execute.execute` asks for
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
    exactly once, as the sum over both calls (tests/scaleout/test_distributed.py checks it equals the
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
  already written stay (the table is rewritten atomically after each combination), and so does
  the combination's last checkpoint: ``--resume RUN_DIR --nproc N`` continues it.
- Checkpoints: every rank holds the same models, optimisers and shuffle, so rank 0 alone
  writes, adding every rank's noise-stream state (:meth:`DataParallel.whole_state`); every
  rank loads the same file and takes its own stream (:meth:`DataParallel.own_part`).
- ``--scaling``: before each combination's N-rank run, rank 0 trains it alone (no DDP) with the
  same per-rank batch while the others wait; that row goes to ``scaling-1rank/``, and the N-rank
  row gets ``img_per_s_1rank`` and ``scaling_efficiency = img_per_s / (N * img_per_s_1rank)``
  (weak scaling: each device does the same work in both; 1.0 is perfect).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganbench.errors import ConfigError
from ganbench.scaleout.grad_sync import first_nonfinite, grad_sync_off  # noqa: F401  (re-exported)
from ganbench.training.loop import Batches

NOISE_STRIDE = 1000           # rank r's noise seed offset (train() seeds z with seed + 1)
CONTROL_TIMEOUT = timedelta(hours=6)   # how long ranks may wait for rank 0 working alone
BASELINE_DIR = "scaling-1rank"         # --scaling: the 1-rank rows and artifacts
DUMP_ENV = "GANBENCH_REPLICA_DUMP"     # debug: each rank saves its final G/D state here


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

    def whole_state(self, state: dict) -> dict:
        """The checkpoint to save from this process's training state (called on every rank)."""
        return state

    def own_part(self, state: dict) -> dict:
        """This process's training state from a loaded checkpoint."""
        return state


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

    def whole_state(self, state):
        """Checkpoints under torchrun: the ranks hold the same models, optimisers, shuffle and
        global RNG (DDP keeps them equal), but each its own noise stream (seed + NOISE_STRIDE *
        rank). Rank 0 saves its state plus every rank's noise state, so a resume continues
        each stream where it was and the losses match an uninterrupted run."""
        box = [None] * self.world_size
        dist.all_gather_object(box, state["rng_noise"], group=self.control)
        return {**state, "rng_noise_by_rank": torch.stack(box)}

    def own_part(self, state):
        by_rank = state.get("rng_noise_by_rank")
        if by_rank is None or len(by_rank) != self.world_size:
            saved = 1 if by_rank is None else len(by_rank)
            raise ConfigError(f"this checkpoint was written by {saved} rank(s), and this run "
                              f"has {self.world_size}; resume with --nproc {saved}")
        return {**state, "rng_noise": by_rank[self.rank].clone()}  # set_state needs its own storage

    def barrier(self) -> None:
        dist.barrier(group=self.control)

    def share(self, value):
        """Rank 0's ``value`` on every rank (a small picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]
