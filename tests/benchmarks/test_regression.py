"""The regression gate as a pytest test (marker ``regression``): this checkout against its base
commit, timed side by side and compared for quality (gate.py says how; basecommit.py says which
commit). It needs no per-machine baseline, so it runs, and can fail, on any machine.

    pytest -m regression tests/benchmarks        # ~3 min on 2 quiet cores, ~8 loaded

Every comparison line is printed as it is made. GANBENCH_GATE_BASE=REV picks the base commit.
"""

from __future__ import annotations

import sys

import pytest

import gate

pytestmark = pytest.mark.regression


def test_this_checkout_is_not_slower_or_worse_than_its_base(capsys):
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        with capsys.disabled():
            print(line, file=sys.stderr, flush=True)

    report = gate.run_gate(echo=echo)
    assert report.timing, "the gate timed nothing"
    assert report.quality, "the gate checked no architecture's quality"
    assert not report.failures, "\n".join(report.failures)
