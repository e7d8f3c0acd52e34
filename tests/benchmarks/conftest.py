"""Benchmark suite set-up: markers, and the machine info every saved JSON carries.

The tests here are marked ``benchmark`` (timing suite) or ``regression`` (the regression gate,
the package tools.gate), which the quick default run deselects with ``-m "not benchmark and
not regression"`` in addopts; the gate's unit tests are in tests/tools/gate. ``import
harness`` works because pytest (prepend import mode) puts this folder on sys.path for its
conftest and test modules. Run the suite with ``pytest -m benchmark --benchmark-enable``
(results/baselines/README.md has the full command).
"""

from __future__ import annotations

import os

import pytest


THREADS_ENV = "GANBENCH_BENCH_THREADS"


@pytest.fixture(autouse=True)
def _cpu_threads():
    """On the CPU, time with GANBENCH_BENCH_THREADS torch threads (default 1), then restore.

    Why 1: on the shared 2-core machine a neighbour taking one core stalls a 2-thread op at
    every barrier. Measured: a DCGAN step took 0.06 s on 2 threads when quiet and 0.82 s (14x)
    under load, while 1 thread took 0.10 s and degrades at most ~2x when sharing its core.
    The thread count is in machine_info (torch_threads) and extra_info.
    """
    import torch

    import harness

    before = torch.get_num_threads()
    if harness.DEVICE == "cpu":
        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    # Registered here too, so this folder works before pyproject lists the markers.
    config.addinivalue_line("markers", "benchmark: pytest-benchmark timing suite "
                                       "(tests/benchmarks; needs --benchmark-enable)")
    config.addinivalue_line("markers", "regression: the regression gate, this checkout vs "
                                       "its base commit")


@pytest.hookimpl(optionalhook=True)  # a pytest-benchmark hook: no error without the plugin
def pytest_benchmark_update_machine_info(config, machine_info):
    """Add what a timing depends on besides the CPU pytest-benchmark already records."""
    import torch

    from ganbench.training.measure import _version, device_name, git_commit

    import harness

    machine_info["torch_version"] = torch.__version__
    machine_info["triton_version"] = _version("triton")
    machine_info["device"] = harness.DEVICE
    machine_info["device_name"] = device_name(harness.DEVICE)
    machine_info["torch_threads"] = (int(os.environ.get(THREADS_ENV, "1"))
                                     if harness.DEVICE == "cpu" else torch.get_num_threads())
    machine_info["triton_interpret"] = os.environ.get("TRITON_INTERPRET") == "1"
    machine_info["ganbench_commit"] = git_commit()
