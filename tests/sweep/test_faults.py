"""Fault injection: a sweep survives what goes wrong inside it, and loses no finished row.

The faults come from one small loss plugin (FAULT_PLUGIN below): BCE that, from its third
discriminator step on, raises, returns NaN, raises CUDA's out-of-memory error, exits the
process, kills it with SIGKILL (what the kernel's OOM killer does), or just sleeps. It is used
two ways: registered in-process on a PluginManager (fast, for what a Python exception does) and
installed as a real distribution on PYTHONPATH, so spawned workers and `ganbench` subprocesses
find it through the entry point (for hard exits and signals, which only a process shows).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import tiny_run_args

from ganbench import registry as registry_module
from ganbench.files import atomic
from ganbench.results import store as results
from ganbench.training.checkpoint import (CheckpointError, checkpoint_path, load_checkpoint,
                                 save_checkpoint)
from ganbench.cli import main
from ganbench.files.atomic import write_text as atomic_write_text

FAULT_PLUGIN = '''
"""BCE with an injected fault from the FAIL_AT-th discriminator step on."""
import os
import signal
import time

import torch

from ganbench.hookspecs import hookimpl
from ganbench.plugins.losses import BCELoss
from ganbench.specs import LossSpec

FAIL_AT = 3
FAULTS = ("raise", "nan", "oom", "exit", "kill", "slow", "killonce", "enospc", "warn")
MARKER_ENV = "FAULTPLUG_MARKER"  # killonce: SIGKILL only while this file does not exist


def _full_disk_for_models():
    """From now on in this process, fsync of any file whose name holds ".G." (a generator's
    weights being saved) fails as on a full disk: what the kernel reports when delayed
    allocation finds no room."""
    import errno

    real_fsync = os.fsync

    def fsync(fd):
        if ".G." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    os.fsync = fsync


class Faulty(BCELoss):
    def __init__(self, fault):
        self.fault, self.calls = fault, 0

    def d_loss(self, inputs):
        self.calls += 1
        loss = super().d_loss(inputs)
        if self.calls < FAIL_AT:
            return loss
        if self.fault == "raise":
            raise ValueError(f"injected fault at step {FAIL_AT}")
        if self.fault == "nan":
            return loss * float("nan")
        if self.fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB "
                                              "(injected)")
        if self.fault == "exit":
            os._exit(3)
        if self.fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "slow":
            time.sleep(0.2)
        if self.fault == "killonce" and not os.path.exists(os.environ[MARKER_ENV]):
            open(os.environ[MARKER_ENV], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "warn":
            import warnings

            warnings.warn("faultplug: injected warning", UserWarning)
        return loss


def make(fault):
    if fault == "enospc":
        _full_disk_for_models()
    return Faulty(fault)


@hookimpl
def ganbench_register_losses(register):
    for fault in FAULTS:
        register(LossSpec(name=f"{fault}-loss", summary=f"BCE with an injected fault: {fault}",
                          factory=lambda fault=fault: make(fault)))
'''

TINY = tiny_run_args(steps=None)  # each test gives its own --steps


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory) -> Path:
    """A folder on which the fault plugin is an installed distribution (module + dist-info)."""
    site = tmp_path_factory.mktemp("fault_site")
    (site / "faultplug.py").write_text(FAULT_PLUGIN)
    info = site / "faultplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faultplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ganbench]\nfaults = faultplug\n")
    return site


@pytest.fixture()
def fault_env(fault_site) -> dict:
    """Environment of a `ganbench` subprocess in which the fault plugin is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fault_site), env.get("PYTHONPATH")]))
    env["GANBENCH_LOAD_PLUGINS"] = "faultplug"
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    return env


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread. On the shared 2-core machine, two OpenMP threads competing with
    other processes made a tiny DCGAN step 25x slower (1.6 s instead of 60 ms); these tests
    time nothing, so one thread keeps them fast whatever else runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def faults_in_process(fault_site, monkeypatch):
    """The process-wide registry with the fault losses registered on its PluginManager."""
    spec = importlib.util.spec_from_file_location("faultplug_inproc",
                                                  fault_site / "faultplug.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pm, broken = registry_module.make_plugin_manager(load_entrypoints=False)
    pm.register(module, name="faultplug")
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.collect(pm, broken))
    yield
    # monkeypatch restores the previous registry


def ganbench(env: dict, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganbench", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)


def rows_of(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "results.json").read_text())["rows"]


def assert_table_valid(run_dir: Path, n_rows: int) -> None:
    """All three tables present, parseable, agreeing on the rows; no temporary files left."""
    rows = rows_of(run_dir)
    csv = pd.read_csv(run_dir / "results.csv")
    assert len(rows) == len(csv) == n_rows
    assert list(csv["combo"]) == [row["combo"] for row in rows]
    md = (run_dir / "results.md").read_text()
    assert all(row["combo"] in md for row in rows)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


def fake_run_one(cfg, combo, run_dir, metric_names, resume=False, **progress):
    """A row without training: these tests are about what happens around a combination."""
    if combo.loss == "interrupt-me":
        raise KeyboardInterrupt
    return {"combo": combo.name, "status": "ok", "steps": cfg.steps, "resumed": resume}


# ------------------------------------------------------------------------------------------
# Faults inside a combination
# ------------------------------------------------------------------------------------------
def test_exception_nan_and_oom_in_process_become_rows(faults_in_process, tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--plugins", "dcgan,raise-loss,nan-loss,oom-loss,bce", "--steps", "4",
                 "--in-process", "--out", str(out), *TINY])
    assert code == 1  # some combinations did not finish ok
    assert_table_valid(out, 4)
    rows = {row["combo"]: row for row in rows_of(out)}

    failed = rows["dcgan+raise-loss"]
    assert failed["status"] == "failed"
    assert failed["error"] == "ValueError: injected fault at step 3"
    assert "Traceback" in (out / "logs" / "dcgan+raise-loss.log").read_text()

    diverged = rows["dcgan+nan-loss"]
    assert diverged["status"] == "diverged" and diverged["diverged_at"] == 3
    assert math.isnan(diverged["d_loss_last10"])  # the row keeps what the loop saw
    assert not (out / "samples" / "dcgan+nan-loss.png").exists()  # no grid of a NaN generator
    assert not (out / "models" / "dcgan+nan-loss.G.pt").exists()

    assert rows["dcgan+oom-loss"]["status"] == "oom"
    assert "out of memory" in rows["dcgan+oom-loss"]["error"]

    ok = rows["dcgan+bce"]  # the combination after three faults still ran, and cleanly
    assert ok["status"] == "ok" and ok["steps"] == 4
    assert (out / "samples" / "dcgan+bce.png").exists()
    assert ok["triton_interpret"] is (os.environ.get("TRITON_INTERPRET") == "1")


@pytest.mark.slow  # 8 s CPU (user+sys), measured on the loaded 2-core VM
def test_hard_crashes_in_workers_become_rows_and_the_sweep_goes_on(fault_env, tmp_path):
    out = tmp_path / "run"
    # Two hard deaths in a row: the second combination runs although the first one's process
    # vanished without a word (the ok row after faults is shown in-process above).
    res = ganbench(fault_env, "run", "--plugins", "dcgan,exit-loss,kill-loss",
                   "--steps", "4", "--out", str(out), *TINY)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert_table_valid(out, 2)
    rows = {row["combo"]: row for row in rows_of(out)}
    assert rows["dcgan+exit-loss"]["status"] == "crashed"
    assert rows["dcgan+exit-loss"]["error"] == "worker exited with code 3 before reporting"
    assert rows["dcgan+kill-loss"]["status"] == "crashed"
    assert "killed by SIGKILL" in rows["dcgan+kill-loss"]["error"]


def test_failure_status_classifies_out_of_memory():
    from ganbench.sweep.execute import failure_status

    assert failure_status(torch.cuda.OutOfMemoryError("CUDA out of memory.")) == "oom"
    assert failure_status(RuntimeError("CUDA error: out of memory")) == "oom"
    assert failure_status(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "oom"
    assert failure_status(MemoryError()) == "oom"
    assert failure_status(RuntimeError("shape mismatch")) == "failed"


# ------------------------------------------------------------------------------------------
# Interrupts and resume
# ------------------------------------------------------------------------------------------
def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ganbench exited ({proc.returncode}) before {path} appeared: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow  # 15 s CPU (user+sys), measured on the loaded 2-core VM
def test_sigterm_mid_run_keeps_finished_rows_and_resume_finishes_the_rest(fault_env, tmp_path):
    out = tmp_path / "run"
    # slow-loss sleeps 0.2 s a step from step 3 on: after the first checkpoint (step 2) the
    # run has 2 s left at least, ample time to stop it mid-combination.
    steps = 12
    proc = subprocess.Popen([sys.executable, "-m", "ganbench", "run", "--plugins",
                             "dcgan,bce,slow-loss", "--steps", str(steps), "--checkpoint-every",
                             "2", "--out", str(out), *TINY],
                            env=fault_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ckpt = checkpoint_path(out, "dcgan+slow-loss")
    wait_for(ckpt, proc)  # dcgan+bce has finished and dcgan+slow-loss is under way
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        f"ganbench: interrupted by SIGTERM; finished rows are in {out}; continue with: "
        f"ganbench run --resume {out}"]
    assert_table_valid(out, 1)
    [first] = rows_of(out)
    assert first["combo"] == "dcgan+bce" and first["status"] == "ok"
    assert first["resumed_from_step"] is None
    saved_step = load_checkpoint(ckpt)["step"]
    assert saved_step % 2 == 0 and 2 <= saved_step < steps
    time.sleep(1.0)  # an orphaned worker would checkpoint again within 0.5 s
    assert load_checkpoint(ckpt)["step"] == saved_step, "the worker outlived its parent"

    # In-process this time: the spawned worker's termination was the point of the first part.
    res = ganbench(fault_env, "run", "--resume", str(out), "--quiet", "--in-process")
    assert res.returncode == 0, res.stderr
    assert_table_valid(out, 2)
    kept, resumed = rows_of(out)
    assert kept == first  # byte for byte the same row: not lost, not re-run
    assert resumed["combo"] == "dcgan+slow-loss" and resumed["status"] == "ok"
    assert resumed["steps"] == steps
    assert resumed["resumed_from_step"] == saved_step
    # Warm-up again after the resume: one untimed step in each process.
    assert resumed["timed_steps"] == steps - 2
    assert not ckpt.exists()  # discarded once the row was on disk


def test_ctrl_c_during_a_combination_exits_130_with_the_finished_rows(
        tmp_path, monkeypatch, capsys):
    from ganbench.sweep import runner
    from ganbench.specs import LossSpec

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    registry = registry_module.get_registry()
    registry.add("loss", LossSpec("interrupt-me", "raises KeyboardInterrupt", object), "test")
    try:
        out = tmp_path / "run"
        code = main(["run", "--plugins", "dcgan,bce,interrupt-me,hinge", "--steps", "3",
                     "--out", str(out), *TINY])
    finally:
        del registry.entries["loss"]["interrupt-me"]
    assert code == 130
    assert "interrupted by SIGINT" in capsys.readouterr().err
    assert_table_valid(out, 1)
    assert rows_of(out)[0]["combo"] == "dcgan+bce"


def test_resume_with_a_damaged_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    from ganbench.config import RunConfig

    out = tmp_path / "run"
    out.mkdir()
    cfg = RunConfig(plugins=("dcgan",), metrics=(), device="cpu", steps=4, warmup=1,
                    batch_size=8, image_size=32, out=out)
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    path = checkpoint_path(out, "dcgan+bce")
    save_checkpoint(path, {"step": 2, "x": torch.zeros(3)})
    path.write_bytes(path.read_bytes()[:-10])  # truncated, as by a full disk
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "is truncated" in err[0]
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--resume", "{out}", "--steps", "9"], "drop --steps"),
    (["run", "--resume", "{out}/nope"], "no such run folder"),
    (["run", "--resume", "{out}/models"], "no config.json there"),
    (["run"], "--plugins is required"),
])
def test_resume_bad_input(tmp_path, capsys, argv, fragment):
    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    (out / "config.json").write_text('{"plugins": ["dcgan"], "no_such_option": 1}')
    assert main([a.format(out=out) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_resume_with_a_config_json_from_elsewhere_is_a_user_error(tmp_path, capsys):
    from ganbench.config import RunConfig

    saved = {**RunConfig(plugins=("dcgan",)).to_dict(), "no_such_option": 1}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read run config" in err and "no_such_option" in err


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
def tiny_training(steps, checkpoint_every=0, on_checkpoint=None, resume=None):
    from ganbench.plugins import dcgan
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import ModelRequest
    from ganbench.training.loop import (Batches, TrainHooks, TrainSettings, seed_everything,
                                        train)

    seed_everything(0)
    G, D = dcgan.build(ModelRequest(8, 4))
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    settings = TrainSettings(steps=steps, warmup=1, z_dim=4, g_lr=1e-3, d_lr=1e-3,
                             betas=(0.0, 0.9), device="cpu", seed=0,
                             checkpoint_every=checkpoint_every)
    outcome = train(G, D, HingeLoss(), Batches(images, 8, 0), settings,
                    TrainHooks(on_checkpoint=on_checkpoint), resume=resume)
    return G, outcome


def test_resumed_training_matches_an_uninterrupted_one(tmp_path):
    G_full, full = tiny_training(9)
    path = tmp_path / "c.pt"
    # Checkpoints at steps 3 and 6; the one kept is from step 6, as if stopped at step 7 or 8.
    tiny_training(9, checkpoint_every=3, on_checkpoint=lambda s: save_checkpoint(path, s))
    torch.manual_seed(1234)  # the global RNG is part of the checkpoint: this must not matter
    G_resumed, resumed = tiny_training(9, resume=load_checkpoint(path))
    assert resumed.resumed_from_step == 6
    assert resumed.d_losses == full.d_losses and resumed.g_losses == full.g_losses
    for a, b in zip(G_full.state_dict().values(), G_resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert len(resumed.step_seconds) == 5 + 2  # steps 2-6 timed, then 8-9 after a new warm-up


# The file format, damage, fall-back and the death of a writer mid-save: in
# tests/training/test_checkpoint.py.


class NotAllowed:
    """Any class: weights_only loading must refuse to build it, checksum or not."""


def test_checkpoint_with_code_is_refused_even_with_a_valid_checksum(tmp_path):
    import hashlib

    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": NotAllowed()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "evil.pt.sha256").write_text(f"{digest}  evil.pt\n")
    with pytest.raises(CheckpointError, match="was refused.*nothing in it ran") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_crash_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "a.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(3)})

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2, "w": torch.ones(3)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


# ------------------------------------------------------------------------------------------
# Atomic results
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_crash_during_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch, fail_in):
    path = tmp_path / "results.csv"
    atomic_write_text(path, "old\n")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fail_in == "write":  # the text goes through io.TextIOWrapper.write: make it raise
        monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _FailingFile(fd))
    else:
        monkeypatch.setattr(atomic.os, fail_in, boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary litter


class _FailingFile:
    """A file object whose write fails half-way, as on a full disk."""

    def __init__(self, fd):
        self.fh = open(fd, "wb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, text):
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        raise OSError(28, "No space left on device")


def test_results_files_are_not_private(tmp_path):
    path = tmp_path / "results.md"
    atomic_write_text(path, "x\n")
    assert path.stat().st_mode & 0o044 == 0o044 & ~atomic._UMASK  # mkstemp's 0600 undone


def test_full_disk_while_writing_a_row_keeps_the_earlier_rows(tmp_path, monkeypatch, capsys):
    from ganbench.sweep import runner

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    out = tmp_path / "run"
    real_replace = os.replace
    table_writes = []

    def replace(src, dst):
        if Path(dst).name == "results.csv":
            table_writes.append(dst)
            if len(table_writes) == 2:  # the table after the second row
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    code = main(["run", "--plugins", "dcgan,bce,hinge", "--steps", "3", "--out", str(out),
                 *TINY])
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "cannot write the results table" in err[0] and "No space left" in err[0]
    assert_table_valid(out, 1)  # the first row, in all three files
    [first] = rows_of(out)

    assert main(["run", "--resume", str(out)]) == 0  # room again: finish the sweep
    assert_table_valid(out, 2)
    kept, second = rows_of(out)
    assert kept == first and second["combo"] == "dcgan+hinge" and second["resumed"]


# ------------------------------------------------------------------------------------------
# Bad input that only a fresh process shows
# ------------------------------------------------------------------------------------------
def test_triton_attn_on_cpu_without_the_interpreter_says_how_to_debug(tmp_path):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("triton-attn runs here")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = ganbench(env, "run", "--plugins", "sagan,triton-attn", "--steps", "3",
                   "--out", str(tmp_path / "never"), *TINY)
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("ganbench: error: triton-attn cannot run on cpu")
    assert "TRITON_INTERPRET=1" in line
    assert not (tmp_path / "never").exists()


# ------------------------------------------------------------------------------------------
# Issue 14: the numbered cases. Each checks that no finished row and no checkpoint is lost,
# and resumed rows are compared with an uninterrupted run: slow-loss and killonce-loss are BCE
# plus a sleep or a one-time kill, so with the same seed they train exactly as dcgan+bce,
# whose row sits in the same table.
# ------------------------------------------------------------------------------------------
def same_training(a: dict, b: dict) -> None:
    """Two rows trained the same: equal step counts and bit-equal mean losses."""
    assert a["steps"] == b["steps"]
    assert a["d_loss_last10"] == b["d_loss_last10"]
    assert a["g_loss_last10"] == b["g_loss_last10"]


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.slow  # 9 s CPU (user+sys), measured on the loaded 2-core VM
def test_case1_a_second_run_on_a_busy_folder_exits_2_and_the_first_is_untouched(
        fault_env, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "ganbench", "run", "--plugins",
                              "dcgan,slow-loss", "--steps", "8", "--out", str(out), *TINY],
                             env=fault_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for(out / "config.json", first)
    config = (out / "config.json").read_bytes()
    second = ganbench(fault_env, "run", "--plugins", "dcgan,bce", "--steps", "3",
                      "--out", str(out), *TINY)
    assert second.returncode == 2
    [line] = second.stderr.strip().splitlines()
    assert f"another ganbench run (pid {first.pid}) is writing to {out}" in line
    assert (out / "config.json").read_bytes() == config  # the first run's, untouched
    assert first.wait(120) == 0, first.stderr.read()
    assert_table_valid(out, 1)
    assert rows_of(out)[0]["combo"] == "dcgan+slow-loss" and rows_of(out)[0]["steps"] == 8


def test_case1_a_lock_whose_holder_died_does_not_block(tmp_path):
    from ganbench.sweep.run_folder import FolderBusy, RunLock

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from ganbench.sweep.run_folder import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy, match=f"pid {holder.pid}"):
        RunLock(out).acquire()
    holder.kill()  # SIGKILL: no chance to clean up; the kernel drops the flock
    holder.wait()
    assert (out / "run.lock").read_text().strip() == str(holder.pid)  # the stale file stays
    RunLock(out).acquire().release()  # ... and does not block


def test_case2_rerun_over_an_interrupted_folder_refuses_then_force_starts_afresh(
        tmp_path, capsys):
    from ganbench.config import RunConfig

    out = tmp_path / "run"
    out.mkdir()
    cfg = RunConfig(plugins=("dcgan",), metrics=(), device="cpu", steps=4, warmup=1,
                    batch_size=8, image_size=32, out=out)
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_checkpoint(checkpoint_path(out, "dcgan+bce"), {"step": 2, "w": torch.zeros(2)})
    before = {p.name: p.read_bytes() for p in [out / "config.json", *(out / "checkpoints").iterdir()]}

    argv = ["run", "--plugins", "dcgan", "--steps", "4", "--out", str(out), *TINY]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"continue it with: ganbench run --resume {out} " in line and "--force" in line
    after = {p.name: p.read_bytes() for p in [out / "config.json", *(out / "checkpoints").iterdir()]}
    assert after == before  # nothing replaced, nothing deleted
    assert not (out / "results.json").exists()

    assert main([*argv, "--force", "--in-process"]) == 0  # on purpose: afresh
    assert_table_valid(out, 1)
    assert rows_of(out)[0]["resumed_from_step"] is None
    assert not (out / "checkpoints" / "dcgan+bce.pt").exists()
    # A finished run is refused too, without a resume command.
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds a finished run" in capsys.readouterr().err


@pytest.mark.slow  # ~30 s on the shared 2-core machine
def test_case3_a_sigkilled_worker_keeps_its_checkpoint_and_retry_failed_resumes_it(
        fault_env, faults_in_process, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setenv("FAULTPLUG_MARKER", str(tmp_path / "killed-once"))
    env = {**fault_env, "FAULTPLUG_MARKER": str(tmp_path / "killed-once")}
    # killonce-loss SIGKILLs its worker on the 3rd D step, after the checkpoint of step 2.
    res = ganbench(env, "run", "--plugins", "dcgan,bce,killonce-loss", "--steps", "6",
                   "--checkpoint-every", "2", "--out", str(out), *TINY)
    assert res.returncode == 1, res.stderr
    assert_table_valid(out, 2)
    ok, crashed = rows_of(out)
    assert crashed["status"] == "crashed" and "SIGKILL" in crashed["error"]
    ckpt = checkpoint_path(out, "dcgan+killonce-loss")
    assert load_checkpoint(ckpt)["step"] == 2  # kept for a retry
    assert not checkpoint_path(out, "dcgan+bce").exists()  # a finished row's is dropped

    # --resume alone: crashed is final; the rows stay and the user is told how to retry.
    assert main(["run", "--resume", str(out)]) == 1
    assert rows_of(out) == [ok, crashed]
    assert f"ganbench run --resume {out} --retry-failed" in capsys.readouterr().err
    assert ckpt.exists()

    # In-process now (the plugin is registered here too): the worker's death was the point.
    assert main(["run", "--resume", str(out), "--retry-failed", "--quiet", "--in-process"]) == 0
    assert_table_valid(out, 2)
    kept, retried = rows_of(out)
    assert kept == ok
    assert retried["status"] == "ok" and retried["resumed_from_step"] == 2
    same_training(retried, ok)  # as if it had never been killed
    assert not ckpt.exists()


@pytest.mark.slow  # ~30 s on the shared 2-core machine
def test_case4_sigkill_of_the_parent_takes_the_worker_with_it_then_resume(
        fault_env, faults_in_process, tmp_path, capsys):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ganbench", "run", "--plugins",
                             "dcgan,bce,slow-loss", "--steps", "12", "--checkpoint-every", "2",
                             "--out", str(out), *TINY],
                            env=fault_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ckpt = checkpoint_path(out, "dcgan+slow-loss")
    wait_for(ckpt, proc)
    workers = children_of(proc.pid)
    assert workers, "no worker process found"
    proc.kill()  # SIGKILL: the parent cannot stop its worker itself
    proc.wait()
    assert wait_until(lambda: not any(alive(w) for w in workers), 5.0), "orphaned worker"
    saved = load_checkpoint(ckpt)["step"]
    time.sleep(0.6)  # an orphan would checkpoint again within 0.4 s (0.2 s a step)
    assert load_checkpoint(ckpt)["step"] == saved
    [first] = rows_of(out)

    # Case 2 on a real interrupted folder: the original command is refused, nothing lost.
    assert main(["run", "--plugins", "dcgan,bce,slow-loss", "--steps", "12",
                 "--checkpoint-every", "2", "--out", str(out), *TINY]) == 2
    assert f"ganbench run --resume {out}" in capsys.readouterr().err
    assert rows_of(out) == [first] and load_checkpoint(ckpt)["step"] == saved

    assert main(["run", "--resume", str(out), "--in-process", "--quiet"]) == 0
    assert_table_valid(out, 2)
    kept, resumed = rows_of(out)
    assert kept == first and resumed["resumed_from_step"] == saved
    same_training(resumed, first)
    assert not [p for p in out.rglob("*.partial*")]


@pytest.mark.slow  # 10 s CPU (user+sys), measured on the loaded 2-core VM
def test_case5_a_full_disk_names_the_file_and_gives_the_combination_a_row(fault_env, tmp_path):
    out = tmp_path / "run"
    res = ganbench(fault_env, "run", "--plugins", "dcgan,bce,enospc-loss", "--steps", "3",
                   "--out", str(out), *TINY)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert_table_valid(out, 2)
    ok, full = rows_of(out)
    assert ok["status"] == "ok" and (out / "models" / "dcgan+bce.G.pt").is_file()
    model = out / "models" / "dcgan+enospc-loss.G.pt"
    assert full["status"] == "failed"
    assert full["error"] == f"cannot write {model}: No space left on device"
    assert not model.exists()  # no truncated file ...
    assert not [p for p in out.rglob("*") if ".partial" in p.name]  # ... and no litter
    assert torch.load(out / "models" / "dcgan+bce.G.pt", weights_only=True)["z_dim"] > 0


def test_case7_a_diverged_row_times_only_finite_steps_and_names_the_step(faults_in_process,
                                                                         tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--plugins", "dcgan,nan-loss", "--steps", "6", "--in-process",
            "--out", str(out), *[a for a in TINY if a != "--quiet"]]
    assert main(argv) == 1
    [row] = rows_of(out)
    assert row["status"] == "diverged" and row["diverged_at"] == 3
    # Step 1 is warm-up, step 2 is timed and finite, step 3 is NaN: one timed step only
    # (before the fix all timed steps up to the check, NaN ones included, were counted).
    assert row["timed_steps"] == 1
    assert "step 3" in row["error"]
    err = capsys.readouterr().err
    assert "dcgan+nan-loss: diverged: a loss became NaN or inf at step 3" in err


def test_case7_nothing_finite_means_no_throughput(faults_in_process, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--plugins", "dcgan,nan-loss", "--steps", "6", "--warmup", "2",
            "--in-process", "--out", str(out), *[a for a in TINY if a not in ("--warmup", "1")]]
    assert main(argv) == 1
    [row] = rows_of(out)
    assert row["timed_steps"] == 0 and math.isnan(row["img_per_s"])


def _transposed(q, k, v):  # (B, Dv, N): the bug of issue 14, case 7
    from ganbench.kernels.attention.reference import attend_reference

    return attend_reference(q, k, v).transpose(1, 2).contiguous()


def _nan_attend(q, k, v):
    return torch.full((q.shape[0], q.shape[1], v.shape[-1]), float("nan"), dtype=v.dtype)


def _double_attend(q, k, v):
    from ganbench.kernels.attention.reference import attend_reference

    return attend_reference(q, k, v).double()


@pytest.mark.parametrize("attend, fragment", [
    (_transposed, "; the contract is (B, N, Dv) = "),
    (_nan_attend, "returned NaN or inf for finite inputs"),
    (_double_attend, "returned dtype torch.float64"),
])
def test_case7_a_kernel_breaking_the_contract_fails_its_row_in_one_line(tmp_path, attend,
                                                                        fragment):
    from ganbench.specs import AttentionSpec

    registry = registry_module.get_registry()
    registry.add("attention", AttentionSpec("broken-attn", "breaks the contract",
                                            lambda: attend), "test")
    out = tmp_path / "run"
    try:
        code = main(["run", "--plugins", "sagan,broken-attn,eager-attn", "--steps", "2",
                     "--in-process", "--out", str(out), *TINY])
    finally:
        del registry.entries["attention"]["broken-attn"]
    assert code == 1
    rows = {row["combo"]: row for row in rows_of(out)}
    broken = rows["sagan+hinge+broken-attn"]
    assert broken["status"] == "failed"
    assert broken["error"].startswith("attention kernel broken-attn ") and fragment in \
        broken["error"], broken["error"]
    assert rows["sagan+hinge+eager-attn"]["status"] == "ok"  # the checked wrapper passes it


@pytest.mark.slow  # ~50 s on the shared 2-core machine: two torchrun starts
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two ranks need two cores")
def test_case8_torchrun_killed_then_resumed_on_the_same_number_of_ranks(fault_env, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--plugins", "dcgan,bce,slow-loss", "--steps", "12", "--checkpoint-every",
            "2", "--nproc", "2", "--out", str(out), *TINY]
    proc = subprocess.Popen([sys.executable, "-m", "ganbench", *argv], env=fault_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = checkpoint_path(out, "dcgan+slow-loss")
    wait_for(ckpt, proc, timeout=180)
    ranks = children_of(proc.pid)  # `--nproc` exec'd torchrun in place: its ranks
    assert len(ranks) == 2
    proc.kill()  # SIGKILL of torchrun itself: it cannot stop its ranks
    proc.wait()
    assert wait_until(lambda: not any(alive(r) for r in ranks), 5.0), "orphaned ranks"
    saved = load_checkpoint(ckpt)
    assert saved["rng_noise_by_rank"].shape[0] == 2  # every rank's noise stream
    [first] = rows_of(out)
    assert json.loads((out / "config.json").read_text())["world_size"] == 2

    res = ganbench(fault_env, "run", "--resume", str(out))  # forgot --nproc
    assert res.returncode == 2
    assert f"continue it with: ganbench run --resume {out} --nproc 2" in res.stderr
    assert rows_of(out) == [first] and load_checkpoint(ckpt)["step"] == saved["step"]

    res = ganbench(fault_env, "run", "--resume", str(out), "--nproc", "2", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_table_valid(out, 2)
    kept, resumed = rows_of(out)
    assert kept == first
    assert resumed["world_size"] == 2 and resumed["resumed_from_step"] == saved["step"]
    same_training(resumed, first)  # rank 0's losses as if never killed
    assert not ckpt.exists()


# ------------------------------------------------------------------------------------------
# What a run shows (issue 15): results on stdout, progress/notes/warnings once on stderr
# ------------------------------------------------------------------------------------------
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.mark.slow  # 11 s CPU (user+sys), measured on the loaded 2-core VM
def test_off_a_terminal_stdout_has_only_results_and_stderr_the_rest_once(fault_env, tmp_path):
    import re

    out = tmp_path / "run"
    # warn-loss warns at every D step from the 3rd on, in each of the two workers; dcgan with
    # eager-attn is a skipped pair: a note.
    res = ganbench(fault_env, "run", "--plugins", "dcgan,sagan,warn-loss,eager-attn",
                   "--steps", "4", "--out", str(out),
                   *[a for a in TINY if a != "--quiet"])
    assert res.returncode == 0, res.stderr
    stdout = res.stdout.strip().splitlines()
    assert stdout[-1] == f"results: {out}"
    assert stdout[0].split()[0] == "combo" and stdout[-2] == ""  # the table, then its folder
    assert all(len(line) <= 120 for line in stdout)
    assert "dcgan+warn-loss" in res.stdout and "sagan+warn-loss+eager-attn" in res.stdout

    err = res.stderr.strip().splitlines()
    assert err.pop() == f"see it with charts and images: ganbench report {out} --html"
    warned = [line for line in err if "faultplug: injected warning" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: UserWarning: "), err
    notes = [line for line in err if line.startswith("note: ")]
    assert len(set(notes)) == len(notes), err  # each note once (--dtype auto may add one)
    assert len([n for n in notes if "eager-attn" in n]) == 1, err
    progress = [line for line in err if line not in warned + notes]
    assert progress and all(re.match(rf"{STAMP} \[[12]/2\] ", line) for line in progress), err
    for phase in ("starting worker", "training", "step 4/4 (100%)", "writing", "ok in"):
        assert any(f"[2/2] sagan+warn-loss+eager-attn: {phase}" in line for line in progress), \
            phase


@pytest.mark.slow  # 6 s CPU (user+sys), measured on the loaded 2-core VM
def test_quiet_prints_only_where_the_results_are(fault_env, tmp_path):
    out = tmp_path / "run"
    res = ganbench(fault_env, "run", "--plugins", "dcgan,warn-loss,eager-attn", "--steps", "3",
                   "--out", str(out), *TINY)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"results: {out}\n"
    assert res.stderr == ""  # no progress, note or warning
