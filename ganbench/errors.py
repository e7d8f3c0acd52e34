"""Every error ganbench reports to a person, in one module, each with the CLI's exit code.

``str(error)`` is one line: the CLI prints ``ganbench: error: <that line>`` and exits with
``exit_code``; it never prints a traceback for these. The classes say whose fault it is::

    GanbenchError                      base of all of them
    ├── UserError            exit 2    a mistake in what the user asked for or pointed at
    │   ├── ConfigError                a run option has a bad value
    │   ├── UsageError                 a command line argparse cannot read (unknown flag)
    │   ├── UnknownPluginError         a plugin name matches nothing registered
    │   ├── DataError                  data could not be read or does not fit the request
    │   ├── CheckpointError            a checkpoint lacks its checksum or was altered
    │   ├── ChecksumError              a weights file is not the one its record names
    │   └── FolderBusy                 another live process holds the run folder's lock
    ├── PluginError          exit 1    a plugin broke its contract: a bug in the plugin
    │   └── KernelContractError        an attention kernel returned a wrong tensor
    └── StorageError         exit 1    the machine could not store what ganbench wrote
        ├── ResultsWriteError          the results table could not be written
        └── WriteError (+ OSError)     one file could not be written (exit 2 when the path is
                                       the user's mistake: see :func:`exit_code`)

Names are public API and stay importable from here and from the modules that raised them
before (``ganbench.results.store.ResultsWriteError``, ``ganbench.sweep.kernel_check.
KernelContractError``, ``ganbench.files.atomic.WriteError``, ...). Standard library only: every
layer of ganbench imports this module, so it imports none of them.
"""

from __future__ import annotations

import errno as errno_codes
from pathlib import Path
from typing import Optional, Union

EXIT_USER = 2     # argparse's code for a bad command line; ganbench's for every user mistake
EXIT_FAILURE = 1  # the run itself failed: a plugin's bug, a full disk, a failed combination

# OSError numbers that mean "the path you gave cannot be used" (the user's to fix: another
# path) rather than "the machine failed" (a full disk, an I/O error: exit 1).
PATH_ERRNOS = frozenset({errno_codes.ENOENT, errno_codes.ENOTDIR, errno_codes.EISDIR,
                         errno_codes.EACCES, errno_codes.EPERM, errno_codes.EEXIST,
                         errno_codes.ENAMETOOLONG, errno_codes.ELOOP, errno_codes.EROFS,
                         errno_codes.ENOTEMPTY})


class GanbenchError(Exception):
    """An error meant for a person: ``str()`` is one line saying what and what to do."""

    exit_code = EXIT_FAILURE


# ------------------------------------------------------------------------------------------
# The user's mistakes: exit 2
# ------------------------------------------------------------------------------------------
class UserError(GanbenchError):
    """A mistake in what the user asked for (bad option, unknown name, unreadable data)."""

    exit_code = EXIT_USER


class ConfigError(UserError):
    """A run option has a bad value."""


class UsageError(UserError):
    """A command line that does not parse: an unknown or abbreviated flag, a bad choice, a
    missing argument (argparse's own complaints, made one line)."""


class UnknownPluginError(UserError):
    """A plugin name matches nothing registered."""


class DataError(UserError):
    """Data could not be read or does not fit the request."""


class CheckpointError(UserError):
    """A checkpoint is missing its checksum, damaged, altered, or holds something not allowed."""


class ChecksumError(UserError):
    """The weights file is not the one whose checksum was recorded."""


class FolderBusy(UserError):
    """Another live process holds the run folder's lock."""


# ------------------------------------------------------------------------------------------
# A plugin's bug: exit 1
# ------------------------------------------------------------------------------------------
class PluginError(GanbenchError):
    """A plugin broke its contract (returned the wrong thing, wrote a column another wrote):
    the plugin's author has to fix it, not the user. Raised while a combination trains, it
    fails that combination's row and the sweep goes on."""

    exit_code = EXIT_FAILURE


class KernelContractError(PluginError):
    """An attention kernel returned something the contract does not allow."""


# ------------------------------------------------------------------------------------------
# The machine could not store the results: exit 1
# ------------------------------------------------------------------------------------------
class StorageError(GanbenchError):
    """Writing failed on the machine's side (disk full, I/O error); what was written before is
    intact."""

    exit_code = EXIT_FAILURE


class ResultsWriteError(StorageError):
    """The results table could not be written (disk full, folder removed): exit code 1, since
    the run itself failed rather than the user's input. The previous table is left intact."""


class WriteError(StorageError, OSError):
    """A file could not be written; ``str()`` is one line naming the path and the reason.

    Also an OSError (with the cause's errno), so code that handles OSError still does. Its exit
    code is 2 when the errno says the path itself is unusable (a folder under a regular file,
    no permission) and 1 when the machine failed (no space left)."""

    def __init__(self, path: Union[str, Path], cause: BaseException):
        reason = (cause.strerror if isinstance(cause, OSError) and cause.strerror
                  else " ".join(str(cause).split()) or type(cause).__name__)
        number = cause.errno if isinstance(cause, OSError) else None
        OSError.__init__(self, number, reason, str(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_USER if self.errno in PATH_ERRNOS else EXIT_FAILURE


# ------------------------------------------------------------------------------------------
# What the CLI makes of an exception
# ------------------------------------------------------------------------------------------
def exit_code(exc: BaseException) -> Optional[int]:
    """The exit code for ``exc`` when it is an error for a person, else None (a bug: let the
    traceback show). GanbenchError: its ``exit_code``. Any other OSError (a path read or written
    outside ganbench's own writers): 2 for an unusable path (PATH_ERRNOS), 1 otherwise."""
    if isinstance(exc, GanbenchError):
        return exc.exit_code
    if isinstance(exc, OSError):
        return EXIT_USER if exc.errno in PATH_ERRNOS else EXIT_FAILURE
    return None


def one_line(exc: BaseException) -> str:
    """The text after ``ganbench: error:``: the error's own line; for a bare OSError its reason
    and the file it names (never Python's ``[Errno 2]`` prefix)."""
    if isinstance(exc, OSError) and not isinstance(exc, GanbenchError):
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{exc.strerror or exc}{where}"
    else:
        text = str(exc)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
