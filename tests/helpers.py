"""Helpers shared by the tests: the tiny run's arguments and the "one line, exit 2" check.

Importable from any test as ``from helpers import ...`` (pytest.ini_options' pythonpath adds
tests/). Keep it small and free of fixtures: conftest.py holds the set-up.
"""

from __future__ import annotations

import contextlib
import io
from typing import Optional, Sequence

# The smallest `ganbench run` that trains for real on the CPU: 3 steps (1 untimed) of batch 8
# at 32x32, no quality metrics (the classifier's features would dominate the time), no
# progress output. test_cli's in-process dcgan + sagan run with these took 10.5 s user+sys,
# model building and the sample grids included (loaded 2-core VM).
TINY = {"steps": "3", "warmup": "1", "batch_size": "8", "image_size": "32", "metrics": "none",
        "device": "cpu", "quiet": True}


def tiny_run_args(**changes) -> list[str]:
    """TINY as command-line arguments, with ``changes`` applied: ``steps=4`` sets a value,
    ``quiet=False`` or ``warmup=None`` drops an option, ``in_process=True`` adds a flag.
    Keys are RunConfig-style names (``batch_size`` -> ``--batch-size``)."""
    values = {**TINY, **changes}
    argv: list[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, str(value)]
    return argv


def call_main(argv: Sequence[str]) -> tuple[int, str, str]:
    """``ganbench.cli.main(argv)`` in this process: (exit code, stdout, stderr). A SystemExit
    (``--help``, ``--version``) gives its code."""
    from ganbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *fragments: str, exit_code: int = 2,
                          prefix: Optional[str] = "ganbench: error:") -> str:
    """Check a failed command: ``code`` is ``exit_code``, stderr is exactly one line, starting
    with ``prefix`` (None: any), with no traceback and every fragment in it. The line."""
    lines = err.strip().splitlines()
    assert code == exit_code, f"exit {code}, expected {exit_code}; stderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err}"
    assert "Traceback" not in err, err
    if prefix is not None:
        assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def one_line_exit_2(argv: Sequence[str], *fragments: str) -> str:
    """Run ``ganbench argv`` in this process and check it fails as a user mistake: exit 2 and
    one ``ganbench: error:`` line holding every fragment. The line."""
    code, _, err = call_main(argv)
    return assert_one_line_error(code, err, *fragments)
