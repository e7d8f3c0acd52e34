"""`ganbench bench attention` on tiny shapes on the CPU: the table's contract, not the speed."""

import json
import math

import pandas as pd
import pytest

from ganbench.bench import accuracy, attention, figure, plan, roofline, shapes, timing
import torch

from ganbench.cli import main
from ganbench.errors import ConfigError, UnknownPluginError
from ganbench.kernels.attention.reference import attend_reference, attention_exps
from ganbench.specs import AttentionSpec

TINY = (shapes.Shape("tiny", 16, 8, 24), shapes.Shape("tiny-odd", 33, 8, 16))


def calls(n, warmup=0):
    """A policy timing exactly ``n`` calls per row (no minimum time): fast, deterministic."""
    return timing.TimingPolicy(warmup=warmup, min_calls=n, min_seconds=0, max_calls=n)


EXPECTED_COLUMNS = {
    "kernel", "site", "pass", "batch", "N", "Dqk", "Dv", "status", "median_ms", "p10_ms",
    "p90_ms", "count", "flops", "min_bytes", "tflops", "gb_per_s", "roofline_pct",
    "peak_extra_mem_bytes", "mem_method", "backend", "options", "exps", "bound",
    "rel_err_o", "rel_err_dq", "rel_err_dk", "rel_err_dv", "rel_err_max",
    "graph_median_ms", "graph_p10_ms", "graph_p90_ms", "graph_count", "graph_status",
    "suspect",
    # environment, from ganbench.training.measure
    "device", "device_name", "dtype", "torch_version", "triton_version", "git_commit",
}


def test_table_columns_and_derived_throughput():
    df, skipped = attention.run_benchmark("cpu", "fp32", batch=2, shapes=TINY,
                                          kernels=["eager-attn", "sdpa-attn"],
                                          policy=calls(4, warmup=1))
    assert skipped == []
    assert EXPECTED_COLUMNS <= set(df.columns)
    assert len(df) == 2 * len(TINY) * len(shapes.PASSES)  # kernel x shape x pass
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
    assert df["bound"].isna().all() and (df["options"] == "{}").all()
    assert row["exps"].item() == 2 * 16 * 16
    # CUDA graphs: not on the CPU, and the row says so
    assert df["graph_median_ms"].isna().all() and (df["graph_status"] == "not on CUDA").all()


def test_accuracy_columns_fp32():
    df, _ = attention.run_benchmark("cpu", "fp32", batch=3, shapes=TINY, kernels=["eager-attn"],
                                    policy=calls(1))
    errors = ["rel_err_o", "rel_err_dq", "rel_err_dk", "rel_err_dv"]
    fwd, both = df[df["pass"] == "fwd"], df[df["pass"] == "fwd+bwd"]
    # fp32 arithmetic against float64 lands near 1e-7 (the limit, 1e-4, is for TF32 to fail)
    assert (df["rel_err_o"] < 1e-5).all() and (both[errors[1:]] < 1e-5).all().all()
    assert (df[errors] > 0).sum().sum() > 0  # measured, not trivially zero
    assert fwd[errors[1:]].isna().all().all()
    pd.testing.assert_series_equal(df["rel_err_max"], df[errors].max(axis=1), check_names=False)


def _spec(name, attend=None, record=None, **spec):
    """A registered-looking kernel; ``record`` collects the options its factory got."""
    def factory(**options):
        if record is not None:
            record.append(options)
        return attend or attend_reference
    return AttentionSpec(name=name, summary="test kernel", factory=factory, **spec)


def _drop_last_key(q, k, v):  # a masking bug: the last key never gets attention
    return torch.softmax(q @ k[:, :-1].transpose(1, 2), dim=-1) @ v[:, :-1]


WRONG = {
    "scaled-attn": _spec("scaled-attn", lambda q, k, v: attend_reference(q, k, v) * 1.01),
    "drop-attn": _spec("drop-attn", _drop_last_key),
    "nan-attn": _spec("nan-attn", lambda q, k, v: attend_reference(q, k, v) * math.nan),
}


def test_wrong_kernels_are_flagged_inaccurate_and_keep_their_timings():
    df, _ = attention.run_benchmark("cpu", "fp32", 2, TINY[:1], policy=calls(2),
                                    specs=WRONG)
    assert df["status"].str.startswith("inaccurate: rel err").all()
    assert df["median_ms"].notna().all() and (df["count"] == 2).all()
    scaled = df[df["kernel"] == "scaled-attn"]
    assert scaled["rel_err_o"].round(6).eq(0.01).all()  # exactly the 1 % scale
    assert scaled["status"].str.contains("> limit 0.0001").all()
    assert (df[df["kernel"] == "drop-attn"]["rel_err_o"] > 1e-2).all()
    nan = df[df["kernel"] == "nan-attn"]
    assert (nan["rel_err_o"] == math.inf).all() and (nan["rel_err_max"] == math.inf).all()


def test_a_failing_accuracy_check_is_a_status_not_a_crash(monkeypatch):
    def boom(*args, **kwargs):  # timing passes, then the accuracy check raises
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(accuracy, "measure_accuracy", boom)
    specs = {"ref-attn": _spec("ref-attn", attend_reference)}
    df, _ = attention.run_benchmark("cpu", "fp32", 3, TINY[:1], policy=calls(1),
                                    specs=specs)
    assert (df["status"] == "accuracy check failed: RuntimeError: boom").all()
    assert df["median_ms"].notna().all() and df["rel_err_max"].isna().all()


def test_cli_exits_1_on_an_inaccurate_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shapes, "SHAPE_SETS", {**shapes.SHAPE_SETS, "textbook": TINY[:1]})
    monkeypatch.setattr(plan, "attention_specs", lambda: WRONG)
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "scaled-attn",
                 "--out", str(tmp_path)])
    assert code == 1
    assert "inaccurate: rel err" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "attention-bench.csv")["median_ms"].notna().all()


def test_unavailable_kernels_are_listed_once_and_skipped():
    specs = {
        "eager-attn": plan.attention_specs()["eager-attn"],
        "never-attn": AttentionSpec(name="never-attn", summary="cannot run",
                                    factory=lambda: None,
                                    why_unavailable=lambda device: "needs a quantum computer"),
    }
    df, skipped = attention.run_benchmark("cpu", "fp32", 1, TINY[:1], policy=calls(1),
                                          specs=specs)
    assert skipped == [("never-attn", "needs a quantum computer")]
    assert set(df["kernel"]) == {"eager-attn"}


def test_unknown_kernel_is_a_user_error():
    with pytest.raises(UnknownPluginError, match="no-such-attn"):
        attention.run_benchmark("cpu", "fp32", 1, TINY, kernels=["no-such-attn"])


def test_roofline_peaks_prefer_the_specific_name():
    assert roofline.device_peaks("NVIDIA H100 80GB HBM3", "bf16") == (989e12, 3.35e12, 3.9e12)
    assert roofline.device_peaks("NVIDIA H100 PCIe", "bf16") == (756e12, 2.0e12, 3.0e12)
    assert roofline.device_peaks("NVIDIA H200", "fp32") == (67e12, 4.8e12, 3.9e12)
    assert roofline.device_peaks("Intel(R) Xeon(R)", "fp32") is None


def test_attention_exps_counts_one_exp_per_score_per_pass():
    assert attention_exps(2, 16) == 512.0
    assert attention_exps(2, 16, backward=True) == 1024.0  # P recomputed once
    assert attention_exps(64, 1024) == 64 * 2 ** 20


H100 = "NVIDIA H100 80GB HBM3"


def test_roofline_names_the_largest_term():
    peaks = roofline.device_peaks(H100, "bf16")
    # G 32x32 (N=1024, Dqk=8, Dv=64), B=64, bf16 forward: 2*64*1024^2*72 = 9.66e9 FLOPs take
    # 9.77 us at 989 TFLOP/s, 18.9 MB take 5.63 us at 3.35 TB/s, 64*1024^2 = 6.71e7 exps take
    # 17.2 us at 3.9e12/s: the exponentials bound it.
    seconds, bound = roofline.roofline(9663676416.0, 18874368.0, 67108864.0, peaks)
    assert bound == "exp" and seconds == pytest.approx(67108864 / 3.9e12)
    # The same in fp32 (67 TFLOP/s without tensor cores): 144 us of matmuls.
    seconds, bound = roofline.roofline(9663676416.0, 37748736.0, 67108864.0,
                                       roofline.device_peaks(H100, "fp32"))
    assert bound == "matmul" and seconds == pytest.approx(9663676416 / 67e12)
    # D 4x4 (N=16, Dqk=64, Dv=512), B=64, bf16: 2.36 MB of inputs and output, 0.70 us.
    seconds, bound = roofline.roofline(18874368.0, 2359296.0, 16384.0, peaks)
    assert bound == "memory" and seconds == pytest.approx(2359296 / 3.35e12)
    assert roofline.roofline(1.0, 1.0, 1.0, None) == (pytest.approx(math.nan, nan_ok=True), None)


def test_bench_one_fills_bound_and_roofline_share_on_a_known_device():
    attend = plan.attention_specs()["eager-attn"].factory()
    row = attention.bench_one("eager-attn", attend, shapes.Shape("t", 16, 8, 24), 2, "bf16",
                              "cpu", "fwd", calls(1), device_name=H100)
    expected, bound = roofline.roofline(row["flops"], row["min_bytes"], row["exps"],
                                        roofline.device_peaks(H100, "bf16"))
    assert row["bound"] == bound == "memory"  # 16 x 16 scores: the bytes dominate
    assert row["roofline_pct"] == pytest.approx(100 * expected / (row["median_ms"] / 1e3))


def test_options_and_variants_label_rows_and_reach_the_factory(tmp_path, monkeypatch):
    record = []
    specs = {"rec-attn": _spec("rec-attn", record=record)}
    monkeypatch.setattr(shapes, "SHAPE_SETS", {**shapes.SHAPE_SETS, "textbook": TINY[:1]})
    monkeypatch.setattr(plan, "attention_specs", lambda: specs)
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "rec-attn",
                 "--option", "rec-attn.mode=fast", "--variant", "rec-attn:backward=atomic",
                 "--variant", "rec-attn:tile=[64,128],ok=true", "--out", str(tmp_path)])
    assert code == 0
    assert record == [{"mode": "fast"}, {"backward": "atomic"}, {"tile": [64, 128], "ok": True}]
    csv = pd.read_csv(tmp_path / "attention-bench.csv")
    assert list(dict.fromkeys(csv["kernel"])) == [
        "rec-attn", "rec-attn:backward=atomic", "rec-attn:tile=[64,128],ok=true"]
    assert json.loads(csv["options"][0]) == {"mode": "fast"}


def test_a_variant_is_skipped_where_its_kernel_cannot_run():
    specs = {"never-attn": _spec("never-attn", why_unavailable=lambda device: "no")}
    runs = plan.plan_kernels([], variants=[plan.parse_variant("never-attn:x=1")], specs=specs)
    df, skipped = attention.run_benchmark("cpu", "fp32", 1, TINY[:1], kernels=runs,
                                          specs=specs)
    assert df.empty and skipped == [("never-attn:x=1", "no")]


@pytest.mark.parametrize("args, fragment", [
    (["--option", "eager-attn.nosuch=1"], "eager-attn: eager-attn rejected option(s) nosuch=1"),
    (["--option", "sdpa-attn.x=1"], "sdpa-attn is not among the kernels benchmarked"),
    (["--variant", "eager-attn:tile=64"], "eager-attn:tile=64: eager-attn rejected option"),
    (["--variant", "eager-attn"], "--variant takes KERNEL:KEY=VALUE"),
    (["--variant", "eager-attn:=3"], "--variant takes KERNEL:KEY=VALUE"),
    (["--variant", "no-such-attn:x=1"], "unknown attention kernel(s) no-such-attn"),
    (["--option", "eager-attn"], "--option takes PLUGIN.KEY=VALUE"),
    (["--min-time", "-1"], "--min-time must be a finite number >= 0, got -1"),
    (["--min-time", "nan"], "--min-time must be a finite number >= 0, got nan"),
    (["--repeats", "0"], "--repeats must be a finite number >= 1, got 0"),
    (["--columns", "kernel,speed"], "--columns: no column speed"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, capsys, args, fragment):
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 *args, "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ganbench: error:"), err
    assert fragment in err[0]
    assert not (tmp_path / "never").exists()


def test_parse_variant_keeps_the_text_as_label_and_reads_values_as_json():
    run = plan.parse_variant(" triton-attn:backward=atomic, n=3,sizes=[1,2] ")
    assert run == plan.KernelRun("triton-attn:backward=atomic,n=3,sizes=[1,2]", "triton-attn",
                                  {"backward": "atomic", "n": 3, "sizes": [1, 2]})
    with pytest.raises(ConfigError):
        plan.parse_variant("triton-attn:backward")


def test_graph_timing_on_the_cpu_is_nan_with_a_reason():
    assert timing.time_graph(lambda: None, "cpu", calls(3)) == ([], "not on CUDA")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path without CUDA")
def test_a_failing_capture_is_a_status_not_an_exception():
    seconds, status = timing.time_graph(lambda: None, "cuda", calls(3))
    assert seconds == [] and status.startswith("capture failed: ") and "\n" not in status


def test_cli_writes_csv_json_markdown_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shapes, "SHAPE_SETS", {**shapes.SHAPE_SETS, "textbook": TINY})
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 "--out", str(tmp_path)])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    header = next(line for line in printed.splitlines() if line.startswith("kernel"))
    assert "ms" in header.split() and "GFLOP/s" in header  # units; TFLOP/s < 1 shown as GFLOP/s
    assert "nan" not in printed
    # On the CPU the CUDA-graph and roofline columns are empty: left out, not printed as nan.
    assert "graph ms" not in header and "roofline" not in header
    assert "eager-attn" in captured.err  # progress lines go to stderr, the table to stdout
    csv = pd.read_csv(tmp_path / "attention-bench.csv")
    assert len(csv) == len(TINY) * len(shapes.PASSES) and (csv["batch"] == 2).all()
    data = json.loads((tmp_path / "attention-bench.json").read_text())
    assert data["kind"] == "ganbench-bench-attention" and data["settings"]["batch"] == 2
    records = data["rows"]
    assert len(records) == len(csv) and math.isclose(records[0]["flops"], csv["flops"][0])
    assert records[0]["graph_median_ms"] is None  # JSON null, not NaN
    md = (tmp_path / "attention-bench.md").read_text()
    assert md.count("| eager-attn") == len(csv) and "command: `ganbench" in md
    assert (tmp_path / "attention-bench.png").stat().st_size > 10_000


def test_cli_json_prints_the_file_format_and_compare_reads_two_of_them(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(shapes, "SHAPE_SETS", {**shapes.SHAPE_SETS, "textbook": TINY[:1]})
    args = ["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
            "--json"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    printed = json.loads(capsys.readouterr().out)  # stdout is pure JSON
    assert printed == json.loads((tmp_path / "a" / "attention-bench.json").read_text())
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    # compare: both folders, keyed by kernel + site (N) + pass, one row per metric
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    keys = {r["key"] for r in rows}
    assert keys == {"eager-attn / tiny (N=16) / fwd", "eager-attn / tiny (N=16) / fwd+bwd"}
    median = [r for r in rows if r["metric"] == "median_ms"]
    assert len(median) == 2 and all(r["old_count"] == 3 and r["new_count"] == 3
                                    for r in median)
    # report reads it too
    assert main(["report", str(tmp_path / "a" / "attention-bench.json")]) == 0
    assert "eager-attn" in capsys.readouterr().out


@pytest.mark.parametrize("make_out", [
    lambda p: (p / "file.txt").write_text("keep me") and p / "file.txt",
    lambda p: (p / "done").mkdir() or (p / "done" / "attention-bench.json").write_text(
        "keep me") and p / "done",
])
def test_out_that_would_overwrite_is_one_line_exit_2_and_nothing_written(tmp_path, capsys,
                                                                          make_out):
    out = make_out(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("ganbench: error: --out")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_chart_marks_cuda_graph_times(monkeypatch):
    """With graph times (CUDA), the chart gains one legend entry for them, whatever the rows."""
    df, _ = attention.run_benchmark("cpu", "fp32", batch=1, shapes=TINY[:1],
                                    kernels=["eager-attn"], policy=calls(1))
    df["graph_median_ms"] = df["median_ms"] / 3  # as a CUDA run would fill it
    fig = figure.chart(df)
    labels = [label for ax in fig.axes for label in ax.get_legend_handles_labels()[1]]
    assert labels.count(figure.GRAPH_LABEL) == 1 and "eager-attn" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)
