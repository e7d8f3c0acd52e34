"""The sweep on every rank of a torchrun job: the one sweep loop (:mod:`ganbench.sweep.loop`)
with :class:`RankStrategy`.

Each rank plans the same run and trains every trial in-process with DDP
(:mod:`ganbench.scaleout.distributed`), one after another. Rank 0 alone holds the run folder's
lock, writes (config.json, checkpoints, tables, artifacts) and prints; a check that fails on
rank 0 is shared with the others so every rank stops with the same one-line error.

Checkpoints and ``--resume`` work as in one process: rank 0 saves every rank's state it needs
(:meth:`DataParallel.whole_state`) and every rank loads the same file. config.json records the
world size; a resume on a different number of ranks is refused with the ``--nproc`` that fits.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import torch.distributed as dist

from ganbench.errors import UserError
from ganbench.results.store import write_table
from ganbench.scaleout.distributed import BASELINE_DIR, DataParallel
from ganbench.scaleout.pool import check_ranks
from ganbench.sweep import run_folder
from ganbench.sweep.execute import execute
from ganbench.sweep.loop import in_order, sweep
from ganbench.sweep.plan import Plan


def check(cfg, world_size: int) -> None:
    """Options that need knowing N (ConfigError; every rank raises the same)."""
    check_ranks(cfg, world_size, cfg.device)


def scaling_columns(row: dict, baseline: dict, world_size: int) -> dict:
    """img_per_s_1rank and scaling_efficiency = img_per_s / (N * img_per_s_1rank)."""
    one = baseline.get("img_per_s", float("nan")) if baseline.get("status") == "ok" else \
        float("nan")
    many = row.get("img_per_s", float("nan")) if row.get("status") == "ok" else float("nan")
    return {"img_per_s_1rank": one, "scaling_efficiency": many / (world_size * one)}


def run_ranks(cfg, echo=print, resume: bool = False, retry_failed: bool = False,
              force: bool = False):
    """The sweep on this rank: every trial, in order, with DDP; rank 0 writes.

    Returns (run folder, DataFrame) on rank 0 and (run folder, None) on the others.
    """
    from ganbench.config import resolve_device
    from ganbench.sweep.worker import tie_to_parent

    tie_to_parent(os.getppid())  # a rank must not outlive the torchrun agent that started it
    rep = DataParallel.start(resolve_device(cfg.device), cfg.sync_bn)
    try:
        return sweep(cfg, RankStrategy(rep), echo, resume, retry_failed, force)
    finally:
        dist.destroy_process_group()


class RankStrategy:
    """This rank's part in the sweep: ``rep`` (a :class:`DataParallel`, or any object with its
    rank, world_size, is_rank0, device, barrier and share) trains each trial with the others;
    rank 0 writes. With ``--scaling``, rank 0 first trains each trial alone (no DDP, the
    per-rank batch) while the others wait; those rows go to ``scaling-1rank/``."""

    def __init__(self, rep):
        self.rep = rep
        self.is_writer = rep.is_rank0
        self.world_size = rep.world_size
        self.baselines: list[dict] = []

    def prepare(self, plan: Plan, resume: bool) -> Plan:
        check(plan.cfg, self.world_size)
        world = plan.cfg.world_size if resume else self.world_size  # resume: checked on open
        return dataclasses.replace(plan, cfg=dataclasses.replace(
            plan.cfg, device=self.rep.device, world_size=world))

    def on_writer(self, work: Callable):
        """``work()`` on rank 0, its result on every rank; a UserError there is raised on
        every rank (the others would otherwise wait for rank 0 forever)."""
        result, error = None, None
        if self.rep.is_rank0:
            try:
                result = work()
            except UserError as exc:
                error = str(exc)
        result, error = self.rep.share((result, error))
        if error is not None:
            raise UserError(error)
        return result

    def opened(self, run_dir: Path, plan: Plan) -> None:
        if plan.cfg.scaling:
            run_folder.prepare(run_dir / BASELINE_DIR)

    def each_finished(self, trials: list, work: Callable):
        # The barrier after each recorded row: the next DDP construction is a collective, so
        # the ranks start it together.
        return in_order(trials, work, self.rep.barrier)

    def run_trial(self, plan: Plan, trial, run_dir: Path, resume: bool, report: Callable,
                  warn: Callable) -> dict:
        cfg, rep = plan.cfg, self.rep
        if cfg.scaling:
            if rep.is_rank0:  # alone, no DDP, the per-rank batch: one device's figure
                one_rank = dataclasses.replace(cfg, batch_size=cfg.batch_size // rep.world_size,
                                               checkpoint_every=0, world_size=1)
                self.baselines.append(execute(one_rank, trial, run_dir / BASELINE_DIR, [],
                                              fresh_process=False))
                write_table(self.baselines, run_dir / BASELINE_DIR)
            rep.barrier()
        row = execute(cfg, trial, run_dir, plan.metric_names, fresh_process=False,
                      resume=resume, replicas=rep, report=report)
        if rep.is_rank0 and cfg.scaling:
            row.update(scaling_columns(row, self.baselines[-1], rep.world_size))
        return row

    def barrier(self) -> None:
        self.rep.barrier()
