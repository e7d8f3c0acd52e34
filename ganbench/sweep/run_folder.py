"""The run folder: recognisable, one run at a time, never over work ganbench did not write.

Layout of RUN_DIR::

    ganbench-run.json      the manifest: this folder is a ganbench run (format version 1)
    config.json            the resolved settings (what --resume continues with)
    results.{csv,json,md}  the table, rewritten atomically after every row
    checkpoints/           training state of unfinished (or crashed) combinations
    models/ samples/ attention/ curves/ logs/   per-combination artifacts
    run.lock               the pid of the run writing the folder (removed when it ends)

Which folders a run may use (:func:`prepare`): a new or empty one, or a ganbench run (the
manifest; or, for folders made before the manifest existed, a config.json with ganbench's
settings keys, or a results.json with ganbench's {"rows": [...]} shape). Never the file
system's root, the home folder, the root of a git repository, or a non-empty folder of
anything else. ``--force`` and the clean-up of a killed writer's temporary files touch only
ganbench's own names at their known depth (:data:`OWN_FILES`, :data:`OWN_FOLDERS`).

The lock is an ``fcntl.flock`` on the run folder itself (its directory descriptor), held from
before the first check until the run ends. The kernel drops it when its holder dies however it
dies (SIGKILL included), so a lock left by a dead run never blocks the next one, and deleting
``run.lock`` mid-run does not let a second run in (the file only names the pid for the
message).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ganbench.files import atomic
from ganbench.errors import FolderBusy, UserError

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
TABLE_JSON = "results.json"  # same names as ganbench.results.store writes
MANIFEST = "ganbench-run.json"
MANIFEST_FORMAT = "ganbench run folder"
MANIFEST_VERSION = 1
PROBE = ".write-test"
# What ganbench writes in a run folder, and so all that --force may delete. Nothing else is
# touched. Top level: these names; one level down: these folders, files matching the patterns.
OWN_FILES = (MANIFEST, CONFIG_FILE, "results.csv", TABLE_JSON, "results.md", "report.html",
             "gab-bigger.json", "gab-smaller.json")
OWN_FOLDERS = {"checkpoints": ("*.pt", "*.pt.prev", "*.pt.sha256"), "models": ("*.G.pt",),
               "samples": ("*.png",), "attention": ("*.png",), "curves": ("*.csv", "*.png"),
               "logs": ("*.log",)}
NESTED_RUNS = ("scaling-1rank",)  # --scaling: the 1-rank rows, a run folder of their own
RUN_FOLDERS = tuple(OWN_FOLDERS) + NESTED_RUNS
# config.json keys that every ganbench RunConfig has written since the first release.
CONFIG_KEYS = ("plugins", "steps", "batch_size", "image_size", "device")


def default_run_dir(plugins) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "_".join(plugins)[:60]
    return Path("results") / "runs" / f"{stamp}-{slug}"


def resume_command(run_dir: Path, world_size: int = 1) -> str:
    """The exact command that continues the run in ``run_dir`` (shell-quoted)."""
    nproc = f" --nproc {world_size}" if world_size > 1 else ""
    return f"ganbench run --resume {shlex.quote(str(run_dir))}{nproc}"


# ------------------------------------------------------------------------------------------
# What a folder is
# ------------------------------------------------------------------------------------------
def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def run_kind(path: Path) -> Optional[str]:
    """"manifest" (a ganbench run), "legacy" (a run made before the manifest: config.json with
    ganbench's settings keys, or results.json shaped as ganbench writes it), or None."""
    path = Path(path)
    manifest = _json(path / MANIFEST)
    if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
        return "manifest"
    config = _json(path / CONFIG_FILE)
    if isinstance(config, dict) and all(key in config for key in CONFIG_KEYS) \
            and isinstance(config["plugins"], list):
        return "legacy"
    table = _json(path / TABLE_JSON)
    if isinstance(table, dict) and isinstance(table.get("rows"), list) and table["rows"] \
            and all(isinstance(r, dict) and "combo" in r for r in table["rows"]):
        return "legacy"
    return None


def _own_leftover(name: str) -> bool:
    """Names a ganbench process may leave in a folder before it holds a run (or when killed)."""
    return name in (LOCK_FILE, PROBE) or bool(atomic.PARTIAL_NAME.match(name))


def foreign_entries(path: Path) -> list[str]:
    """The entries of ``path`` that no ganbench process would have put there."""
    try:
        return sorted(p.name for p in Path(path).iterdir() if not _own_leftover(p.name))
    except OSError:
        return []


def _refuse_unsafe(path: Path) -> None:
    """UserError for a folder a run must never write into (see the module docstring)."""
    resolved = path.resolve()
    why = None
    if resolved == Path(resolved.anchor):
        why = "is the file system's root"
    elif resolved == Path.home().resolve():
        why = "is your home folder"
    elif (resolved / ".git").exists():
        why = "is the root of a git repository"
    if why:
        raise UserError(f"--out {path} {why}; a run needs a folder of its own, e.g. --out "
                        "results/runs/NAME")
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"--out {path} is a file, not a folder; choose a new folder")
    if resolved.is_dir() and run_kind(resolved) is None:
        found = foreign_entries(resolved)
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3
                                            else "")
            raise UserError(f"--out {path} is not empty and holds no ganbench run (it has "
                            f"{shown}); choose a new or empty folder")


def prepare(path: Path) -> Path:
    """Check that a run may use ``path`` (see the module docstring), then create it (and its
    parents); UserError (one line) if it may not be used or cannot be written."""
    path = Path(path)
    _refuse_unsafe(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / PROBE
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {path}: {exc.strerror or exc}")
    return path


def write_manifest(run_dir: Path) -> None:
    """Mark ``run_dir`` as a ganbench run folder (first thing a fresh run writes)."""
    from ganbench import __version__

    atomic.write_text(Path(run_dir) / MANIFEST, json.dumps({
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "ganbench": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1)
        + "\n")


# ------------------------------------------------------------------------------------------
# The lock
# ------------------------------------------------------------------------------------------
class RunLock:
    """An exclusive, non-blocking flock on the run folder (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        try:
            fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise UserError(f"cannot open output folder {self.run_dir}: {exc.strerror or exc}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_pid(self.path)
            who = f" (pid {holder})" if holder else ""
            raise FolderBusy(f"another ganbench run{who} is writing to {self.run_dir}; "
                             "wait for it to finish, or choose another --out")
        self.fd = fd
        try:
            atomic.write_text(self.path, f"{os.getpid()}\n")
        except OSError as exc:
            self.release()
            raise UserError(f"cannot write to output folder {self.run_dir}: "
                            f"{getattr(exc, 'strerror', None) or exc}")
        return self

    def release(self) -> None:
        """Remove run.lock (if it still names this process) and drop the lock."""
        if self.fd is None:
            return
        if read_pid(self.path) == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)  # closing the only descriptor drops the flock
        self.fd = None


def read_pid(path: Path) -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().strip() or "0") or None
    return None


def writer_alive(run_dir: Path) -> Optional[int]:
    """The pid of a live ganbench process named in RUN_DIR/run.lock, else None. Reads only
    (taking the lock, even briefly, could turn a run starting at that moment away)."""
    pid = read_pid(Path(run_dir) / LOCK_FILE)
    if pid is None:
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"ganbench" in command else None


# ------------------------------------------------------------------------------------------
# An earlier run in the folder
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Previous:
    """What an earlier run left in a folder."""

    kind: Optional[str]   # run_kind(): "manifest", "legacy" or None
    has_config: bool
    has_table: bool
    rows: list            # rows in its results.json (any status)
    checkpoints: list     # combination names with a checkpoint
    world_size: int

    @property
    def empty(self) -> bool:
        return self.kind is None or not (self.has_config or self.has_table or self.rows
                                         or self.checkpoints)


def previous_run(run_dir: Path) -> Previous:
    from ganbench.training.checkpoint import combos_with_checkpoints

    run_dir = Path(run_dir)
    config = _json(run_dir / CONFIG_FILE)
    world = 1
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        world = int(config.get("world_size", 1) or 1)
    table = _json(run_dir / TABLE_JSON)
    rows = table.get("rows") if isinstance(table, dict) else None
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    return Previous(run_kind(run_dir), isinstance(config, dict),
                    (run_dir / TABLE_JSON).exists(), rows, combos_with_checkpoints(run_dir),
                    world)


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


def unfinished_note(run_dir: Path, planned: Optional[int] = None) -> Optional[str]:
    """One line for `report` when the table of ``run_dir`` is not a finished run's: a run is
    still writing it, or it stopped early (fewer rows than the ``planned`` trials, when known;
    checkpoints of trials without a row). None for a finished run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or run_kind(run_dir) is None:
        return None
    prev = previous_run(run_dir)
    rows = [r for r in prev.rows if r.get("status") != "reference"]
    pid = writer_alive(run_dir)
    if pid is not None:
        return (f"a ganbench run (pid {pid}) is still writing {run_dir}; this table has "
                f"{len(rows)} row(s) so far")
    # A trial's files are named by its combination, plus ".seed<S>" when the run has several
    # seeds (ganbench.sweep.trials): either name of a row's trial counts as that row's.
    stems = {r.get("combo") for r in rows} | {f"{r.get('combo')}.seed{r.get('seed')}"
                                              for r in rows}
    pending = [c for c in prev.checkpoints if c not in stems]
    short = planned is not None and len(rows) < planned
    if not short and not pending:
        return None
    what = (f"{len(rows)} of {planned} row(s) written" if planned is not None
            else f"{len(rows)} row(s) written")
    if pending:
        what += f", {len(pending)} more stopped at a checkpoint"
    return (f"this run is unfinished ({what}); continue it with: "
            f"{resume_command(run_dir, prev.world_size)}")


def clear(run_dir: Path) -> list[Path]:
    """--force: delete what an earlier run wrote in ``run_dir``: ganbench's own names at their
    known depth (:data:`OWN_FILES`, files matching :data:`OWN_FOLDERS` one level down, nested
    run folders likewise), folders left empty, temporary files. Everything else stays. Returns
    what was deleted."""
    run_dir = Path(run_dir)
    removed = atomic.sweep_partials(run_dir, RUN_FOLDERS)
    for name in OWN_FILES:
        path = run_dir / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    for folder, patterns in OWN_FOLDERS.items():
        where = run_dir / folder
        if not where.is_dir() or where.is_symlink():
            continue
        for path in sorted(where.iterdir()):
            if path.is_file() and not path.is_symlink() and \
                    any(fnmatch.fnmatchcase(path.name, p) for p in patterns):
                path.unlink()
                removed.append(path)
        with contextlib.suppress(OSError):
            where.rmdir()  # only when empty: a file of the user's keeps its folder
    for nested in NESTED_RUNS:
        where = run_dir / nested
        if where.is_dir() and not where.is_symlink():
            removed += clear(where)
            with contextlib.suppress(OSError):
                where.rmdir()
    return removed


def write_config(run_dir: Path, settings: dict) -> None:
    atomic.write_text(Path(run_dir) / CONFIG_FILE, json.dumps(settings, indent=1) + "\n")


def log_failure(run_dir: Path, combo_name: str, text: str) -> None:
    """The traceback of a failed combination, for the user to read (logs/<combo>.log)."""
    with contextlib.suppress(OSError):  # a log that cannot be written must not hide the row
        atomic.write_text(Path(run_dir) / "logs" / f"{combo_name}.log", text)
