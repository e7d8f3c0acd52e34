"""ganbench/sweep/run_folder.py (issue 22, items 1, 6 and 12): a run folder is recognisable
by its manifest; a run refuses folders that are not its own; --force and the temporary-file
sweep delete only ganbench's own names; the lock survives a deleted run.lock; run.lock goes
when the run ends; the resume command is shell-quoted."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ganbench.cli import main
from ganbench.files import atomic
from ganbench.sweep import run_folder
from ganbench.sweep.run_folder import MANIFEST, FolderBusy, RunLock, run_kind
from ganbench.training.checkpoint import checkpoint_path, save_checkpoint

ARGS = ["--metrics", "none", "--steps", "4", "--warmup", "1", "--batch-size", "8",
        "--image-size", "32", "--device", "cpu", "--quiet"]


def fake_run_one(cfg, combo, run_dir, metric_names, resume=False, **progress):
    """A row without training: these tests are about the folder around the combinations."""
    return {"combo": combo.name, "status": "ok", "steps": cfg.steps}


@pytest.fixture()
def no_training(monkeypatch):
    from ganbench.sweep import runner

    monkeypatch.setattr(runner, "run_one", fake_run_one)


def one_line_exit_2(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ganbench: error: "), err
    return err[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------------------------------------------
# Folders a run must not use
# ------------------------------------------------------------------------------------------
def test_the_file_system_root_is_refused(capsys, no_training):
    before = sorted(p.name for p in Path("/").iterdir())
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", "/", *ARGS], capsys)
    assert "--out / is the file system's root" in line
    assert sorted(p.name for p in Path("/").iterdir()) == before  # not even a run.lock


def test_the_home_folder_is_refused(tmp_path, monkeypatch, capsys, no_training):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(home), *ARGS], capsys)
    assert "is your home folder" in line and list(home.iterdir()) == []


def test_a_repository_root_is_refused_but_a_folder_inside_it_is_fine(tmp_path, capsys,
                                                                     no_training):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(repo), *ARGS], capsys)
    assert "is the root of a git repository" in line
    assert main(["run", "--plugins", "dcgan", "--out", str(repo / "results" / "r"), *ARGS]) == 0


@pytest.mark.parametrize("force", [False, True])
def test_a_non_empty_folder_that_is_no_run_is_refused_and_untouched(tmp_path, capsys,
                                                                    no_training, force):
    out = tmp_path / "mine"
    (out / "models").mkdir(parents=True)
    (out / "models" / "weights.pt").write_bytes(b"mine")
    (out / "config.json").write_text('{"name": "my tool", "steps": 3}')  # not ganbench's
    (out / "results.csv").write_text("a,b\n1,2\n")
    (out / ".draft.partial").write_text("mine too")
    before = snapshot(out)
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]
                           + (["--force"] if force else []), capsys)
    assert f"--out {out} is not empty and holds no ganbench run" in line
    assert "(it has .draft.partial, config.json, models and 1 more)" in line
    assert "unfinished" not in line  # a config.json alone does not make a run
    assert snapshot(out) == before


def test_a_file_is_refused(tmp_path, capsys, no_training):
    out = tmp_path / "file"
    out.write_text("x")
    assert "is a file, not a folder" in one_line_exit_2(
        ["run", "--plugins", "dcgan", "--out", str(out), *ARGS], capsys)


def test_an_empty_folder_or_one_with_only_a_dead_runs_lock_is_used(tmp_path, no_training):
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.lock").write_text("999999\n")  # left by a killed run before its manifest
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]) == 0
    assert run_kind(out) == "manifest"


# ------------------------------------------------------------------------------------------
# What a finished run leaves, and --force
# ------------------------------------------------------------------------------------------
def test_a_finished_run_has_a_manifest_and_no_run_lock(tmp_path, no_training):
    out = tmp_path / "r"
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "ganbench run folder" and manifest["version"] == 1
    assert not (out / "run.lock").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", MANIFEST, "results.csv", "results.json", "results.md"]


def test_force_deletes_only_what_ganbench_wrote(tmp_path, no_training, capsys):
    out = tmp_path / "r"
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]) == 0
    ours = [out / "models" / "dcgan+bce.G.pt", out / "samples" / "dcgan+bce.png",
            out / "logs" / "dcgan+bce.log", out / "report.html",
            atomic.temp_path_for(out / "models" / "dcgan+bce.G.pt")]
    theirs = [out / "notes.txt", out / "models" / "mine.ckpt", out / "samples" / "sub" / "a.png",
              out / "extra" / "config.json", out / "extra" / ".x.0123abcd.partial.pt"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    save_checkpoint(checkpoint_path(out, "dcgan+bce"), {"step": 2})
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]) == 2
    assert "holds an unfinished run" in capsys.readouterr().err  # the checkpoint says so
    assert main(["run", "--plugins", "dcgan", "--out", str(out), "--force", *ARGS]) == 0
    assert not any(path.exists() for path in ours)
    assert all(path.read_bytes() == b"x" for path in theirs)
    assert not (out / "logs").exists() and not (out / "checkpoints").exists()  # emptied
    assert (out / "models").is_dir()  # still holds the user's file


def test_clear_goes_into_a_nested_scaling_run(tmp_path):
    out = tmp_path / "r"
    nested = out / "scaling-1rank"
    (nested / "models").mkdir(parents=True)
    (nested / "results.csv").write_text("combo\nx\n")
    (nested / "models" / "x.G.pt").write_bytes(b"w")
    (nested / "mine.txt").write_text("keep")
    removed = run_folder.clear(out)
    assert sorted(p.relative_to(out).as_posix() for p in removed) == [
        "scaling-1rank/models/x.G.pt", "scaling-1rank/results.csv"]
    assert (nested / "mine.txt").read_text() == "keep"


def test_a_run_sweeps_only_its_own_temporary_files(tmp_path, no_training):
    out = tmp_path / "r"
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *ARGS]) == 0
    killed = atomic.temp_path_for(out / "results.csv")  # a writer killed mid-write
    killed.write_text("half")
    keep = [out / ".notes.partial", out / "data" / "deep" / ".x.0123abcd.partial.pt",
            out / "curves" / "sub" / ".y.0123abcd.partial.csv"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep")
    save_checkpoint(checkpoint_path(out, "dcgan+bce"), {"step": 2})  # so it is unfinished
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert not killed.exists() and all(path.read_text() == "keep" for path in keep)


# ------------------------------------------------------------------------------------------
# Runs made before the manifest existed
# ------------------------------------------------------------------------------------------
def legacy_run(out: Path, rows: list) -> None:
    """What an earlier ganbench left: config.json and results.json, no manifest."""
    from ganbench.config import RunConfig

    out.mkdir(parents=True)
    cfg = RunConfig(plugins=("dcgan", "sagan"), metrics=(), device="cpu", steps=4, warmup=1,
                    batch_size=8, image_size=32, out=out)
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    (out / "results.json").write_text(json.dumps({"rows": rows}))


def test_an_old_run_folder_is_recognised_resumed_and_then_carries_the_manifest(
        tmp_path, no_training, capsys):
    out = tmp_path / "old"
    legacy_run(out, [{"combo": "dcgan+bce", "status": "ok", "steps": 4}])
    assert run_kind(out) == "legacy"
    line = one_line_exit_2(["run", "--plugins", "dcgan,sagan", "--out", str(out), *ARGS],
                           capsys)
    assert "holds an unfinished run (1 row(s) finished)" in line
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert run_kind(out) == "manifest"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["combo"] for r in rows] == ["dcgan+bce", "sagan+hinge+eager-attn"]


@pytest.mark.parametrize("files, kind", [
    ({"config.json": '{"plugins": ["dcgan"], "steps": 4, "batch_size": 8, "image_size": 32,'
                     ' "device": "cpu"}'}, "legacy"),
    ({"results.json": '{"rows": [{"combo": "dcgan+bce"}]}'}, "legacy"),
    ({"config.json": '{"plugins": "dcgan", "steps": 4, "batch_size": 8, "image_size": 32, '
                     '"device": "cpu"}'}, None),       # plugins is not a list
    ({"config.json": '{"plugins": ["dcgan"]}'}, None),  # not ganbench's settings
    ({"results.json": '{"rows": []}'}, None),
    ({"results.json": '{"rows": [{"name": 1}]}'}, None),
    ({"config.json": "not json"}, None),
    ({MANIFEST: '{"format": "something else"}'}, None),
])
def test_what_counts_as_a_run_folder(tmp_path, files, kind):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert run_kind(tmp_path) == kind


def test_resume_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"plugins": ["dcgan"]}')
    line = one_line_exit_2(["run", "--resume", str(tmp_path)], capsys)
    assert "not a ganbench run folder" in line


# ------------------------------------------------------------------------------------------
# The lock, and the resume command
# ------------------------------------------------------------------------------------------
def test_deleting_run_lock_mid_run_does_not_let_a_second_run_in(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time; from ganbench.sweep.run_folder import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / "run.lock").unlink()  # a user tidying up, mid-run
        with pytest.raises(FolderBusy, match=f"another ganbench run is writing to {out}"):
            RunLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(out).acquire()  # the holder's death released it
    assert (out / "run.lock").read_text().strip().isdigit()
    lock.release()
    assert not (out / "run.lock").exists()


def test_the_resume_command_is_shell_quoted(tmp_path, no_training, capsys):
    out = tmp_path / "my runs" / "it's here"
    legacy_run(out, [])
    save_checkpoint(checkpoint_path(out, "dcgan+bce"), {"step": 2})
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(out), *ARGS], capsys)
    command = line.split("continue it with: ", 1)[1].split(" (or add --force")[0]
    argv = shlex.split(command)
    assert argv == ["ganbench", "run", "--resume", str(out)]  # one argument, as typed
    assert main(argv[1:] + ["--quiet"]) == 0
