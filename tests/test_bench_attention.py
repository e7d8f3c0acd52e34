"""`ganbench bench attention` on tiny shapes on the CPU: the table's contract, not the speed."""

import json
import math

import pandas as pd
import pytest

from ganbench import bench_attention as bench
from ganbench.cli import main
from ganbench.errors import UnknownPluginError
from ganbench.specs import AttentionSpec

TINY = (bench.Shape("tiny", 16, 8, 24), bench.Shape("tiny-odd", 33, 8, 16))
EXPECTED_COLUMNS = {
    "kernel", "site", "pass", "batch", "N", "Dqk", "Dv", "status", "median_ms", "p10_ms",
    "p90_ms", "count", "flops", "min_bytes", "tflops", "gb_per_s", "roofline_pct",
    "peak_extra_mem_bytes", "mem_method", "backend",
    # environment, from ganbench.measure
    "device", "device_name", "dtype", "torch_version", "triton_version", "git_commit",
}


def test_table_columns_and_derived_throughput():
    df, skipped = bench.run_benchmark("cpu", "fp32", batch=2, shapes=TINY,
                                      kernels=["eager-attn", "sdpa-attn"], repeats=4, warmup=1,
                                      echo=lambda *_: None)
    assert skipped == []
    assert EXPECTED_COLUMNS <= set(df.columns)
    assert len(df) == 2 * len(TINY) * len(bench.PASSES)  # kernel x shape x pass
    assert (df["status"] == "ok").all() and (df["count"] == 4).all()
    assert ((df["p10_ms"] <= df["median_ms"]) & (df["median_ms"] <= df["p90_ms"])).all()
    seconds = df["median_ms"] / 1e3
    pd.testing.assert_series_equal(df["tflops"], df["flops"] / seconds / 1e12, check_names=False)
    pd.testing.assert_series_equal(df["gb_per_s"], df["min_bytes"] / seconds / 1e9,
                                   check_names=False)
    row = df[(df["kernel"] == "eager-attn") & (df["site"] == "tiny") & (df["pass"] == "fwd")]
    assert row["flops"].item() == 2 * 2 * 16 * 16 * (8 + 24)
    # CPU: memory is not measured, and the row says why; no roofline for an unknown device
    assert df["peak_extra_mem_bytes"].isna().all() and df["mem_method"].str.len().gt(0).all()
    assert df["roofline_pct"].isna().all()
    sdpa = df[df["kernel"] == "sdpa-attn"]["backend"]
    assert sdpa.notna().all() and df[df["kernel"] == "eager-attn"]["backend"].isna().all()


def test_unavailable_kernels_are_listed_once_and_skipped():
    specs = {
        "eager-attn": bench.attention_specs()["eager-attn"],
        "never-attn": AttentionSpec(name="never-attn", summary="cannot run",
                                    factory=lambda: None,
                                    why_unavailable=lambda device: "needs a quantum computer"),
    }
    df, skipped = bench.run_benchmark("cpu", "fp32", 1, TINY[:1], repeats=1, warmup=0,
                                      specs=specs, echo=lambda *_: None)
    assert skipped == [("never-attn", "needs a quantum computer")]
    assert set(df["kernel"]) == {"eager-attn"}


def test_unknown_kernel_is_a_user_error():
    with pytest.raises(UnknownPluginError, match="no-such-attn"):
        bench.run_benchmark("cpu", "fp32", 1, TINY, kernels=["no-such-attn"])


def test_roofline_peaks_prefer_the_specific_name():
    assert bench.device_peaks("NVIDIA H100 80GB HBM3", "bf16") == (989e12, 3.35e12)
    assert bench.device_peaks("NVIDIA H100 PCIe", "bf16") == (756e12, 2.0e12)
    assert bench.device_peaks("Intel(R) Xeon(R)", "fp32") is None


def test_cli_writes_csv_json_markdown_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "SHAPE_SETS", {**bench.SHAPE_SETS, "textbook": TINY})
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| kernel" in printed and "command: `ganbench" in printed
    csv = pd.read_csv(tmp_path / "attention-bench.csv")
    assert len(csv) == len(TINY) * len(bench.PASSES) and (csv["batch"] == 2).all()
    records = json.loads((tmp_path / "attention-bench.json").read_text())
    assert len(records) == len(csv) and math.isclose(records[0]["flops"], csv["flops"][0])
    assert (tmp_path / "attention-bench.md").read_text().count("| eager-attn") == len(csv)
    assert (tmp_path / "attention-bench.png").stat().st_size > 10_000
