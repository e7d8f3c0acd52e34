"""``ganbench run``'s entry: the one sweep loop (:mod:`ganbench.sweep.loop`), run the local way
or, under torchrun, the ranks' way (:mod:`ganbench.scaleout.ranks`).

    plan       ganbench.sweep.plan        names -> combinations x seeds = trials; every check
    folder     ganbench.sweep.run_folder  lock RUN_DIR, refuse another run's work, config.json
    resume     ganbench.sweep.resume      keep finished rows, continue from checkpoints
    run        ganbench.sweep.worker      each trial in a fresh supervised process (this
                                          module's LocalStrategy), or on every rank
               ganbench.sweep.execute     (which trains it; ganbench.sweep.row builds the row)
    record     ganbench.sweep.record      each row into the table (ganbench.results.store),
                                          rewritten atomically after every row

Interrupts and resume: Ctrl-C and SIGTERM stop the worker and leave the finished rows on disk
(:class:`ganbench.sweep.resume.RunInterrupted`); each trial checkpoints every
``checkpoint_every`` steps, and ``run(cfg, resume=True)`` (``ganbench run --resume RUN_DIR``)
keeps the trials that already have a row and continues an unfinished one from its checkpoint;
with ``retry_failed`` crashed, oom and failed rows are trained again too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ganbench.config import RunConfig
from ganbench.scaleout import pool as scaleout
from ganbench.sweep.loop import sweep
from ganbench.sweep.plan import Plan
from ganbench.sweep.worker import run_one


def run(cfg: RunConfig, echo=print, resume: bool = False, retry_failed: bool = False,
        force: bool = False) -> tuple[Path, "object"]:
    """Run every trial; returns (run folder, DataFrame).

    ``echo`` receives the results (the table, then "results: RUN_DIR"; only the latter with
    ``cfg.quiet``); progress, notes and warnings go to stderr (:mod:`ganbench.sweep.progress`).

    ``resume``: ``cfg`` is an earlier run's config (:func:`ganbench.sweep.resume.load_run_config`);
    trials with a final row in its results.json keep that row and are not trained again
    (``retry_failed``: except crashed/oom/failed ones), an unfinished one continues from its
    checkpoint. Without ``resume`` a folder holding another run's work is refused unless
    ``force``. Ctrl-C or SIGTERM raise :class:`~ganbench.sweep.resume.RunInterrupted` once the
    worker is stopped; every row finished before is then on disk in a valid table.
    """
    if scaleout.launched_by_torchrun():  # one process per rank: see ganbench/scaleout/ranks.py
        from ganbench.scaleout.ranks import run_ranks

        return run_ranks(cfg, echo, resume, retry_failed=retry_failed, force=force)
    scaleout.check_one_process(cfg)
    return sweep(cfg, LocalStrategy(cfg.jobs), echo, resume, retry_failed, force)


class LocalStrategy:
    """One process: it writes, and trains each trial through :func:`run_one` (a supervised
    worker process, or in-process with ``--in-process``), up to ``--jobs`` at once."""

    is_writer = True
    world_size = 1

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def prepare(self, plan: Plan, resume: bool) -> Plan:
        return plan

    def on_writer(self, work: Callable):
        return work()

    def opened(self, run_dir: Path, plan: Plan) -> None:
        pass

    def each_finished(self, trials: list, work: Callable):
        return scaleout.each_finished(trials, work, self.jobs)

    def run_trial(self, plan: Plan, trial, run_dir: Path, resume: bool, report: Callable,
                  warn: Callable) -> dict:
        # run_one is looked up here, at call time, so tests can stand a stub in for training.
        row = run_one(plan.cfg, trial, run_dir, plan.metric_names, resume=resume,
                      report=report, warn=warn)
        row["parallel_jobs"] = plan.cfg.jobs  # K > 1: timings taken while others trained
        return row

    def barrier(self) -> None:
        pass
