"""scripts/gpu_summary.py: what the GPU check prints last, from the files it wrote."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_summary.py"
spec = importlib.util.spec_from_file_location("gpu_summary", SCRIPT)
gpu_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_summary)


def _bench_rows():
    """Two shapes, fwd+bwd: triton-attn (two variants), sdpa-attn, eager-attn."""
    rows = []
    for site, n, times in (("G 32x32", 1024, (0.50, 0.45, 0.36, 0.76)),
                           ("G 64x64", 4096, (4.4, 3.1, 2.1, 12.0))):
        for kernel, ms, graph in zip(
                ("triton-attn", "triton-attn:backward=atomic", "sdpa-attn", "eager-attn"),
                times, (0.1, 0.08, 0.2, 0.5)):
            rows.append(dict(kernel=kernel, site=site, N=n, dtype="bf16", batch=64,
                             median_ms=ms, graph_median_ms=graph * n / 1024, status="ok",
                             backend="CUDNN_ATTENTION" if kernel == "sdpa-attn" else None,
                             rel_err_max=1e-3, **{"pass": "fwd+bwd"}))
    return pd.DataFrame(rows)


def test_triton_against_the_best_other_kernel_by_hand():
    versus = gpu_summary.triton_vs_best_other(_bench_rows()).set_index("N")
    # N=1024: the atomic variant (0.45) is triton's best, sdpa (0.36) the best other
    assert versus.loc[1024, "triton"] == "triton-attn:backward=atomic"
    assert versus.loc[1024, "best_other"] == "sdpa-attn (CUDNN_ATTENTION)"
    assert versus.loc[1024, "ratio"] == pytest.approx(0.45 / 0.36)
    # graph replay: triton 0.08 vs 0.2, so faster on the device though slower per call
    assert versus.loc[1024, "graph_ratio"] == pytest.approx(0.08 / 0.2)
    assert versus.loc[4096, "ratio"] == pytest.approx(3.1 / 2.1)


def test_an_inaccurate_row_does_not_win():
    df = _bench_rows()
    df.loc[df["kernel"] == "sdpa-attn", "status"] = "inaccurate: rel err 0.3 > limit 0.05 (dq)"
    versus = gpu_summary.triton_vs_best_other(df).set_index("N")
    assert versus.loc[1024, "best_other"] == "eager-attn"


def test_summary_reads_every_file_and_names_what_is_missing(tmp_path, capsys):
    _bench_rows().to_csv(tmp_path / "bench-bf16.csv", index=False)
    (tmp_path / "fp32-precision.txt").write_text(
        "triton-attn fp32 forward on cuda: ...\n  tf32-qk-rn   4.4e-07\n  ieee   7.1e-04\n"
        "verdict: tf32-qk-rn\n")
    (tmp_path / "cuda-tests.txt").write_text(
        "FAILED tests/kernels/test_triton_attn.py::test_x[G16x16-fp32-cuda] - AssertionError\n"
        "==== 1 failed, 40 passed in 50.1s ====\n")
    (tmp_path / "ncu-attention.txt").write_text(
        "  _fwd_kernel (32, 1, 64)x(256, 1, 1), Context 1, Stream 7, Device 0, CC 9.0\n"
        "    Section: GPU Speed Of Light Throughput\n"
        "    Duration                         us       812.35\n"
        "    Registers Per Thread   register/thread          128\n")
    assert gpu_summary.main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "summary.md").read_text()
    assert "verdict: tf32-qk-rn" in text and "tf32-qk-rn   4.4e-07" in text
    assert "1 failed, 40 passed" in text and "test_x[G16x16-fp32-cuda]" in text
    assert "_fwd_kernel: Duration us 812.35" in text
    assert "variant sweep: not run" in text and "training: no table" in text
    assert "step table: not run" in text
    # graph replay at N=1024: triton 0.08 vs sdpa 0.2; at 4096: 0.32 vs 0.8: faster everywhere
    assert "at least as fast at every site" in text
    assert "sdpa-attn (CUDNN_ATTENTION)" in text


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert gpu_summary.main([]) == 2
    assert gpu_summary.main([str(tmp_path / "nope")]) == 2


def test_step_table_verdict_by_hand(tmp_path):
    (tmp_path / "step-table").mkdir()
    pd.DataFrame([
        dict(step="textbook", kernel="eager-attn", dtype="fp32", graph=False, status="ok",
             step_ms_median=30.0, img_per_s=2133.0, speedup_vs_textbook=1.0),
        dict(step="ganbench", kernel="sdpa-attn", dtype="bf16", graph=True, status="ok",
             step_ms_median=8.0, img_per_s=8000.0, speedup_vs_textbook=3.75),
        dict(step="ganbench", kernel="triton-attn", dtype="bf16", graph=True, status="failed",
             step_ms_median=float("nan"), img_per_s=float("nan"),
             speedup_vs_textbook=float("nan")),
    ]).to_csv(tmp_path / "step-table" / "step-table.csv", index=False)
    text = "\n".join(gpu_summary._step_table(tmp_path))
    assert "sdpa-attn bf16 graphed at 3.75x the textbook step (target 3x: met)" in text


def test_graphed_triton_slower_somewhere_is_named():
    df = _bench_rows()
    df.loc[(df["kernel"] == "triton-attn") & (df["N"] == 4096), "graph_median_ms"] = 5.0
    graphed = gpu_summary.graphed_triton_vs_sdpa(df).set_index("N")
    assert graphed.loc[4096, "ratio"] == pytest.approx(5.0 / 0.8)
    assert graphed.loc[1024, "ratio"] == pytest.approx(0.1 / 0.2)
