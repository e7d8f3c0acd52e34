"""The sweep on every rank of a torchrun job: plan -> run each combination -> record its row.

Each rank plans the same run and trains every combination in-process with DDP
(:mod:`ganbench.scaleout.distributed`). Rank 0 alone holds the run folder's lock, writes (config.json,
checkpoints, tables, artifacts) and prints; a check that fails on rank 0 is shared with the
others so every rank stops with the same one-line error.

Checkpoints and ``--resume`` work as in one process: rank 0 saves every rank's state it needs
(:meth:`DataParallel.whole_state`) and every rank loads the same file. config.json records the
world size; a resume on a different number of ranks is refused with the ``--nproc`` that fits.
"""

from __future__ import annotations

import dataclasses
import os

import torch.distributed as dist

from ganbench.sweep import run_folder
from ganbench.scaleout.distributed import BASELINE_DIR, DataParallel
from ganbench.errors import GanbenchError, StorageError, UserError
from ganbench.sweep.execute import execute
from ganbench.sweep.plan import make_plan
from ganbench.sweep.progress import Progress, Silent
from ganbench.sweep.record import record, reference_first, show_results
from ganbench.sweep.resume import interrupts_reported, start, unfinished
from ganbench.results.store import to_frame, write_table
from ganbench.scaleout.pool import check_ranks


def check(cfg, world_size: int) -> None:
    """Options that need knowing N; raises ConfigError (every rank raises the same)."""
    check_ranks(cfg, world_size, cfg.device)


def scaling_columns(row: dict, baseline: dict, world_size: int) -> dict:
    """img_per_s_1rank and scaling_efficiency = img_per_s / (N * img_per_s_1rank)."""
    one = baseline.get("img_per_s", float("nan")) if baseline.get("status") == "ok" else \
        float("nan")
    many = row.get("img_per_s", float("nan")) if row.get("status") == "ok" else float("nan")
    return {"img_per_s_1rank": one, "scaling_efficiency": many / (world_size * one)}


def run_ranks(cfg, echo=print, resume: bool = False, retry_failed: bool = False,
              force: bool = False):
    """The sweep on this rank: every combination, in order, with DDP; rank 0 writes.

    Returns (run folder, DataFrame) on rank 0 and (run folder, None) on the others.
    """
    from ganbench.config import resolve_device
    from ganbench.sweep.worker import tie_to_parent

    tie_to_parent(os.getppid())  # a rank must not outlive the torchrun agent that started it
    rep = DataParallel.start(resolve_device(cfg.device), cfg.sync_bn)
    try:
        return _sweep(rep, cfg, echo, resume, retry_failed, force)
    finally:
        dist.destroy_process_group()


def _on_rank0(rep: DataParallel, work):
    """``work()`` on rank 0, its result on every rank; a GanbenchError there is raised on every
    rank (the others would otherwise wait for rank 0 forever), as a UserError or, for the
    machine's or a plugin's failure (exit 1), a StorageError with the same line."""
    result, error = None, None
    if rep.is_rank0:
        try:
            result = work()
        except GanbenchError as exc:
            error = (isinstance(exc, UserError), str(exc))
    result, error = rep.share((result, error))
    if error is not None:
        users, text = error
        raise UserError(text) if users else StorageError(text)
    return result


def _sweep(rep: DataParallel, cfg, echo, resume: bool, retry_failed: bool, force: bool):
    plan = make_plan(cfg)  # the same checks on every rank
    check(plan.cfg, rep.world_size)
    saved_world = plan.cfg.world_size if resume else rep.world_size
    plan = dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, device=rep.device,
                                                             world_size=saved_world))
    reference = _on_rank0(rep, lambda: reference_first(plan))
    lock = None

    def open_folder():
        nonlocal lock
        run_dir = run_folder.prepare(plan.cfg.out or
                                     run_folder.default_run_dir(plan.cfg.plugins))
        lock = run_folder.RunLock(run_dir).acquire()
        try:
            here = dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, out=run_dir))
            rows = start(run_dir, here, resume=resume, retry_failed=retry_failed, force=force,
                         world_size=rep.world_size, note=notes.append)
            if plan.cfg.scaling:
                run_folder.prepare(run_dir / BASELINE_DIR)
        except BaseException:
            lock.release()
            raise
        return run_dir, rows

    notes: list[str] = []
    run_dir, rows = _on_rank0(rep, open_folder)  # the folder name has a timestamp: rank 0's
    plan = dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, out=run_dir))
    cfg = plan.cfg
    todo = unfinished(plan.combos, rows)
    progress = Progress(len(todo), cfg.steps, quiet=cfg.quiet, done_before=len(rows)) \
        if rep.is_rank0 else Silent()
    for note in plan.notes + notes:
        progress.note(note)
    baselines: list[dict] = []
    df = None
    one_rank = dataclasses.replace(cfg, batch_size=cfg.batch_size // rep.world_size,
                                   checkpoint_every=0, world_size=1)
    try:
        with interrupts_reported(run_dir):
            for combo in todo:
                progress.start(combo.name)
                if cfg.scaling:
                    if rep.is_rank0:  # alone, no DDP, the per-rank batch: one device's figure
                        baselines.append(execute(one_rank, combo, run_dir / BASELINE_DIR, [],
                                                 fresh_process=False))
                        write_table(baselines, run_dir / BASELINE_DIR)
                    rep.barrier()
                row = execute(cfg, combo, run_dir, plan.metric_names, fresh_process=False,
                              resume=resume, replicas=rep,
                              report=lambda kind, **data: progress.event(combo.name, kind,
                                                                          **data))
                if rep.is_rank0:
                    if cfg.scaling:
                        row.update(scaling_columns(row, baselines[-1], rep.world_size))
                    rows, df = record(rows, row, plan, run_dir)
                progress.finish(combo.name, row.get("status", "?"), row.get("error"))
                rep.barrier()  # the next DDP construction is a collective: start it together
            if reference is not None and rep.is_rank0:
                rows = rows + [reference]
                df = write_table(rows, run_dir)
            elif rep.is_rank0 and df is None:
                df = to_frame(rows)
    finally:
        progress.close()
        if lock is not None:
            lock.release()
    if rep.is_rank0:
        show_results(df, run_dir, cfg.quiet, echo, cfg.columns)
    rep.barrier()
    return run_dir, df
