"""`ganbench new-plugin`: every scaffold installs and passes its own tests as generated."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import assert_one_line_error, call_main

from ganbench.commands.new_plugin import DIST_PREFIX, KINDS


def new_plugin(capsys, *argv: str) -> tuple[int, str, str]:
    return call_main(["new-plugin", *argv])


@pytest.mark.parametrize("bad", ["My-Loss", "my_loss", "my--loss", "loss-", "my loss",
                                 "ganbench-loss"])
def test_bad_name_is_a_one_line_error(capsys, tmp_path, bad):
    code, _, err = new_plugin(capsys, bad, "--out", str(tmp_path))
    assert_one_line_error(code, err)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_existing_folder_is_a_one_line_error(capsys, tmp_path):
    (tmp_path / f"{DIST_PREFIX}focal").mkdir()
    code, _, err = new_plugin(capsys, "focal", "--out", str(tmp_path))
    assert_one_line_error(code, err, "already exists")


def test_name_of_a_registered_plugin_is_refused(capsys, tmp_path):
    code, _, err = new_plugin(capsys, "hinge", "--out", str(tmp_path))
    assert_one_line_error(code, err, "already a loss plugin (built-in)")
    assert not any(tmp_path.iterdir())


def test_layout_and_entry_point(capsys, tmp_path):
    code, out, _ = new_plugin(capsys, "focal", "--kind", "loss", "--out", str(tmp_path))
    assert code == 0 and "ganbench run --plugins dcgan,bce,focal" in out
    root = tmp_path / "ganbench-focal"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/ganbench_focal/__init__.py",
                     "src/ganbench_focal/plugin.py", "tests/test_ganbench_focal.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.ganbench]\nfocal = "ganbench_focal.plugin"' in pyproject
    assert 'name="focal"' in (root / "src/ganbench_focal/plugin.py").read_text()


@pytest.mark.slow
def test_every_kind_installs_and_passes_its_own_tests(capsys, tmp_path):
    projects = tmp_path / "projects"
    for kind in KINDS:
        code, _, err = new_plugin(capsys, f"my-{kind}", "--kind", kind, "--out", str(projects))
        assert code == 0, err
    # One offline install of all five, as `pip install --target` users would do.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                    "--target", str(site), *sorted(map(str, projects.iterdir()))],
                   check=True, capture_output=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.pop("GANBENCH_BLOCK_PLUGINS", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                             *[f"{DIST_PREFIX}my-{kind}/tests" for kind in KINDS]],
                            cwd=projects, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    passed = [line for line in result.stdout.splitlines() if line.endswith("PASSED") or
              " PASSED " in line]
    for kind in KINDS:
        mine = [line for line in passed if f"test_ganbench_my_{kind}.py::" in line]
        assert any("test_ganbench_finds_the_plugin_through_its_entry_point" in line
                   for line in mine), kind  # installed and registered under its name
        assert len(mine) >= 2, kind  # and at least one test of the implementation itself


def test_templates_are_package_data_files():
    from pathlib import Path

    from ganbench.commands import new_plugin as cmd_new_plugin

    folder = Path(cmd_new_plugin.__file__).parent.parent / "templates" / "new_plugin"
    for kind in KINDS:
        assert (folder / f"plugin_{kind}.py.tmpl").is_file()
        assert (folder / f"test_{kind}.py.tmpl").is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"templates/new_plugin/*.tmpl"' in pyproject  # shipped in the wheel
    # no template text left in the command's code
    assert "@hookimpl" not in Path(cmd_new_plugin.__file__).read_text()


def test_closing_message_installs_test_extras_and_metric_declares_direction(capsys, tmp_path):
    code, out, _ = new_plugin(capsys, "sharp", "--kind", "metric", "--out", str(tmp_path))
    assert code == 0
    assert "pip install -e '" in out and "[test]'" in out and "python -m pytest" in out
    root = tmp_path / "ganbench-sharp"
    assert 'test = ["pytest>=7"]' in (root / "pyproject.toml").read_text()
    assert ".[test]" in (root / "README.md").read_text()
    plugin = (root / "src" / "ganbench_sharp" / "plugin.py").read_text()
    assert 'directions={"sharp_mean_image_gap": "lower"}' in plugin
