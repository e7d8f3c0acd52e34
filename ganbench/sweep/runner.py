"""A sweep: plan -> run each combination -> record its row.

    plan       ganbench.sweep.plan        names -> combinations, metrics, data; every check up front
    folder     ganbench.sweep.run_folder  lock RUN_DIR, refuse another run's work, config.json
    run        ganbench.sweep.worker      each combination in a fresh supervised process
               ganbench.sweep.execute     (which trains it and returns its row)
    record     ganbench.sweep.record      each row into the table (ganbench.results.store), rewritten
                                    atomically after every row

Under torchrun the same steps run on every rank (:mod:`ganbench.scaleout.ranks`).

Interrupts and resume: Ctrl-C and SIGTERM stop the worker and leave the finished rows on disk
(:class:`ganbench.sweep.resume.RunInterrupted`); each combination checkpoints every
``checkpoint_every`` steps, and ``run(cfg, resume=True)`` (``ganbench run --resume RUN_DIR``)
keeps the combinations that already have a row and continues an unfinished one from its
checkpoint; with ``retry_failed`` crashed, oom and failed rows are trained again too.
"""

from __future__ import annotations

from pathlib import Path

from ganbench.sweep import run_folder
from ganbench.scaleout import pool as scaleout
from ganbench.config import RunConfig
from ganbench.registry import get_registry
from ganbench.sweep.plan import Plan, check_columns, make_plan
from ganbench.sweep.progress import Progress
from ganbench.sweep.record import record, reference_first, show_results
from ganbench.sweep.resume import interrupts_reported, start, unfinished
from ganbench.results.store import to_frame, write_table
from ganbench.sweep.worker import run_one, warnings_sent


def run(cfg: RunConfig, echo=print, resume: bool = False, retry_failed: bool = False,
        force: bool = False) -> tuple[Path, "object"]:
    """Run every combination; returns (run folder, DataFrame).

    ``echo`` receives the results (the table, then "results: RUN_DIR"; only the latter with
    ``cfg.quiet``); progress, notes and warnings go to stderr (:mod:`ganbench.sweep.progress`).

    ``resume``: ``cfg`` is an earlier run's config (:func:`ganbench.sweep.resume.load_run_config`);
    combinations with a final row in its results.json keep that row and are not trained again
    (``retry_failed``: except crashed/oom/failed ones), an unfinished one continues from its
    checkpoint. Without ``resume`` a folder holding another run's work is refused unless
    ``force``. Ctrl-C or SIGTERM raise :class:`~ganbench.sweep.resume.RunInterrupted` once the
    worker is stopped; every row finished before is then on disk in a valid table.
    """
    if scaleout.launched_by_torchrun():  # one process per rank: see ganbench/scaleout/ranks.py
        from ganbench.scaleout.ranks import run_ranks

        return run_ranks(cfg, echo, resume, retry_failed=retry_failed, force=force)
    scaleout.check_one_process(cfg)
    early: list[str] = []  # warnings while planning: shown once, like the workers' (progress)
    with warnings_sent(early.append):
        plan = make_plan(cfg)
        reference = reference_first(plan)
    check_columns(plan.cfg.columns, plan.metric_names, get_registry(), reference)
    run_dir = run_folder.prepare(plan.cfg.out or run_folder.default_run_dir(plan.cfg.plugins))
    lock = run_folder.RunLock(run_dir).acquire()
    progress = None
    try:
        plan = _with_out(plan, run_dir)
        cfg = plan.cfg
        notes: list[str] = []
        rows = start(run_dir, plan, resume=resume, retry_failed=retry_failed, force=force,
                     world_size=1, note=notes.append)
        todo = unfinished(plan.combos, rows)
        progress = Progress(len(todo), cfg.steps, quiet=cfg.quiet, done_before=len(rows))
        for note in plan.notes + notes:
            progress.note(note)
        for text in early:
            progress.warning(text)
        df = to_frame(rows)

        def work(combo):
            progress.start(combo.name)
            row = run_one(cfg, combo, run_dir, plan.metric_names, resume=resume,
                          report=lambda kind, **data: progress.event(combo.name, kind, **data),
                          warn=progress.warning)
            progress.finish(combo.name, row.get("status", "?"), row.get("error"))
            return row

        with interrupts_reported(run_dir):
            for combo, row in scaleout.each_finished(todo, work, cfg.jobs):
                row["parallel_jobs"] = cfg.jobs  # K > 1: timings taken while others trained
                rows, df = record(rows, row, plan, run_dir)
            if reference is not None:
                rows = rows + [reference]
                df = write_table(rows, run_dir)
    finally:
        if progress is not None:
            progress.close()
        lock.release()
    show_results(df, run_dir, cfg.quiet, echo, cfg.columns)
    return run_dir, df


def _with_out(plan: Plan, run_dir: Path) -> Plan:
    import dataclasses

    return dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, out=run_dir))
