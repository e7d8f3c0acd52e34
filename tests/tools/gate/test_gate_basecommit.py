"""tools/gate/basecommit.py: the base is the commit the work started from (BASE_COMMIT, or an
override), however many commits back; no usable base is an error, never a guess."""

from __future__ import annotations

import subprocess

import pytest

from tools.gate import basecommit

PIN = "results/baselines/BASE_COMMIT"


@pytest.fixture
def submission(repo):
    """Issue 21's story: the work starts at ``start``; a change to plugins/sagan.py, then a
    one-line change to ganbench/errors.py, then the hook's commit pinning ``start``."""
    repo.commit("ganbench/errors.py", "class E(Exception): pass\n", "before the work")
    start = repo.commit("README.md", "docs\n", "the commit the work started from")
    repo.commit("plugins/sagan.py", "slow = True\n", "SAGAN: a change")
    repo.commit("ganbench/errors.py", "class E(Exception): pass  # one line\n", "errors: a line")
    repo.commit(PIN, start + "\n", "Gate base: the commit this work started from")
    return start


def test_the_pinned_start_is_the_base_however_many_commits_back(repo, submission):
    base = basecommit.choose_base(None, repo.path)
    assert base.commit == submission and PIN in base.why
    covered = basecommit.span(base.commit, repo.path)
    assert [s for _, s, _ in covered.commits] == [
        "Gate base: the commit this work started from", "errors: a line", "SAGAN: a change"]
    assert covered.code_commits == 2 and not covered.dirty
    lines = covered.lines()
    assert lines[0].startswith("span: 3 commits after the base, 2 of them changing code")
    assert "SAGAN: a change" in lines[1] and "Gate base" in lines[3]   # oldest first


def test_the_override_wins_over_the_pin_and_the_option_over_both(repo, submission, monkeypatch):
    earliest = repo.git("rev-list", "--max-parents=0", "HEAD")
    monkeypatch.setenv(basecommit.BASE_ENV, earliest[:10])
    base = basecommit.choose_base(None, repo.path)
    assert base.commit == earliest and basecommit.BASE_ENV in base.why
    assert basecommit.choose_base("HEAD~1", repo.path).why.endswith("named by --base")


def test_a_missing_pin_is_an_error_naming_the_fix_not_head_1(repo):
    repo.commit("ganbench/a.py", "1")
    repo.commit("ganbench/a.py", "2")
    with pytest.raises(basecommit.NoBaseError, match="BASE_COMMIT is missing") as err:
        basecommit.choose_base(None, repo.path)
    assert basecommit.BASE_ENV in str(err.value)


def test_an_empty_pin_is_an_error(repo):
    repo.commit("ganbench/a.py", "1")
    repo.commit(PIN, "\n")
    with pytest.raises(basecommit.NoBaseError, match="is empty"):
        basecommit.choose_base(None, repo.path)


def test_an_unknown_pinned_commit_is_an_error_not_a_fallback(repo):
    repo.commit("ganbench/a.py", "1")
    repo.commit(PIN, "0123456789abcdef0123456789abcdef01234567\n")
    with pytest.raises(basecommit.NoBaseError, match="is not a commit in this clone"):
        basecommit.choose_base(None, repo.path)


def test_a_shallow_clone_says_to_fetch_the_history(repo, submission, tmp_path):
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.path}", str(shallow)],
                   check=True, capture_output=True)
    with pytest.raises(basecommit.NoBaseError, match="shallow clone.*--unshallow"):
        basecommit.choose_base(None, shallow)


def test_a_pin_that_head_did_not_start_from_is_an_error(repo):
    repo.commit("ganbench/a.py", "1")
    repo.git("checkout", "-q", "-b", "other")
    elsewhere = repo.commit("ganbench/a.py", "other branch")
    repo.git("checkout", "-q", "main")
    repo.commit(PIN, elsewhere + "\n")
    with pytest.raises(basecommit.NoBaseError, match="not an ancestor of HEAD"):
        basecommit.choose_base(None, repo.path)


def test_the_span_flags_uncommitted_code_and_elides_long_lists(repo):
    first = repo.commit("ganbench/a.py", "0")
    for i in range(1, 13):
        repo.commit("docs/x.md" if i % 2 else "ganbench/a.py", str(i), f"commit {i}")
    (repo.path / "ganbench" / "a.py").write_text("edited")
    covered = basecommit.span(first, repo.path)
    assert len(covered.commits) == 12 and covered.code_commits == 6 and covered.dirty
    lines = covered.lines(show=4)
    assert lines[0].endswith("plus uncommitted code changes")
    assert [ln.split()[-1] for ln in lines[1:]] == ["1", "2", "...", "11", "12"]
    assert "8 more" in lines[3]
    assert basecommit.span(repo.git("rev-parse", "HEAD"), repo.path).commits == []


def test_worktree_is_removed_afterwards(repo):
    c1 = repo.commit("ganbench/a.py", "1")
    wt = basecommit.Worktree(c1, repo.path)
    with wt as path:
        assert (path / "ganbench" / "a.py").read_text() == "1"
    assert not wt.parent.exists()
    assert str(path) not in repo.git("worktree", "list")
