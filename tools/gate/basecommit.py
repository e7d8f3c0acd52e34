"""Which commit the regression gate compares against, and a temporary checkout of it.

The rule, first match wins (:func:`choose_base`):

1. ``--base REV`` / ``GANBENCH_GATE_BASE=REV``: that commit (e.g. ``$(git merge-base HEAD
   main)`` for a branch).
2. ``results/baselines/BASE_COMMIT``, when it holds a commit: a pinned reference.
3. Uncommitted changes to the package (CODE_PATHS): HEAD, so a developer's edits are compared
   with the commit they started from.
4. Otherwise (CI on a clean clone of main): the parent of the newest first-parent commit that
   changed CODE_PATHS, i.e. the code as it was before the last code change landed. A
   docs-only commit on top therefore still compares the last code change, not two equal trees.

A named commit that is not in this clone's history (a pin from a rewritten branch, a shallow
clone) falls back to HEAD~1, and the gate says so. A repository with no HEAD~1 is an error
(exit 2): there is nothing to compare against, and a gate that compared HEAD with itself would
pass while proving nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
PIN_FILE = REPO / "results" / "baselines" / "BASE_COMMIT"
BASE_ENV = "GANBENCH_GATE_BASE"
# What "code" means for rule 3 and 4: the package and how it is installed.
CODE_PATHS = ("ganbench", "plugins", "kernels", "pyproject.toml")


class NoBaseError(RuntimeError):
    """No commit to compare against: a user-facing one-line error."""


def git(*args: str, repo: Path = REPO, check: bool = True) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise NoBaseError(f"git {' '.join(args)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout.strip()


def commit_of(rev: str, repo: Path = REPO) -> Optional[str]:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                          f"{rev}^{{commit}}"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def in_history(commit: str, repo: Path = REPO) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit,
                           "HEAD"], capture_output=True).returncode == 0


def code_is_dirty(repo: Path = REPO) -> bool:
    return bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS,
                    repo=repo))


def last_code_change_parent(repo: Path = REPO) -> Optional[str]:
    """Parent of the newest first-parent commit that changed CODE_PATHS (None if none)."""
    newest = git("log", "--first-parent", "-n", "1", "--format=%H", "HEAD", "--",
                 *CODE_PATHS, repo=repo)
    return commit_of(f"{newest}~1", repo) if newest else None


@dataclass(frozen=True)
class Base:
    commit: str
    why: str          # one line: which rule chose it
    fallback: bool = False


def choose_base(explicit: Optional[str] = None, repo: Path = REPO,
                pin_file: Path = PIN_FILE) -> Base:
    """The commit to compare the working tree against (see the module docstring)."""
    explicit = explicit or os.environ.get(BASE_ENV) or None
    named, source = None, None
    if explicit:
        named, source = explicit, "--base" if not os.environ.get(BASE_ENV) else BASE_ENV
    elif pin_file.is_file() and pin_file.read_text().split():
        named, source = pin_file.read_text().split()[0], str(pin_file.relative_to(repo))
    if named:
        commit = commit_of(named, repo)
        if commit and in_history(commit, repo):
            return Base(commit, f"{named} named by {source}")
        return _fallback(repo, f"{named} named by {source} is not in this clone's history")
    if code_is_dirty(repo):
        return Base(git("rev-parse", "HEAD", repo=repo),
                    "HEAD: the working tree has uncommitted code changes")
    parent = last_code_change_parent(repo)
    if parent:
        changed = git("log", "--first-parent", "-n", "1", "--format=%h %s", "HEAD", "--",
                      *CODE_PATHS, repo=repo)
        return Base(parent, f"parent of the last commit that changed code ({changed[:60]})")
    return _fallback(repo, "no commit with a parent changed the code")


def _fallback(repo: Path, reason: str) -> Base:
    commit = commit_of("HEAD~1", repo)
    if commit is None:
        raise NoBaseError(f"{reason}, and HEAD has no parent: nothing to compare against "
                          "(fetch the history, or pass --base REV)")
    return Base(commit, f"HEAD~1 (FALLBACK: {reason})", fallback=True)


class Worktree:
    """A detached ``git worktree`` of ``commit`` in a temporary folder, removed on exit."""

    def __init__(self, commit: str, repo: Path = REPO):
        self.commit, self.repo = commit, repo
        self.parent = Path(tempfile.mkdtemp(prefix="ganbench-gate-"))
        self.path = self.parent / "base"

    def __enter__(self) -> Path:
        git("worktree", "add", "--detach", "--quiet", str(self.path), self.commit,
            repo=self.repo)
        return self.path

    def __exit__(self, *exc) -> None:
        subprocess.run(["git", "-C", str(self.repo), "worktree", "remove", "--force",
                        str(self.path)], capture_output=True)
        shutil.rmtree(self.parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(self.repo), "worktree", "prune"], capture_output=True)
