"""tools/gate/selftest.py: the planted regressions still apply to today's code, and the
many-commit case builds the history it claims to."""

from __future__ import annotations

import subprocess

import pytest

from tools.gate import basecommit, selftest


@pytest.mark.parametrize("case", [c for c in selftest.CASES if c.plant and not c.pinned],
                         ids=lambda c: c.key)
def test_plants_apply_and_compile(package_copy, case):
    tree = package_copy()
    before = {p: p.read_text() for p in tree.rglob("*.py")}
    case.plant(tree)
    changed = [p for p in tree.rglob("*.py") if p.read_text() != before[p]]
    assert len(changed) == 1
    compile(changed[0].read_text(), str(changed[0]), "exec")


def test_the_history_case_hides_the_slowdown_two_commits_below_head(package_copy, monkeypatch):
    monkeypatch.delenv(basecommit.BASE_ENV, raising=False)
    tree = package_copy()
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start"]):
        subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True)
    start = basecommit.git("rev-parse", "HEAD", repo=tree)
    selftest.plant_in_history(tree)

    def files(rev: str) -> list[str]:
        return basecommit.git("show", "--format=", "--name-only", rev, repo=tree).split()

    assert files("HEAD~2") == ["plugins/dcgan.py"]
    assert files("HEAD~1") == ["ganbench/errors.py"]
    added = [ln for ln in basecommit.git("show", "--format=", "HEAD~1", repo=tree).splitlines()
             if ln.startswith("+") and not ln.startswith("+++")]
    assert len(added) == 1 and added[0].startswith("+#")          # one comment line
    assert files("HEAD") == [str(basecommit.PIN)]
    assert basecommit.choose_base(None, tree).commit == start       # the pin, no override
    assert selftest.old_rule_base(tree) == basecommit.git("rev-parse", "HEAD~2", repo=tree)
    assert len(basecommit.span(start, tree).commits) == 3
