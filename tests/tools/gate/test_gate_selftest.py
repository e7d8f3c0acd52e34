"""tools/gate/selftest.py: the planted regressions still apply to today's code."""

from __future__ import annotations

import pytest

from tools.gate import selftest


# ------------------------------------------------------------------------------------------
# The self-test's plants still apply to today's code
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in selftest.CASES if c.plant], ids=lambda c: c.key)
def test_plants_apply_and_compile(package_copy, case):
    tree = package_copy()
    before = {p: p.read_text() for p in tree.rglob("*.py")}
    case.plant(tree)
    changed = [p for p in tree.rglob("*.py") if p.read_text() != before[p]]
    assert len(changed) == 1
    compile(changed[0].read_text(), str(changed[0]), "exec")
