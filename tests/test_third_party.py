"""The example plugin distribution, installed the way a user would install it.

``pip install --target`` builds a wheel from examples/ganbench-extra-losses (no network: no
dependencies, no build isolation, no index) and leaves a ``*.dist-info`` with the ``ganbench``
entry point; a subprocess with that folder on PYTHONPATH is then a Python in which the plugin is
installed, and ganbench must find it without any change to ganbench itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import re
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganbench-extra-losses"
# name and version from the example's pyproject (tomllib is 3.11+; ganbench supports 3.10)
PROJECT = dict(re.findall(r'^(name|version) = "([^"]+)"$',
                          (EXAMPLE / "pyproject.toml").read_text(), flags=re.MULTILINE))
SOURCE = f"{PROJECT['name']}=={PROJECT['version']}"  # what `ganbench plugins` must show


def pip_install_target(source: Path, target: Path) -> None:
    """Install ``source`` into ``target`` offline, as ``pip install --target`` users do."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(target), str(source)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(copy of the example, environment in which it is installed)."""
    root = tmp_path_factory.mktemp("third_party")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources, and the
    # example folder belongs to the repository.
    copy = root / "ganbench-extra-losses"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                 "__pycache__"))
    target = root / "site"
    pip_install_target(copy, target)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    env["GANBENCH_LOAD_PLUGINS"] = PROJECT["name"]  # this plugin, not whatever else is installed
    env.pop("GANBENCH_BLOCK_PLUGINS", None)
    return copy, env


def ganbench(env: dict, *argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganbench", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_plugins_lists_both_losses_with_the_distribution_as_source(installed):
    _, env = installed
    result = ganbench(env, "plugins", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.startswith("  ") and line.split()}
    for name in ("lsgan", "wgan-gp"):
        assert rows[name][1:3] == [SOURCE, "yes"], rows.get(name)
    assert "broken:" not in result.stdout and "PluginWarning" not in result.stderr


def test_blocking_the_distribution_hides_its_losses(installed):
    _, env = installed
    result = ganbench({**env, "GANBENCH_BLOCK_PLUGINS": PROJECT["name"]}, "plugins")
    assert result.returncode == 0, result.stderr
    assert "lsgan" not in result.stdout and "hinge" in result.stdout


@pytest.mark.slow
def test_the_example_passes_its_own_tests_when_installed(installed):
    copy, env = installed
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests"], cwd=copy, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout


@pytest.mark.slow
def test_run_sagan_with_wgan_gp(installed, tmp_path):
    # WGAN-GP calls SAGAN's discriminator a third time and differentiates through it twice
    # (spectral norm, attention): the whole D step must work through the public LossInputs.
    _, env = installed
    out = tmp_path / "run"
    result = ganbench(env, "run", "--plugins", "sagan,wgan-gp", "--metrics", "none",
                      "--steps", "4", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
                      "--in-process", "--quiet", "--device", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads((out / "results.json").read_text())["rows"]
    assert row["combo"] == "sagan+wgan-gp+eager-attn"
    assert row["status"] == "ok" and row["loss"] == "wgan-gp" and row["steps"] == 4
    assert math.isfinite(row["d_loss_last10"]) and math.isfinite(row["g_loss_last10"])
    assert "wgan-gp" in (out / "results.md").read_text()
