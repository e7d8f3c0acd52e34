"""The CI timing check as a pytest test (marker ``regression``); see ratios.py for the method.

    pytest -m regression tests/benchmarks/test_regression.py    # ~20-60 s on 2 cores
"""

from __future__ import annotations

import pytest
import torch

import ratios

pytestmark = pytest.mark.regression


def test_kernel_and_step_ratios_within_tolerance_of_baseline():
    path = ratios.baseline_path()
    if not path.exists():
        pytest.skip(f"no ratio baseline for this machine kind ({path.name})")
    lines: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script does: see ratios.py's docstring
    try:
        code = ratios.run_check(path, echo=lines.append)
    finally:
        torch.set_num_threads(threads)
    print("\n".join(lines))
    assert code == 0, "\n".join(line for line in lines if line.startswith("REGRESSION"))
