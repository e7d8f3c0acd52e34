"""Unit tests of the regression gate's parts (quick suite: no timing, a few seconds).

The gate itself runs with ``python -m tools.gate``; its proof against planted regressions is
``python -m tools.gate.selftest`` (results/regression-gate-selftest.md).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.gate import basecommit, gate, gatestats, selftest, treeimport

REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------
def test_walsh_averages_by_hand():
    assert gatestats.walsh_averages([0.0, 1.0, 4.0]) == [0.0, 0.5, 1.0, 2.0, 2.5, 4.0]


def test_hodges_lehmann_by_hand():
    # d = 1..10: Walsh averages are symmetric about 5.5, so the estimate is 5.5. n = 10,
    # M = 55, sd = sqrt(10*11*21/24) = 9.811, K = floor(27.5 - 1.96*9.811 - 0.5) = 7: the
    # interval is the 8th smallest and 8th largest Walsh average, 3.0 and 8.0 (the exact
    # table's 95% interval, ranks 9 and 47, is [3.5, 7.5]: ours is one rank wider).
    est, lo, hi = gatestats.hodges_lehmann_ci([float(i) for i in range(1, 11)])
    assert gatestats.signed_rank_k(10) == 7
    assert (est, lo, hi) == (5.5, 3.0, 8.0)


def test_identical_sides_are_within_noise():
    old = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.3, 0.85, 1.0]
    c = gatestats.compare("x", old, old, calls=1, limit=1.05)
    assert c.ratio == 1.0 and c.low == 1.0 and c.high == 1.0
    assert c.verdict == "within noise" and not c.failed


def test_a_clear_slowdown_fails_and_a_small_one_does_not():
    old = [1.0 + 0.01 * (i % 5) for i in range(20)]
    noise = [1.0 + 0.005 * ((7 * i) % 5 - 2) for i in range(20)]
    slow = gatestats.compare("x", old, [o * 1.10 * n for o, n in zip(old, noise)], 1, 1.05)
    assert slow.verdict == "REGRESSION" and slow.failed and slow.low > 1.05
    small = gatestats.compare("x", old, [o * 1.03 * n for o, n in zip(old, noise)], 1, 1.05)
    assert small.verdict == "slower" and not small.failed
    fast = gatestats.compare("x", old, [o * 0.8 * n for o, n in zip(old, noise)], 1, 1.05)
    assert fast.verdict == "faster"
    assert math.isclose(fast.ratio, 0.8, rel_tol=0.02)


def test_one_outlier_round_does_not_fail():
    old = [1.0] * 20
    new = [1.0 + 0.002 * (i % 3 - 1) for i in range(20)]
    new[5] = 3.0  # a neighbour took the core during one block
    c = gatestats.compare("x", old, new, 1, 1.05)
    assert not c.failed and c.low < 1.01


def test_compare_refuses_unpaired_rounds():
    with pytest.raises(ValueError):
        gatestats.compare("x", [1.0, 2.0], [1.0], 1, 1.05)


def test_every_line_names_the_interval_and_verdict():
    c = gatestats.compare("step dcgan", [0.1] * 10, [0.2] * 10, calls=2, limit=1.05)
    line = c.line()
    assert line.startswith("step dcgan") and "50.00 ms" in line and "100.00 ms" in line
    assert "ratio  2.000" in line and "[2.000, 2.000]" in line and "REGRESSION" in line
    assert gatestats.unpaired("attn new-attn", "new, no baseline").failed is False


# ------------------------------------------------------------------------------------------
# Quality rule
# ------------------------------------------------------------------------------------------
def test_quality_rule():
    old = {"status": "ok", "fid_digits": 400.0, "modes_covered": 2}
    ok = gate.judge_quality("dcgan", old, {"status": "ok", "fid_digits": 480.0,
                                           "modes_covered": 1})
    assert not ok["failed"] and "limit 500.0" in ok["verdict"]
    bad = gate.judge_quality("dcgan", old, {"status": "ok", "fid_digits": 520.0,
                                            "modes_covered": 2})
    assert bad["failed"] and bad["verdict"].startswith("REGRESSION")
    diverged = gate.judge_quality("dcgan", old, {"status": "diverged", "fid_digits": 300.0,
                                                 "modes_covered": 2})
    assert diverged["failed"]


# ------------------------------------------------------------------------------------------
# Importing ganbench from another tree
# ------------------------------------------------------------------------------------------
def _copy_tree(dst: Path) -> Path:
    for name in ("ganbench", "plugins", "kernels"):
        shutil.copytree(REPO / name, dst / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_bootstrap_imports_every_module_from_the_given_tree(tmp_path):
    tree = _copy_tree(tmp_path / "copy")
    # Mark the copy's plugin so the test sees which file registered it.
    dcgan = tree / "plugins" / "dcgan.py"
    dcgan.write_text(dcgan.read_text() + "\nGATE_COPY_MARK = 1\n")
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["GANBENCH_LOAD_PLUGINS"] = ""
        from tools.gate import treeimport
        treeimport.install({str(tree)!r})
        from ganbench.registry import get_registry, DEFAULT_PLUGINS
        reg = get_registry()
        import ganbench.plugins.dcgan as d, ganbench.kernels.attention as ka
        assert d.GATE_COPY_MARK == 1
        assert "dcgan" in reg.architectures and "eager-attn" in reg.attention
        assert all(m in sys.modules for m in DEFAULT_PLUGINS)
        treeimport.assert_from_tree({str(tree)!r})
        print(ka.__file__)
    """)
    # From the repository root, as the gate starts its workers: tools.gate is importable there.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(tree / "kernels" / "attention" / "__init__.py")


def test_bootstrap_refuses_after_ganbench_was_imported(tmp_path):
    import ganbench  # noqa: F401  (already imported by the test session anyway)
    with pytest.raises(RuntimeError, match="before the tree bootstrap"):
        treeimport.install(tmp_path)
    assert treeimport.foreign_modules(tmp_path)  # the installed ganbench is foreign there


# ------------------------------------------------------------------------------------------
# Choosing the base commit
# ------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv(basecommit.BASE_ENV, raising=False)
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q", "-b", "main")
    _git(r, "config", "user.email", "t@example.com")
    _git(r, "config", "user.name", "t")

    def commit(path: str, text: str) -> str:
        (r / path).parent.mkdir(parents=True, exist_ok=True)
        (r / path).write_text(text)
        _git(r, "add", path)
        _git(r, "commit", "-q", "-m", path)
        return _git(r, "rev-parse", "HEAD")

    return SimpleNamespace(path=r, commit=commit)


def test_base_is_parent_of_last_code_change_not_a_docs_commit(repo):
    c1 = repo.commit("ganbench/a.py", "1")
    c2 = repo.commit("ganbench/a.py", "2")
    repo.commit("README.md", "docs")
    base = basecommit.choose_base(None, repo.path, repo.path / "PIN")
    assert base.commit == c1 and not base.fallback and "last commit that changed code" in base.why
    assert c2  # the code change under test is c2


def test_uncommitted_code_is_compared_with_head(repo):
    repo.commit("ganbench/a.py", "1")
    head = repo.commit("ganbench/a.py", "2")
    (repo.path / "ganbench" / "a.py").write_text("3")
    base = basecommit.choose_base(None, repo.path, repo.path / "PIN")
    assert base.commit == head and "uncommitted" in base.why


def test_pinned_commit_and_fallback_when_it_is_not_in_history(repo):
    c1 = repo.commit("ganbench/a.py", "1")
    c2 = repo.commit("ganbench/a.py", "2")
    repo.commit("ganbench/a.py", "3")
    pin = repo.path / "PIN"
    pin.write_text(c1 + "\n")
    assert basecommit.choose_base(None, repo.path, pin).commit == c1
    pin.write_text("0123456789abcdef0123456789abcdef01234567\n")
    base = basecommit.choose_base(None, repo.path, pin)
    assert base.fallback and base.commit == c2 and "not in this clone's history" in base.why


def test_explicit_base_wins(repo, monkeypatch):
    c1 = repo.commit("ganbench/a.py", "1")
    repo.commit("ganbench/a.py", "2")
    monkeypatch.setenv(basecommit.BASE_ENV, c1[:10])
    assert basecommit.choose_base(None, repo.path, repo.path / "PIN").commit == c1


def test_a_single_commit_is_an_error_not_a_skip(repo):
    repo.commit("ganbench/a.py", "1")
    with pytest.raises(basecommit.NoBaseError, match="nothing to compare against"):
        basecommit.choose_base(None, repo.path, repo.path / "PIN")


def test_worktree_is_removed_afterwards(repo):
    c1 = repo.commit("ganbench/a.py", "1")
    wt = basecommit.Worktree(c1, repo.path)
    with wt as path:
        assert (path / "ganbench" / "a.py").read_text() == "1"
    assert not wt.parent.exists()
    assert str(path) not in _git(repo.path, "worktree", "list")


# ------------------------------------------------------------------------------------------
# The self-test's plants still apply to today's code
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in selftest.CASES if c.plant], ids=lambda c: c.key)
def test_plants_apply_and_compile(tmp_path, case):
    tree = _copy_tree(tmp_path / "copy")
    before = {p: p.read_text() for p in tree.rglob("*.py")}
    case.plant(tree)
    changed = [p for p in tree.rglob("*.py") if p.read_text() != before[p]]
    assert len(changed) == 1
    compile(changed[0].read_text(), str(changed[0]), "exec")
