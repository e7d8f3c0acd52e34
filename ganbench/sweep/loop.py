"""The one sweep loop: plan -> folder -> lock -> resume -> progress -> trials -> record ->
reference row -> write -> show, written once for one process and for every torchrun rank.

What differs between the two is a small strategy object (:class:`Strategy`): how a trial is
run and who writes.

- :class:`ganbench.sweep.runner.LocalStrategy`: one process; each trial in a supervised worker
  process (or in-process with ``--in-process``), up to ``--jobs`` at once; it writes.
- :class:`ganbench.scaleout.ranks.RankStrategy`: one rank of a torchrun job; every rank trains
  every trial in-process with DDP, one after another, and rank 0 alone writes and prints.

Every row is written to the table as soon as its trial ends (atomically), so an interrupt
(Ctrl-C or SIGTERM: :class:`ganbench.sweep.resume.RunInterrupted`) or a crash leaves every
finished row; ``resume`` keeps the rows with a final status and trains the rest, continuing an
unfinished trial from its checkpoint (``retry_failed``: crashed, oom and failed ones too).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from ganbench.config import RunConfig
from ganbench.results.store import to_frame, write_table
from ganbench.sweep import run_folder
from ganbench.registry import get_registry
from ganbench.sweep.plan import Plan, check_columns, make_plan
from ganbench.sweep.progress import Progress, Silent
from ganbench.sweep.record import record, reference_first, show_results
from ganbench.sweep.resume import interrupts_reported, start, unfinished
from ganbench.sweep.worker import warnings_sent


class Strategy(Protocol):
    """How the loop's trials are run, and who writes. ``is_writer``: this process writes the
    run folder and prints; ``world_size``: the ranks training each trial together."""

    is_writer: bool
    world_size: int

    def prepare(self, plan: Plan, resume: bool) -> Plan:
        """Checks that need this strategy (ConfigError), and the plan as it will run."""

    def on_writer(self, work: Callable):
        """``work()`` on the writer; its result (or its UserError) on every process."""

    def opened(self, run_dir: Path, plan: Plan) -> None:
        """The writer has made ``run_dir`` ready (it holds the lock)."""

    def each_finished(self, trials: list, work: Callable) -> Iterator[tuple]:
        """(trial, work(trial)) for every trial, as each finishes; the loop records a row
        before the generator goes on."""

    def run_trial(self, plan: Plan, trial, run_dir: Path, resume: bool, report: Callable,
                  warn: Callable) -> dict:
        """The row of ``trial`` (complete on the writer)."""

    def barrier(self) -> None:
        """Wait for every process of the run."""


class _Lock:
    """The run folder's lock, held on the writer from before the first check to the end."""

    def __init__(self):
        self.lock = None

    def acquire(self, run_dir: Path) -> None:
        self.lock = run_folder.RunLock(run_dir).acquire()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def sweep(cfg: RunConfig, strategy: Strategy, echo=print, resume: bool = False,
          retry_failed: bool = False, force: bool = False):
    """Train every trial of ``cfg`` the ``strategy``'s way; (run folder, DataFrame) on the
    writer, (run folder, None) elsewhere. ``echo`` gets the table and the "results:" line."""
    early: list[str] = []  # warnings while planning: shown once, like the workers' (progress)
    with warnings_sent(early.append):
        plan = strategy.prepare(make_plan(cfg), resume)  # the same checks in every process
        reference = strategy.on_writer(lambda: reference_first(plan))
    # --columns against what a row can hold (the reference row has the metrics' columns),
    # before any training. The same check on every process.
    check_columns(plan.cfg.columns, plan.metric_names, get_registry(), reference)
    notes: list[str] = []
    lock = _Lock()

    def open_folder():
        run_dir = run_folder.prepare(plan.cfg.out or
                                     run_folder.default_run_dir(plan.cfg.plugins))
        lock.acquire(run_dir)
        try:
            rows = start(run_dir, _with_out(plan, run_dir), resume=resume,
                         retry_failed=retry_failed, force=force,
                         world_size=strategy.world_size, note=notes.append)
            strategy.opened(run_dir, plan)
        except BaseException:
            lock.release()
            raise
        return run_dir, rows

    run_dir, rows = strategy.on_writer(open_folder)  # a new folder's name is the writer's
    plan = _with_out(plan, run_dir)
    cfg = plan.cfg
    todo = unfinished(plan.trials, rows, cfg.seed)
    df, progress = None, Silent()
    try:
        if strategy.is_writer:
            df = to_frame(rows)
            progress = Progress(len(todo), cfg.steps, quiet=cfg.quiet, done_before=len(rows))
        for note in plan.notes + notes:
            progress.note(note)
        for text in early:
            progress.warning(text)

        def work(trial) -> dict:
            progress.start(trial.stem)
            row = strategy.run_trial(
                plan, trial, run_dir, resume,
                report=lambda kind, **data: progress.event(trial.stem, kind, **data),
                warn=progress.warning)
            progress.finish(trial.stem, row.get("status", "?"), row.get("error"))
            return row

        with interrupts_reported(run_dir):
            for trial, row in strategy.each_finished(todo, work):
                if strategy.is_writer:
                    rows, df = record(rows, trial, row, plan, run_dir)
            if reference is not None and strategy.is_writer:
                rows = rows + [reference]
                df = write_table(rows, run_dir)
    finally:
        progress.close()
        lock.release()
    if strategy.is_writer:
        show_results(df, run_dir, cfg.quiet, echo, cfg.columns)
    strategy.barrier()
    return run_dir, df


def in_order(trials: Iterable, work: Callable, after_each: Callable[[], None]) -> Iterator:
    """``each_finished`` one trial after another; ``after_each()`` once its row is recorded."""
    for trial in trials:
        yield trial, work(trial)
        after_each()


def _with_out(plan: Plan, run_dir: Path) -> Plan:
    return dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, out=run_dir))
