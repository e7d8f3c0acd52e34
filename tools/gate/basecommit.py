"""Which commit the regression gate compares against, what lies between, and a checkout of it.

The base is the commit the work under test started from, however many commits back, so the
gate measures the whole submission and not only its last commit. First match wins
(:func:`choose_base`):

1. ``--base REV``, else ``GANBENCH_GATE_BASE=REV``: that commit (a developer's override, e.g.
   ``$(git merge-base HEAD main)``).
2. ``results/baselines/BASE_COMMIT`` in the tree under test: the commit the work started from.
   The before-stop hook (shared/hooks/before-stop) writes and commits it when a session ends,
   so every submission carries its own start.

There is no guess after that. A missing or empty BASE_COMMIT, or a named commit that this clone
lacks (a shallow clone, a rewritten branch) or that is not an ancestor of HEAD, is
:class:`NoBaseError`, naming why: the gate exits 2 and CI fails. Falling back to HEAD~1 or to
the parent of the last code change would measure only the end of a many-commit submission
(the bug this rule replaces: a slowdown two commits back was never measured) and could pass
having checked nothing of it.

:func:`span` lists the commits the comparison covers, so every run says what it measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
PIN = Path("results") / "baselines" / "BASE_COMMIT"   # relative to the tree under test
PIN_FILE = REPO / PIN
BASE_ENV = "GANBENCH_GATE_BASE"
# What "code" means when the span is summarised: the package and how it is installed.
CODE_PATHS = ("ganbench", "plugins", "kernels", "pyproject.toml")
HOW_TO_FIX = (f"set {BASE_ENV}=<the commit the work started from>, or restore {PIN} (the "
              "before-stop hook writes and commits it)")


class NoBaseError(RuntimeError):
    """No usable commit to compare against: a user-facing one-line error naming why."""


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


@dataclass(frozen=True)
class Base:
    commit: str
    why: str          # one line: which rule chose it


def choose_base(explicit: Optional[str] = None, repo: Path = REPO,
                pin_file: Optional[Path] = None) -> Base:
    """The commit to compare ``repo``'s working tree against (see the module docstring);
    NoBaseError, naming why, when there is none to use."""
    pin_file = repo / PIN if pin_file is None else pin_file
    if explicit:
        named, source = explicit, "--base"
    elif os.environ.get(BASE_ENV):
        named, source = os.environ[BASE_ENV], BASE_ENV
    elif not pin_file.is_file():
        raise NoBaseError(f"{_rel(pin_file, repo)} is missing, so the commit this work started "
                          f"from is unknown; the gate does not guess one: {HOW_TO_FIX}")
    else:
        words = pin_file.read_text().split()
        if not words:
            raise NoBaseError(f"{_rel(pin_file, repo)} is empty: {HOW_TO_FIX}")
        named, source = words[0], _rel(pin_file, repo)
    commit = commit_of(named, repo)
    if commit is None:
        shallow = git("rev-parse", "--is-shallow-repository", repo=repo, check=False)
        why = ("this is a shallow clone: fetch the whole history (git fetch --unshallow)"
               if shallow == "true" else "it may come from a rewritten or unfetched branch")
        raise NoBaseError(f"{named} (named by {source}) is not a commit in this clone; {why}")
    if not in_history(commit, repo):
        raise NoBaseError(f"{named} (named by {source}) is not an ancestor of HEAD, so HEAD "
                          f"did not start from it (a branch rebased or reset since): "
                          f"{HOW_TO_FIX}")
    return Base(commit, f"{named[:12]} named by {source}")


def _rel(path: Path, repo: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(repo).resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Span:
    """The commits between the base and the tree under test: ``base..HEAD``, newest first."""

    commits: list = field(default_factory=list)   # (short hash, subject, changes code?)
    dirty: bool = False                           # uncommitted changes to CODE_PATHS too

    @property
    def code_commits(self) -> int:
        return sum(1 for _, _, code in self.commits if code)

    def lines(self, show: int = 8) -> list[str]:
        """A summary line, then up to ``show`` commits (oldest first), elided in the middle."""
        n = len(self.commits)
        head = (f"span: {n} commit{'s' * (n != 1)} after the base, {self.code_commits} of "
                f"them changing code ({', '.join(CODE_PATHS)})"
                + (", plus uncommitted code changes" if self.dirty else ""))
        if n == 0 and not self.dirty:
            head += ": the tree under test is the base itself"
        rows = [f"    {h} {'code' if code else '    '} {s[:76]}"
                for h, s, code in reversed(self.commits)]
        if len(rows) > show:
            rows = (rows[:show // 2] + [f"    ... {len(rows) - show} more ..."]
                    + rows[-(show - show // 2):])
        return [head] + rows


def span(base: str, repo: Path = REPO) -> Span:
    """The commits ``base..HEAD`` of ``repo`` (each marked if it touches CODE_PATHS), and
    whether its working tree has uncommitted code changes."""
    log = git("log", "--format=%x00%h%x01%s", "--name-only", f"{base}..HEAD", repo=repo)
    commits = []
    for entry in log.split("\x00")[1:]:
        header, _, files = entry.partition("\n")
        short, _, subject = header.partition("\x01")
        changed = [f for f in files.split("\n") if f.strip()]
        code = any(f == c or f.startswith(c + "/") for f in changed for c in CODE_PATHS)
        commits.append((short, subject, code))
    return Span(commits, code_is_dirty(repo))


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
