"""ganbench/training/measure.py LoadMonitor (issue 22, item 7): every row records how busy the
machine was while it trained."""

from __future__ import annotations

import os
import time

from ganbench.training import measure


def test_a_sleeping_process_uses_no_cpu_and_a_spinning_one_at_most_one_core():
    monitor = measure.LoadMonitor()
    time.sleep(0.3)
    idle = monitor.columns()
    assert idle["cpu_per_wall"] < 0.2  # asleep: no CPU time, however loaded the machine
    monitor = measure.LoadMonitor()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    busy = monitor.columns()
    assert 0 < busy["cpu_s"] and busy["cpu_per_wall"] <= 1.05  # one thread: one core at most
    assert busy["cores"] == len(os.sched_getaffinity(0))
    for key in ("load_avg_start", "load_avg_end"):
        assert busy[key] >= 0
    assert busy["steal_pct"] is None or 0 <= busy["steal_pct"] <= 100


def test_steal_is_the_stolen_share_of_all_cpu_time_between_start_and_end(monkeypatch):
    readings = iter([(10, 1000), (60, 2000)])  # (steal, total) jiffies: 50 of 1000 stolen
    monkeypatch.setattr(measure, "_cpu_jiffies", lambda: next(readings))
    assert measure.LoadMonitor().columns()["steal_pct"] == 5.0


def test_no_proc_stat_means_no_steal_column_value(monkeypatch):
    monkeypatch.setattr(measure, "_cpu_jiffies", lambda: None)
    assert measure.LoadMonitor().columns()["steal_pct"] is None


def test_proc_stat_is_read_as_proc5_documents(monkeypatch, tmp_path):
    fake = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    fake.write_text("cpu  100 5 50 800 10 1 2 32 40 0\ncpu0 1 2 3\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        fake if path == "/proc/stat" else path, *a, **k))
    assert measure._cpu_jiffies() == (32, 100 + 5 + 50 + 800 + 10 + 1 + 2 + 32)


def test_the_wait_share_is_waiting_over_runnable_time(monkeypatch):
    readings = iter([(10.0, 1.0), (16.0, 3.0)])  # (on a CPU, waiting) s: ran 6, waited 2
    monkeypatch.setattr(measure, "_run_queue", lambda: next(readings))
    assert measure.LoadMonitor().columns()["cpu_wait_share"] == 2 / (6 + 2)


def test_schedstat_is_read_and_the_share_is_a_fraction():
    if measure._run_queue() is None:
        import pytest

        pytest.skip("no /proc/self/task/*/schedstat here")
    monitor = measure.LoadMonitor()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    share = monitor.columns()["cpu_wait_share"]
    assert share is not None and 0 <= share <= 1  # how much depends on the machine's load
