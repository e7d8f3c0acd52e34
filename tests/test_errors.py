"""ganbench.errors: whose fault each class is, its exit code, and the public names."""

from __future__ import annotations

import errno
import pickle

import pytest

from ganbench import errors


@pytest.mark.parametrize("cls, base, code", [
    (errors.UserError, errors.GanbenchError, 2),
    (errors.ConfigError, errors.UserError, 2),
    (errors.UsageError, errors.UserError, 2),
    (errors.UnknownPluginError, errors.UserError, 2),
    (errors.DataError, errors.UserError, 2),
    (errors.CheckpointError, errors.UserError, 2),
    (errors.ChecksumError, errors.UserError, 2),
    (errors.FolderBusy, errors.UserError, 2),
    (errors.PluginError, errors.GanbenchError, 1),
    (errors.KernelContractError, errors.PluginError, 1),
    (errors.StorageError, errors.GanbenchError, 1),
    (errors.ResultsWriteError, errors.StorageError, 1),
])
def test_each_class_has_its_parent_and_exit_code(cls, base, code):
    exc = cls("one line")
    assert isinstance(exc, base) and exc.exit_code == code
    assert errors.exit_code(exc) == code and errors.one_line(exc) == "one line"


def test_a_plugins_bug_or_a_failed_write_is_not_the_users_mistake():
    """Issue 19: ResultsWriteError (exit 1) and KernelContractError (a plugin bug) were
    UserErrors, so code catching the user's mistakes caught them too."""
    for cls in (errors.ResultsWriteError, errors.KernelContractError, errors.WriteError):
        assert not issubclass(cls, errors.UserError)


def test_old_import_paths_still_give_the_same_classes():
    from ganbench.files import atomic
    from ganbench.quality import classifier
    from ganbench.results import store
    from ganbench.sweep import kernel_check, run_folder
    from ganbench.training import checkpoint

    assert atomic.WriteError is errors.WriteError
    assert classifier.ChecksumError is errors.ChecksumError
    assert store.ResultsWriteError is errors.ResultsWriteError
    assert kernel_check.KernelContractError is errors.KernelContractError
    assert run_folder.FolderBusy is errors.FolderBusy
    assert checkpoint.CheckpointError is errors.CheckpointError


@pytest.mark.parametrize("number, code", [
    (errno.ENOSPC, 1), (errno.EIO, 1), (errno.EDQUOT, 1),          # the machine failed
    (errno.ENOTDIR, 2), (errno.EACCES, 2), (errno.ENOENT, 2), (errno.EROFS, 2),  # the path
])
def test_write_error_exit_code_follows_its_errno(number, code):
    exc = errors.WriteError("/runs/a/results.csv", OSError(number, "reason"))
    assert isinstance(exc, OSError) and isinstance(exc, errors.StorageError)
    assert exc.errno == number and exc.filename == "/runs/a/results.csv"
    assert exc.exit_code == code == errors.exit_code(exc)
    assert str(exc) == "cannot write /runs/a/results.csv: reason"


def test_write_error_of_a_non_os_cause_names_it_in_one_line():
    exc = errors.WriteError("a.png", ValueError("bad\n  image  mode"))
    assert str(exc) == "cannot write a.png: bad image mode" and exc.exit_code == 1


def test_a_bare_os_error_is_one_line_without_python_s_errno_prefix():
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/config.json")
    assert errors.one_line(exc) == "No such file or directory: /x/config.json"
    assert errors.exit_code(exc) == 2
    assert errors.exit_code(OSError(errno.ENOSPC, "No space left on device")) == 1


def test_other_exceptions_are_bugs_with_no_exit_code():
    assert errors.exit_code(ValueError("x")) is None
    assert errors.exit_code(KeyError("x")) is None


def test_one_line_keeps_the_first_line_only():
    assert errors.one_line(errors.UserError("first\nsecond")) == "first"
    assert errors.one_line(errors.UserError("")) == "UserError"


def test_user_errors_cross_process_boundaries():
    """Workers and torchrun ranks send errors to their parent: they must pickle."""
    for exc in (errors.ConfigError("x"), errors.KernelContractError("y"),
                errors.ResultsWriteError("z")):
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc) and str(again) == str(exc)
