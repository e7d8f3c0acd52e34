"""Atomic files: every file a run writes is either its previous version or the new one.

The recipe (the one SQLite and git use for their own files): write to a temporary file in the
same folder, flush, ``fsync``, then ``os.replace`` it over the target. The rename is atomic on
POSIX file systems, so a crash, a kill or a full disk at any moment leaves the old file (or no
file), never a torn one. Temporary files are named ``.<name>.<random>.partial<suffix>`` (the
target's suffix last, so matplotlib and torch still see the format) and are removed when a write
fails; :func:`sweep_partials` clears those left by a process that was killed mid-write (only
names of exactly that form, only in the folders it is given: never a file ganbench did not
write).

Every failure is a :class:`WriteError` that names the target path: "cannot write PATH: No space
left on device".

Three ways in, for three kinds of writer:

- :func:`write_bytes` / :func:`write_text`: the content is in memory;
- :func:`replacing`: a context manager yielding a temporary *path* for writers that insist on a
  path (``torch.save``, ``matplotlib.figure.Figure.savefig``, ``numpy.savez``, report helpers);
- :func:`torch_save`: ``torch.save(obj, path)`` atomically (serialised in memory first: torch's
  own file writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc]
  unexpected pos ...``, with no path and no errno).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import signal
import threading
from pathlib import Path
from typing import Iterator, Union

from ganbench.errors import WriteError  # noqa: F401  (raised here; public as atomic.WriteError)

PARTIAL_MARK = ".partial"  # in every temporary file's name; see sweep_partials
# The whole name temp_path_for makes: "." + stem + "." + 8 hex digits + ".partial" + suffix.
PARTIAL_NAME = re.compile(r"^\..*\.[0-9a-f]{8}\.partial(\.[^/]*)?$")


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before
    os.umask(mask)      # any thread (--jobs) could create a file in between
    return mask


_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: results are ordinary, shareable files


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that keeps its suffix last."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{PARTIAL_MARK}{path.suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: a rename is recorded in the folder's data)."""
    with contextlib.suppress(OSError):  # some file systems refuse to open folders; not fatal
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replacing(path: Union[str, Path], required: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body returns, the file written there is
    fsynced and renamed over ``path`` (a body that wrote nothing is an error unless
    ``required`` is False: then nothing changes). If the body raises, the temporary file is removed and
    ``path`` is untouched. Any OSError (from the body too) becomes a :class:`WriteError`
    naming ``path``; other exceptions pass through unchanged."""
    path = Path(path)
    tmp = temp_path_for(path)
    made_folder = not path.parent.is_dir()  # removed again if nothing is written into it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            if not required:
                if made_folder:  # e.g. no attention/ folder for a model without attention
                    with contextlib.suppress(OSError):
                        path.parent.rmdir()
                return
            raise FileNotFoundError(2, f"the writer did not create {tmp.name}")
        os.chmod(tmp, FILE_MODE)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from exc
        raise
    fsync_dir(path.parent)


def write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def write_text(path: Union[str, Path], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_group(files: dict) -> None:
    """Write several files ({path: bytes}) so that none is renamed into place before all are
    complete on disk; the renames run with SIGINT/SIGTERM held back. A failure before the
    renames leaves every old file as it was."""
    temps: dict[Path, Path] = {}
    try:
        for path, data in files.items():
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_path_for(path)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                temps[path] = tmp
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise WriteError(path, exc) from exc
        with signals_deferred():
            for path, tmp in temps.items():
                try:
                    os.replace(tmp, path)
                except OSError as exc:
                    raise WriteError(path, exc) from exc
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # gone already after a successful rename
    for folder in {Path(p).parent for p in files}:
        fsync_dir(folder)


def torch_bytes(obj) -> bytes:
    """``torch.save(obj)`` into memory: the bytes a ``.pt`` file holds."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def torch_save(obj, path: Union[str, Path]) -> None:
    """``torch.save(obj, path)``, atomically. Serialised in memory, then written by
    :func:`write_bytes`, so a full disk is a :class:`WriteError` naming ``path`` (weights here
    are a few MB: a generator at 64x64 is ~3 MB)."""
    write_bytes(path, torch_bytes(obj))


def sweep_partials(folder: Union[str, Path], subfolders=()) -> list[Path]:
    """Remove the temporary files (:func:`temp_path_for` names, nothing else) that a killed
    writer left in ``folder`` itself and in its ``subfolders`` (names, one level down; not
    deeper); returns them. Only call it while holding the run folder's lock (no live writer
    can be mid-write)."""
    folder = Path(folder)
    removed = []
    for where in [folder] + [folder / name for name in subfolders]:
        if not where.is_dir() or where.is_symlink():
            continue
        for p in sorted(where.iterdir()):
            if PARTIAL_NAME.match(p.name) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold back Ctrl-C and SIGTERM for the body, then deliver them.

    For writes that must finish as a group (a checkpoint and its checksum). Only the main
    thread can change signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # the restored handler acts as if it had come now
