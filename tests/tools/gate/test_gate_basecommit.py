"""tools/gate/basecommit.py: which commit the gate compares against, and its worktree."""

from __future__ import annotations

import pytest

from tools.gate import basecommit


# ------------------------------------------------------------------------------------------
# Choosing the base commit
# ------------------------------------------------------------------------------------------
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
    assert str(path) not in repo.git("worktree", "list")


