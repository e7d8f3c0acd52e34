"""The regression gate as a pytest test (marker ``regression``), for those who run it through
pytest: ``python -m pytest -m regression tests/benchmarks``. CI calls the gate directly
(``python -m tools.gate`` in .ci/run), which is the same run with exit codes that tell a
regression (1) from a gate that cannot run (2). The gate's code is the package tools.gate.
"""

from __future__ import annotations

import sys

import pytest

from tools.gate import gate

pytestmark = pytest.mark.regression


def test_this_checkout_is_not_slower_or_worse_than_its_base(capsys):
    def echo(line: str) -> None:
        with capsys.disabled():
            print(line, file=sys.stderr, flush=True)

    report = gate.run_gate(echo=echo)
    assert report.timing, "the gate timed nothing"
    assert report.quality, "the gate checked no architecture's quality"
    assert not report.failures, "\n".join(report.failures)
