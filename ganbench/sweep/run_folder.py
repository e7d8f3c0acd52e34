"""The run folder: one run at a time (a lock), never over another run's work, atomic files.

Layout of RUN_DIR::

    config.json            the resolved settings (what --resume continues with)
    results.{csv,json,md}  the table, rewritten atomically after every row
    checkpoints/           training state of unfinished (or crashed) combinations
    models/ samples/ attention/ curves/ logs/   per-combination artifacts
    run.lock               held (flock) by the process writing the folder

The lock is an ``fcntl.flock`` on ``run.lock``, held from before the first check until the run
ends. The kernel drops it when its holder dies however it dies (SIGKILL included), so a lock
left by a dead run never blocks the next one; the pid written in the file is only for the
message.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from ganbench.files import atomic
from ganbench.errors import FolderBusy, UserError

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
TABLE_JSON = "results.json"  # same names as ganbench.results.store writes
# What `run` creates in a run folder, and so what --force may delete. Nothing else is touched.
RUN_FILES = ("config.json", "results.csv", "results.json", "results.md")
RUN_FOLDERS = ("checkpoints", "models", "samples", "attention", "curves", "logs",
               "scaling-1rank")


def default_run_dir(plugins) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "_".join(plugins)[:60]
    return Path("results") / "runs" / f"{stamp}-{slug}"


def resume_command(run_dir: Path, world_size: int = 1) -> str:
    """The exact command that continues the run in ``run_dir``."""
    nproc = f" --nproc {world_size}" if world_size > 1 else ""
    return f"ganbench run --resume {run_dir}{nproc}"


class RunLock:
    """An exclusive, non-blocking flock on RUN_DIR/run.lock (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, atomic.FILE_MODE)
        except OSError as exc:
            raise UserError(f"cannot write to output folder {self.path.parent}: "
                            f"{exc.strerror or exc}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise FolderBusy(f"another ganbench run{who} is writing to {self.path.parent}; "
                             "wait for it to finish, or choose another --out")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def _read_pid(fd: int) -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode().strip() or "0") or None
    return None


def prepare(path: Path) -> Path:
    """Create the folder (and parents); UserError if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {path}: {exc.strerror or exc}")
    return path


@dataclass(frozen=True)
class Previous:
    """What an earlier run left in a folder."""

    has_config: bool
    has_table: bool
    rows: list            # rows in its results.json (any status)
    checkpoints: list     # combination names with a checkpoint
    world_size: int

    @property
    def empty(self) -> bool:
        return not (self.has_config or self.has_table or self.rows or self.checkpoints)


def previous_run(run_dir: Path) -> Previous:
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    world = 1
    if config.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            world = int(json.loads(config.read_text()).get("world_size", 1) or 1)
    rows: list = []
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        rows = list(json.loads((run_dir / TABLE_JSON).read_text())["rows"])
    ckpts = sorted(p.name[:-3] for p in (run_dir / "checkpoints").glob("*.pt")) \
        if (run_dir / "checkpoints").is_dir() else []
    return Previous(config.is_file(), (run_dir / TABLE_JSON).exists(), rows, ckpts, world)


def refuse_to_overwrite(run_dir: Path, keys: list[tuple], default_seed: int) -> None:
    """UserError when ``run_dir`` holds another run's work (a fresh start would replace it):
    with the resume command when that run is unfinished. ``keys``: the (combo, seed) of every
    row this run would write. Call it holding the lock."""
    prev = previous_run(run_dir)
    if prev.empty:
        return
    done = {(r.get("combo"), r.get("seed", default_seed)) for r in prev.rows
            if isinstance(r, dict)}
    if prev.has_config and not prev.checkpoints and set(keys) <= done:
        raise UserError(f"{run_dir} already holds a finished run; choose another --out, or add "
                        "--force to replace it")
    if not prev.has_config:  # a table without its config.json: nothing --resume can use
        raise UserError(f"{run_dir} already holds a run's results; choose another --out, or "
                        "add --force to replace them")
    what = (f"{len(done)} row(s) finished" if done else "no row finished yet")
    if prev.checkpoints:
        what += f", {len(prev.checkpoints)} checkpoint(s)"
    raise UserError(f"{run_dir} holds an unfinished run ({what}); continue it with: "
                    f"{resume_command(run_dir, prev.world_size)} (or add --force to delete it "
                    "and start afresh)")


def clear(run_dir: Path) -> None:
    """--force: delete what an earlier run wrote in ``run_dir`` (only ganbench's own files)."""
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()
    for name in RUN_FOLDERS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    atomic.sweep_partials(run_dir)


def write_config(run_dir: Path, settings: dict) -> None:
    atomic.write_text(Path(run_dir) / CONFIG_FILE, json.dumps(settings, indent=1) + "\n")


def log_failure(run_dir: Path, combo_name: str, text: str) -> None:
    """The traceback of a failed combination, for the user to read (logs/<combo>.log)."""
    with contextlib.suppress(OSError):  # a log that cannot be written must not hide the row
        atomic.write_text(Path(run_dir) / "logs" / f"{combo_name}.log", text)
