"""Issue 22, item 4: a plugin that hangs is stopped after --stall-timeout with a row saying
"stalled at step K", and no process a plugin starts outlives its combination."""

from __future__ import annotations

import json
import math
import os
import queue as queue_module
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganbench.cli import main
from ganbench.sweep import worker

PLUGIN = '''
"""BCE that hangs (sleep-loss) or forks a child that would live on (fork-loss)."""
import os
import time

from ganbench.hookspecs import hookimpl
from ganbench.plugins.losses import BCELoss
from ganbench.specs import LossSpec


class Hangs(BCELoss):
    def __init__(self, fault):
        self.fault, self.calls = fault, 0

    def d_loss(self, inputs):
        self.calls += 1
        if self.fault == "sleep" and self.calls == 12:  # after the report at step 10
            time.sleep(3600)
        if self.fault == "fork" and self.calls == 2:
            pid = os.fork()
            if pid == 0:  # the child: a helper process the plugin forgot
                time.sleep(300)
                os._exit(0)
            with open(os.environ["STALLPLUG_PIDFILE"], "w") as fh:
                fh.write(str(pid))
        return super().d_loss(inputs)


@hookimpl
def ganbench_register_losses(register):
    for fault in ("sleep", "fork"):
        register(LossSpec(name=f"{fault}-loss", summary=f"BCE that {fault}s",
                          factory=lambda fault=fault: Hangs(fault)))
'''

TINY = ["--metrics", "none", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("stall_site")
    (site / "stallplug.py").write_text(PLUGIN)
    info = site / "stallplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stallplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ganbench]\nstall = stallplug\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["GANBENCH_LOAD_PLUGINS"] = "stallplug"
    env["OMP_NUM_THREADS"] = "1"
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


# ------------------------------------------------------------------------------------------
# The supervisor's clock, without training
# ------------------------------------------------------------------------------------------
class Proc:
    def is_alive(self) -> bool:
        return True


class Feed:
    """A queue that hands out ``messages`` at the given times (s after creation)."""

    def __init__(self, timed: list[tuple[float, tuple]]):
        self.start, self.timed = time.monotonic(), list(timed)

    def get(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.timed and time.monotonic() - self.start >= self.timed[0][0]:
                return self.timed.pop(0)[1]
            time.sleep(0.01)
        raise queue_module.Empty


def step(k: int) -> tuple:
    return ("event", "step", {"step": k, "d_loss": 1.0, "g_loss": 1.0})


def test_silence_longer_than_the_timeout_is_a_stall_at_the_last_step():
    feed = Feed([(0.0, ("event", "phase", {"phase": "training"})), (0.05, step(10)),
                 (0.1, step(20))])
    t0 = time.monotonic()
    assert worker._wait(Proc(), feed, lambda *a, **k: None, print, 0.4) == \
        ("stalled", 20, "training", 0.4)
    assert 0.45 <= time.monotonic() - t0 < 2.0


def test_steady_progress_is_never_a_stall_however_long_it_takes():
    timed = [(0.1 * i, step(i)) for i in range(1, 12)] + [(1.25, ("ok", {"combo": "c"}))]
    seen = []
    assert worker._wait(Proc(), Feed(timed), lambda kind, **d: seen.append(d["step"]), print,
                        0.4) == ("ok", {"combo": "c"})
    assert seen == list(range(1, 12))


def test_zero_means_no_timeout():
    assert worker._wait(Proc(), Feed([(0.6, ("ok", {}))]), print, print, 0) == ("ok", {})


@pytest.mark.parametrize("step_, phase, text", [
    (10, "training", "stalled at step 10: no progress for 600 s (--stall-timeout 600); "
                     "the worker was stopped"),
    (0, "building models", "stalled at step 0 (building models): no progress for 2.5 s "
                           "(--stall-timeout 2.5); the worker was stopped"),
])
def test_the_stalled_row_says_where(step_, phase, text):
    assert worker.stalled_error(step_, phase, 600 if step_ else 2.5) == text


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_stall_timeout_is_one_line_exit_2(tmp_path, capsys, value):
    out = tmp_path / "never"
    code = main(["run", "--plugins", "dcgan", "--out", str(out), "--stall-timeout", value,
                 *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--stall-timeout" in err[-1], err
    assert not out.exists()


def test_the_default_stall_timeout_is_the_documented_ten_minutes():
    from ganbench.cli import build_parser, subcommands
    from ganbench.config import DEFAULT_STALL_TIMEOUT_S, RunConfig

    run_parser = subcommands(build_parser())["run"]
    shown = next(a for a in run_parser._actions if "--stall-timeout" in a.option_strings)
    assert shown.default == DEFAULT_STALL_TIMEOUT_S == 600 and "(default: 600" in shown.help
    assert RunConfig(plugins=("dcgan",)).stall_timeout == 600


# ------------------------------------------------------------------------------------------
# Process groups
# ------------------------------------------------------------------------------------------
def test_end_group_kills_every_process_of_the_group_and_never_our_own():
    leader = subprocess.Popen([sys.executable, "-c",
                               "import os, subprocess, sys, time; "
                               "subprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(300)']); "
                               "print(os.getpid(), flush=True); time.sleep(300)"],
                              start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        int(leader.stdout.readline())
        assert len(worker.group_members(leader.pid)) == 2  # the leader and its child
        assert worker.end_group(os.getpgrp()) == 0  # refuses: that is the test runner's group
        assert worker.end_group(leader.pid) == 2
        leader.wait(10)
        deadline = time.monotonic() + 10
        while worker.group_members(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.group_members(leader.pid) == []
    finally:
        if leader.poll() is None:
            leader.kill()


# ------------------------------------------------------------------------------------------
# Through the command line, with real workers
# ------------------------------------------------------------------------------------------
def ganbench(env: dict, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganbench", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # ~60 s on the shared 2-core machine: two workers, one waits out its timeout
def test_a_hanging_loss_is_stopped_and_the_sweep_goes_on(plugin_env, tmp_path):
    out = tmp_path / "run"
    timeout = 30  # covers a worker's start-up (imports, data) on the loaded 2-core machine
    t0 = time.monotonic()
    res = ganbench(plugin_env, "run", "--plugins", "dcgan,sleep-loss,bce", "--steps", "20",
                   "--stall-timeout", str(timeout), "--out", str(out), "--quiet", *TINY)
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    rows = {r["combo"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    stalled = rows["dcgan+sleep-loss"]
    assert stalled["status"] == "failed"
    assert stalled["error"] == (f"stalled at step 10: no progress for {timeout} s "
                                f"(--stall-timeout {timeout}); the worker was stopped")
    assert rows["dcgan+bce"]["status"] == "ok"  # the sweep went on
    assert took < 3600  # the loss sleeps an hour: the run did not wait for it
    assert (out / "logs" / "dcgan+sleep-loss.log").read_text().startswith("stalled at step 10")


@pytest.mark.slow  # ~25 s on the shared 2-core machine
def test_a_process_forked_by_a_plugin_does_not_outlive_the_run(plugin_env, tmp_path):
    out = tmp_path / "run"
    pidfile = tmp_path / "child.pid"
    env = {**plugin_env, "STALLPLUG_PIDFILE": str(pidfile)}
    res = ganbench(env, "run", "--plugins", "dcgan,fork-loss", "--steps", "4", "--out",
                   str(out), *TINY)
    assert res.returncode == 0, res.stderr
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the plugin's child outlived the run"
    assert ("warning: dcgan+fork-loss: its worker left 1 process(es) running (a plugin that "
            "forks or starts programs?); they were killed") in res.stderr
    assert math.isfinite(json.loads((out / "results.json").read_text())["rows"][0]
                         ["img_per_s"])
