"""Interrupts and resume: what lets a long sweep stop and continue without losing a row.

Ctrl-C and SIGTERM raise :class:`RunInterrupted` once the worker is stopped (the rows already
written stay valid on disk); ``ganbench run --resume RUN_DIR`` reloads the run's config, keeps
the rows with a final status and continues an unfinished trial (a combination under one seed)
from its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
from pathlib import Path
from typing import Optional

from ganbench.config import RunConfig
from ganbench.errors import UserError
from ganbench.results.store import TABLE_JSON
from ganbench.sweep.trials import row_key

# A row with one of these statuses is final: --resume keeps it and does not train that
# trial (combination, seed) again. (The "real data" reference row is recomputed at the end instead.)
FINAL_STATUSES = ("ok", "diverged", "failed", "oom", "crashed")


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on Ctrl-C or SIGTERM; the rows finished before are in ``run_dir``.

    ``exit_code`` follows the shell's convention, 128 + signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int, run_dir: Optional[Path] = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = run_dir
        self.exit_code = 128 + signum


@contextlib.contextmanager
def interrupts_reported(run_dir: Path):
    """Within the body, SIGTERM (a scheduler's or CI's stop) raises like Ctrl-C does, so one
    clean shutdown serves both: run_one terminates the worker, the rows already written stay.
    Either leaves the body as RunInterrupted carrying ``run_dir`` (for the --resume hint).
    Only the main thread can install handlers; elsewhere SIGTERM keeps its default."""
    def on_sigterm(signum, frame):
        raise RunInterrupted(signum, run_dir)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(signal.SIGINT, run_dir) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def unfinished(trials: list, rows: list[dict], default_seed: int) -> list:
    """The trials without a row in ``rows`` (keyed by (combo, seed))."""
    finished = {row_key(row, default_seed) for row in rows}
    return [trial for trial in trials if trial.key not in finished]


def start(run_dir: Path, plan, *, resume: bool, retry_failed: bool, force: bool,
          world_size: int, note) -> list[dict]:
    """Make ``run_dir`` ready for ``plan`` and return the rows to keep (hold its lock).

    A fresh start refuses a folder holding another run's work (:func:`refuse_to_overwrite`)
    unless ``force``, then writes config.json. A resume checks the world size, keeps the rows
    with a final status (minus crashed/oom/failed ones with ``retry_failed``) and verifies the
    checkpoints it will continue from. Either way, temporary files of a killed writer go.
    """
    from ganbench.files import atomic
    from ganbench.sweep.execute import RETRYABLE_STATUSES
    from ganbench.sweep.run_folder import (RUN_FOLDERS, clear, refuse_to_overwrite,
                                           resume_command, run_kind, write_config,
                                           write_manifest)

    cfg, trials = plan.cfg, plan.trials
    rows: list[dict] = []
    if resume:
        check_world_size(run_dir, cfg.world_size, world_size)
        rows = finished_rows(run_dir, trials, cfg.seed)
        retry = [row for row in rows if row.get("status") in RETRYABLE_STATUSES]
        if retry_failed:
            rows = [row for row in rows if row not in retry]
        elif retry:
            note(f"{len(retry)} trial(s) ended crashed, oom or failed and keep their rows; "
                 f"to retrain them from their last checkpoint: "
                 f"{resume_command(run_dir, world_size)} --retry-failed")
        for text in verify_checkpoints(run_dir, trials, rows, cfg.seed):  # damaged: fails now
            note(text)
        if run_kind(run_dir) != "manifest":  # a run made before the manifest existed
            write_manifest(run_dir)
    else:
        if force:
            clear(run_dir)
        else:
            refuse_to_overwrite(run_dir, [trial.key for trial in trials], cfg.seed)
        write_manifest(run_dir)  # first: from now on the folder is recognisably a run
        write_config(run_dir, {**cfg.to_dict(), "provenance": plugins_provenance(plan)})
    atomic.sweep_partials(run_dir, RUN_FOLDERS)
    return rows


def check_world_size(run_dir: Path, saved: int, now: int) -> None:
    """A run continues on as many ranks as it started with (each rank's shard of the batch and
    noise stream depend on it); UserError with the command that does that."""
    from ganbench.sweep.run_folder import resume_command

    if saved != now:
        ran = f"{saved} ranks" if saved > 1 else "1 process"
        raise UserError(f"{run_dir} was run on {ran} and this resume has {now}; continue "
                        f"it with: {resume_command(run_dir, saved)}")


def load_run_config(run_dir: Path) -> RunConfig:
    """The RunConfig saved in RUN_DIR/config.json, with ``out`` set to ``run_dir``.

    UserError (one line, naming the file) if the folder or file is missing or unreadable."""
    from ganbench.sweep.run_folder import MANIFEST, run_kind

    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: no config.json there; is it a folder made by "
                        "`ganbench run`?")
    if run_kind(run_dir) is None:
        raise UserError(f"--resume {run_dir}: not a ganbench run folder (no {MANIFEST}, and "
                        "its config.json lacks ganbench's settings)")
    try:
        saved = json.loads(path.read_text())
        return dataclasses.replace(RunConfig.from_dict(saved), out=run_dir)
    except UserError as exc:
        raise UserError(f"{path}: {exc}")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = " ".join(str(exc).split())
        raise UserError(f"cannot read run config {path}: {type(exc).__name__}: {reason}")


def finished_rows(run_dir: Path, trials: list, default_seed: int) -> list[dict]:
    """Rows of ``trials`` that RUN_DIR/results.json already holds with a final status."""
    path = Path(run_dir) / TABLE_JSON
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
        keys = {trial.key for trial in trials}
        return [row for row in rows
                if row_key(row, default_seed) in keys and row.get("status") in FINAL_STATUSES]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"cannot read results table {path} to resume: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())}")


def verify_checkpoints(run_dir: Path, trials: list, rows: list[dict],
                       default_seed: int) -> list[str]:
    """Load every checkpoint an unfinished trial would resume from, so the user hears about a
    damaged one before any training starts. A damaged or missing newest checkpoint with a
    good previous one is replaced by that one (returned: a note per such case);
    CheckpointError when neither can be used."""
    from ganbench.training.checkpoint import checkpoint_path, keep_only_good

    finished = {row_key(row, default_seed) for row in rows}
    notes = []
    for trial in trials:
        if trial.key not in finished:
            text = keep_only_good(checkpoint_path(run_dir, trial.stem))
            if text:
                notes.append(text)
    return notes


def discard_checkpoint_of(run_dir: Path, trial) -> None:
    """Remove a trial's checkpoint once its final row is on disk."""
    from ganbench.training.checkpoint import checkpoint_path, discard_checkpoint

    discard_checkpoint(checkpoint_path(run_dir, trial.stem))


def plugins_provenance(plan) -> dict:
    """Every plugin the run uses -> "built-in" or "distribution==version" (config.json)."""
    from ganbench.registry import provenance

    names = {n for c in plan.combos for n in (c.architecture, c.loss, c.attention) if n}
    names |= set(plan.metric_names) | {plan.cfg.data.partition(":")[0]}
    return provenance(sorted(names))
