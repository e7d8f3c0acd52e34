"""Fixtures for the gate's unit tests (tools/gate): a copy of this checkout's package, a scratch
git repository, and a Python process started where the gate starts its workers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def package_copy(tmp_path):
    """A function: copy this checkout's ganbench/, plugins/, kernels/ and pyproject.toml into a
    fresh folder and return it (a tree the gate can import or plant in)."""
    def copy(name: str = "copy") -> Path:
        dst = tmp_path / name
        for part in ("ganbench", "plugins", "kernels"):
            shutil.copytree(REPO / part, dst / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
        return dst
    return copy


@pytest.fixture
def run_python():
    """A function: run a Python script in a fresh process from the repository root (where
    ``tools.gate`` imports, as in the gate's workers) with built-in plugins only."""
    def run(script: str) -> subprocess.CompletedProcess:
        env_script = "import os\nos.environ['GANBENCH_LOAD_PLUGINS'] = ''\n"
        return subprocess.run([sys.executable, "-c", env_script + textwrap.dedent(script)],
                              capture_output=True, text=True, cwd=REPO)
    return run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A scratch git repository: ``.commit(path, text, message=None)`` writes, commits and
    returns the new commit's hash; ``.git(*args)`` runs git in it. GANBENCH_GATE_BASE is
    cleared, so only what a test sets chooses the base."""
    from tools.gate import basecommit

    monkeypatch.delenv(basecommit.BASE_ENV, raising=False)
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "t@example.com")
    git(r, "config", "user.name", "t")

    def commit(path: str, text: str, message: str | None = None) -> str:
        (r / path).parent.mkdir(parents=True, exist_ok=True)
        (r / path).write_text(text)
        git(r, "add", path)
        git(r, "commit", "-q", "-m", message or path)
        return git(r, "rev-parse", "HEAD")

    return SimpleNamespace(path=r, commit=commit, git=lambda *a: git(r, *a))
