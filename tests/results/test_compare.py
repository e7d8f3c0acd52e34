"""ganbench compare: directions, thresholds, exit codes 0/1/2, missing rows, malformed input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ganbench.results import compare as cmp
from ganbench.results import sides
from ganbench.cli import main
from ganbench import registry
from ganbench.errors import UserError
from ganbench.hookspecs import hookimpl
from ganbench.specs import MetricSpec


def run_rows(**overrides) -> list[dict]:
    """Two trained combinations and the real-data reference row, as a run writes them."""
    rows = [
        {"combo": "dcgan+bce", "status": "ok", "img_per_s": 100.0, "step_ms_median": 160.0,
         "peak_mem_bytes": 400_000_000, "fid_digits": 20.0, "is_digits": 1.8,
         "d_loss_last10": 0.7},
        {"combo": "sagan+hinge+eager-attn", "status": "ok", "img_per_s": 50.0,
         "step_ms_median": 320.0, "peak_mem_bytes": 500_000_000, "fid_digits": 30.0,
         "is_digits": 1.6, "d_loss_last10": 1.1},
        {"combo": "real data", "status": "reference", "fid_digits": 0.5, "is_digits": 1.95},
    ]
    for key, changes in overrides.items():
        for row in rows:
            if row["combo"] == key.replace("__", "+").replace("_", "-"):
                row.update(changes)
    return rows


def write_run(folder: Path, rows: list[dict], as_csv: bool = False) -> Path:
    folder.mkdir(parents=True)
    if as_csv:
        pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    else:
        (folder / "results.json").write_text(json.dumps({"rows": rows}))
    return folder


def bench_json(path: Path, medians: dict[str, float], extra: dict | None = None) -> Path:
    benches = [{"name": n, "fullname": f"tests/benchmarks/x.py::{n}",
                "stats": {"median": m, "mean": m, "rounds": 5},
                "extra_info": dict(extra or {})} for n, m in medians.items()]
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benches}))
    return path


# ------------------------------------------------------------------------------------------
# Directions and --fail-on parsing
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,way", [
    ("img_per_s", "higher"), ("step_ms_median", "lower"), ("step_ms_p90", "lower"),
    ("peak_mem_bytes", "lower"), ("peak_mem_delta_bytes", "lower"), ("fid_digits", "lower"),
    ("is_digits", "closer"), ("prdc_precision", "closer"), ("prdc_density", "closer"),
    ("prdc_recall", "higher"), ("prdc_coverage", "higher"), ("modes_share_7", "closer"),
    ("memo_nn_ratio", "closer"), ("memo_copy_share", "lower"),
    ("modes_covered", "higher"), ("modes_kl", "lower"), ("median", "lower"),
    ("d_loss_last10", None), ("g_lr", None), ("steps", None),
])
def test_direction(metric, way):
    assert cmp.direction(metric) == way


def test_parse_fail_on_reads_signed_percentages():
    assert cmp.parse_fail_on("img_per_s:-10%, fid_digits:+15%,median:+2.5%") == {
        "img_per_s": -10.0, "fid_digits": 15.0, "median": 2.5}
    assert cmp.parse_fail_on(None) == {}


@pytest.mark.parametrize("text,needle", [
    ("img_per_s:10%", "not METRIC"),            # no sign
    ("img_per_s:-10", "not METRIC"),            # no percent sign
    ("img_per_s-10%", "not METRIC"),            # no colon
    ("img_per_s:-ten%", "not METRIC"),
    ("img_per_s:-10%,", "not METRIC"),          # trailing comma = empty item
    ("img_per_s:+10%", "better when higher"),   # sign points the good way
    ("fid_digits:-15%", "better when lower"),
    ("d_loss_last10:+5%", "no known better direction"),
    ("fid_digits:+1%,fid_digits:+2%", "twice"),
])
def test_parse_fail_on_is_strict(text, needle):
    with pytest.raises(UserError, match=needle):
        cmp.parse_fail_on(text)


# ------------------------------------------------------------------------------------------
# The comparison itself
# ------------------------------------------------------------------------------------------
def side(rows):
    return sides.from_run_table(pd.DataFrame(rows), "t")


def verdict(table, key, metric):
    hit = table[(table["key"] == key) & (table["metric"] == metric)]
    assert len(hit) == 1, (key, metric)
    return hit.iloc[0]


def test_directions_decide_better_and_worse():
    old = side(run_rows())
    new = side(run_rows(dcgan__bce={"img_per_s": 120.0, "fid_digits": 25.0,
                                    "step_ms_median": 160.0}))
    table = cmp.compare(old, new)
    row = verdict(table, "dcgan+bce", "img_per_s")
    assert row["verdict"] == cmp.BETTER and row["delta_pct"] == pytest.approx(20.0)
    row = verdict(table, "dcgan+bce", "fid_digits")
    assert row["verdict"] == cmp.WORSE and row["delta_pct"] == pytest.approx(25.0)
    assert verdict(table, "dcgan+bce", "step_ms_median")["verdict"] == cmp.SAME
    assert "d_loss_last10" not in set(table["metric"])  # no direction: not compared
    assert "real data" not in set(table["key"])          # the reference row is not a model
    assert cmp.regressions(table).empty                  # no thresholds: nothing fails


def test_threshold_separates_worse_from_regression():
    old = side(run_rows())
    new = side(run_rows(dcgan__bce={"img_per_s": 91.0},          # -9%: inside -10%
                        sagan__hinge__eager_attn={"img_per_s": 44.5}))  # -11%: past it
    table = cmp.compare(old, new, {"img_per_s": -10.0})
    assert verdict(table, "dcgan+bce", "img_per_s")["verdict"] == cmp.WORSE
    row = verdict(table, "sagan+hinge+eager-attn", "img_per_s")
    assert row["verdict"] == cmp.REGRESSION and row["threshold_pct"] == -10.0
    assert list(cmp.regressions(table)["key"]) == ["sagan+hinge+eager-attn"]


def test_improvement_never_fails_however_large():
    old = side(run_rows())
    new = side(run_rows(dcgan__bce={"fid_digits": 2.0, "img_per_s": 1000.0}))
    table = cmp.compare(old, new, {"fid_digits": 15.0, "img_per_s": -10.0})
    assert cmp.regressions(table).empty


def test_rows_on_one_side_are_reported_not_failed():
    old_rows = run_rows()
    new_rows = [r for r in run_rows() if r["combo"] != "dcgan+bce"]
    new_rows.append({"combo": "sagan+hinge+sdpa-attn", "status": "ok", "img_per_s": 60.0})
    table = cmp.compare(side(old_rows), side(new_rows), {"img_per_s": -10.0})
    verdicts = dict(zip(table["key"], table["verdict"]))
    assert verdicts["dcgan+bce"] == cmp.ONLY_OLD
    assert verdicts["sagan+hinge+sdpa-attn"] == cmp.ONLY_NEW
    assert cmp.regressions(table).empty


def test_lost_status_is_a_regression_even_without_thresholds():
    new = side(run_rows(dcgan__bce={"status": "diverged", "fid_digits": float("nan")}))
    table = cmp.compare(side(run_rows()), new)
    bad = cmp.regressions(table)
    assert list(bad["metric"]) == ["status"]
    assert "ok -> diverged" in bad.iloc[0]["verdict"]
    assert verdict(table, "dcgan+bce", "fid_digits")["verdict"] == cmp.MISSING


def test_mismatched_kinds_and_disjoint_rows_are_user_errors(tmp_path):
    bench = cmp.read_side(bench_json(tmp_path / "b.json", {"test_a": 0.1}))
    with pytest.raises(UserError, match="cannot compare a run"):
        cmp.compare(side(run_rows()), bench)
    other = side([{"combo": "x", "status": "ok", "img_per_s": 1.0}])
    with pytest.raises(UserError, match="no combination in common"):
        cmp.compare(side(run_rows()), other)
    with pytest.raises(UserError, match="neither input has"):
        cmp.compare(side(run_rows()), side(run_rows()), {"modes_kl": 10.0})


# ------------------------------------------------------------------------------------------
# The command: exit codes and formats
# ------------------------------------------------------------------------------------------
def test_cli_exit_0_and_1_on_run_folders(tmp_path, capsys):
    old = write_run(tmp_path / "old", run_rows())
    new = write_run(tmp_path / "new", run_rows(dcgan__bce={"fid_digits": 30.0}), as_csv=True)
    assert main(["compare", str(old), str(new)]) == 0                       # report only
    assert main(["compare", str(old), str(new), "--fail-on", "fid_digits:+60%"]) == 0  # +50%
    capsys.readouterr()
    assert main(["compare", str(old), str(new), "--fail-on", "fid_digits:+15%"]) == 1
    out, err = capsys.readouterr()
    assert "REGRESSION" in out and "dcgan+bce:fid_digits" in err
    assert main(["compare", str(old / "results.json"), str(new / "results.csv")]) == 0


def test_cli_benchmark_json_median_and_extra_info(tmp_path, capsys):
    old = bench_json(tmp_path / "old.json", {"test_step[sagan]": 0.100, "test_op": 0.010},
                     extra={"img_per_s": 160.0, "note": "text is ignored"})
    new = bench_json(tmp_path / "new.json", {"test_step[sagan]": 0.200, "test_op": 0.010},
                     extra={"img_per_s": 80.0})
    assert main(["compare", str(old), str(new), "--fail-on", "median:+50%",
                 "--format", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)["rows"]
    by = {(r["key"], r["metric"]): r for r in rows}
    assert by[("test_step[sagan]", "median")]["verdict"] == "REGRESSION"
    assert by[("test_step[sagan]", "median")]["delta_pct"] == pytest.approx(100.0)
    assert by[("test_op", "median")]["verdict"] == "unchanged"
    assert by[("test_step[sagan]", "img_per_s")]["better"] == "higher"
    assert ("test_op", "note") not in by


def test_cli_csv_format(tmp_path, capsys):
    old = write_run(tmp_path / "old", run_rows())
    assert main(["compare", str(old), str(old), "--format", "csv"]) == 0
    df = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(df.columns) == cmp.COLUMNS
    assert set(df["verdict"]) == {"unchanged"}


@pytest.mark.parametrize("make_bad,needle", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "without results.json"),
    (lambda p: (p / "x.json").write_text("{not json") and p / "x.json", "cannot read"),
    (lambda p: (p / "x.json").write_text("[1, 2]") and p / "x.json", "neither"),
    (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "expected a run folder"),
    (lambda p: (p / "x.json").write_text('{"benchmarks": [{"name": "a"}]}') and p / "x.json",
     "lacks name or stats.median"),
    (lambda p: (p / "x.json").write_text('{"rows": [{"status": "ok"}]}') and p / "x.json",
     "no 'combo' column"),
])
def test_cli_exit_2_one_line_on_bad_input(tmp_path, capsys, make_bad, needle):
    good = write_run(tmp_path / "good", run_rows())
    bad = make_bad(tmp_path)
    assert main(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_cli_exit_2_on_mismatched_kinds_and_bad_fail_on(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", run_rows())
    bench = bench_json(tmp_path / "b.json", {"test_a": 0.1})
    assert main(["compare", str(run_dir), str(bench)]) == 2
    assert main(["compare", str(run_dir), str(run_dir), "--fail-on", "img_per_s>10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("ganbench: error:") for line in err)


def test_differing_settings_are_noted_not_fatal(tmp_path, capsys):
    old = write_run(tmp_path / "old", [dict(r, batch_size=64) for r in run_rows()])
    new = write_run(tmp_path / "new", [dict(r, batch_size=16.0) for r in run_rows()])
    same = write_run(tmp_path / "same", [dict(r, batch_size=64.0) for r in run_rows()])
    assert main(["compare", str(old), str(new)]) == 0
    err = capsys.readouterr().err
    assert "batch_size differs: 64 in old, 16 in new (2 row(s)" in err
    assert main(["compare", str(old), str(same)]) == 0
    assert "differs" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Spreads and noise, quality tags, plugin directions, display, closed pipes
# ------------------------------------------------------------------------------------------
def timed(median, p10, p90, n=100, **extra):
    return {"step_ms_median": median, "step_ms_p10": p10, "step_ms_p90": p90,
            "timed_steps": n, "batch_size": 64, **extra}


def test_noise_rule_each_median_inside_the_other_range():
    old = side([{"combo": "a", "status": "ok", **timed(100.0, 95.0, 110.0)},
                {"combo": "b", "status": "ok", **timed(100.0, 98.0, 102.0)}])
    new = side([{"combo": "a", "status": "ok", **timed(104.0, 96.0, 112.0)},   # inside both
                {"combo": "b", "status": "ok", **timed(111.0, 109.0, 113.0)}])  # +11%, tight
    table = cmp.compare(old, new, {"step_ms_median": 10.0})
    a = verdict(table, "a", "step_ms_median")
    assert a["verdict"] == cmp.NOISE and a["delta_pct"] == pytest.approx(4.0)
    assert (a["old_low"], a["old_high"], a["old_count"]) == (95.0, 110.0, 100)
    b = verdict(table, "b", "step_ms_median")
    assert b["verdict"] == cmp.REGRESSION
    # p10/p90 are the spread of the median, not metrics of their own
    assert "step_ms_p10" not in set(table["metric"])
    # 30% slower but the spreads overlap both medians: noise, not a failure (the stated rule)
    wide_old = side([{"combo": "a", "status": "ok", **timed(100.0, 60.0, 140.0)}])
    wide_new = side([{"combo": "a", "status": "ok", **timed(130.0, 90.0, 170.0)}])
    assert cmp.regressions(cmp.compare(wide_old, wide_new, {"step_ms_median": 10.0})).empty


def test_img_per_s_spread_comes_from_the_step_times():
    old = side([{"combo": "a", "status": "ok", "img_per_s": 640.0, **timed(100.0, 80.0, 128.0)}])
    table = cmp.compare(old, old)
    row = verdict(table, "a", "img_per_s")
    # 64 images / 128 ms = 500 img/s (slow end), 64 / 80 ms = 800 img/s
    assert row["old_low"] == pytest.approx(500.0) and row["old_high"] == pytest.approx(800.0)


def test_quality_metrics_across_metric_image_sizes_or_n_are_not_compared():
    old = side([{"combo": "a", "status": "ok", "img_per_s": 100.0, "fid_digits": 20.0,
                 "image_size": 32, "metric_image_size": 32, "metric_n": 1000}])
    new = side([{"combo": "a", "status": "ok", "img_per_s": 50.0, "fid_digits": 90.0,
                 "image_size": 32, "metric_image_size": 64, "metric_n": 1000}])
    table = cmp.compare(old, new, {"img_per_s": -10.0})
    fid = verdict(table, "a", "fid_digits")
    assert fid["verdict"] == "not comparable: metric_image_size 32 in old, 64 in new"
    assert math.isnan(fid["delta_pct"])
    assert verdict(table, "a", "img_per_s")["verdict"] == cmp.REGRESSION  # throughput still
    assert cmp.refused_metrics(table) == {"fid_digits": ["metric_image_size 32 in old, 64 in new"]}
    n_differs = side([{"combo": "a", "status": "ok", "fid_digits": 20.0, "image_size": 32,
                       "metric_image_size": 32, "metric_n": 500}])
    assert "metric_n 1000 in old, 500 in new" in verdict(
        cmp.compare(old, n_differs), "a", "fid_digits")["verdict"]
    # The training image_size does not decide: scored at the same size, the numbers compare.
    trained_bigger = side([{"combo": "a", "status": "ok", "fid_digits": 25.0, "image_size": 64,
                            "metric_image_size": 32, "metric_n": 1000}])
    assert verdict(cmp.compare(old, trained_bigger), "a", "fid_digits")["verdict"] == cmp.WORSE
    # A table from before metric_image_size: its image_size is what was scored.
    older = side([{"combo": "a", "status": "ok", "fid_digits": 25.0, "image_size": 64,
                   "metric_n": 1000}])
    assert verdict(cmp.compare(old, older), "a", "fid_digits")["verdict"].startswith(
        "not comparable: metric_image_size 32 in old, 64 in new")


def test_cli_refused_quality_metrics(tmp_path, capsys):
    old = write_run(tmp_path / "old", [dict(r, image_size=32, metric_n=1000) for r in run_rows()])
    new = write_run(tmp_path / "new", [dict(r, image_size=64, metric_n=1000) for r in run_rows()])
    assert main(["compare", str(old), str(new)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not compared" in line]
    assert len(lines) == 2  # one per refused metric: fid_digits, is_digits
    assert "fid_digits not compared: metric_image_size 32 in old, 64 in new" in lines[0]
    # a gate on a metric that cannot be compared is an error, not a pass
    assert main(["compare", str(old), str(new), "--fail-on", "fid_digits:+15%"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot check it" in err
    # only quality metrics asked for: exit 2; throughput alongside: compared
    assert main(["compare", str(old), str(new), "--metrics", "fid_digits"]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", str(old), str(new), "--metrics", "fid_digits,img_per_s"]) == 0


class _SharpPlugin:
    @staticmethod
    @hookimpl
    def ganbench_register_metrics(register):
        register(MetricSpec(name="sharp", summary="a test metric", factory=object,
                            directions={"sharp_score": "higher", "blur_*": "lower",
                                        "sharp_gap": "closer"}))


@pytest.fixture
def sharp_plugin(monkeypatch):
    pm, broken = registry.make_plugin_manager(load_entrypoints=False)
    pm.register(_SharpPlugin, name="sharp-test")
    monkeypatch.setattr(registry, "_REGISTRY", registry.collect(pm, broken))


def test_a_plugin_metric_direction_reaches_compare_and_fail_on(sharp_plugin):
    assert cmp.direction("sharp_score") == "higher" and cmp.direction("blur_px") == "lower"
    assert cmp.direction("sharp_gap") == "closer"
    assert cmp.parse_fail_on("sharp_score:-5%") == {"sharp_score": -5.0}
    old = side([{"combo": "a", "status": "ok", "sharp_score": 10.0}])
    new = side([{"combo": "a", "status": "ok", "sharp_score": 9.0}])
    assert verdict(cmp.compare(old, new, {"sharp_score": -5.0}), "a",
                   "sharp_score")["verdict"] == cmp.REGRESSION


def test_builtin_metric_directions_come_from_their_specs():
    from ganbench.registry import get_registry

    specs = get_registry().metrics
    assert dict(specs["fid-digits"].directions) == {"fid_digits": "lower"}
    assert dict(specs["prdc"].directions) == {"prdc_precision": "closer",
                                              "prdc_density": "closer", "prdc_recall": "higher", "prdc_coverage": "higher"}
    assert cmp.is_quality("fid_digits") and not cmp.is_quality("img_per_s")


def test_markdown_shows_mib_signed_percent_and_spread(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    old = write_run(tmp_path / "old", [dict(r, **timed(160.0, 150.0, 170.0)) for r in
                                       run_rows()])
    new = write_run(tmp_path / "new", [dict(r, **timed(160.0, 150.0, 170.0)) for r in run_rows(
        dcgan__bce={"peak_mem_bytes": 440_000_000, "img_per_s": 90.0})])
    assert main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "dcgan+bce" in x and "peak_mem_bytes" in x)
    cells = [c.strip() for c in line.split("|")]
    assert "peak_mem_bytes (MiB)" in cells and "381.5" in cells and "419.6" in cells
    assert "+10.0%" in cells
    line = next(x for x in out.splitlines() if "dcgan+bce" in x and "img_per_s" in x)
    assert "-10.0%" in line
    line = next(x for x in out.splitlines() if "dcgan+bce" in x and "step_ms_median" in x)
    assert "150-170 n=100" in line
    assert "nan" not in out and "e+0" not in out


def test_fail_on_exits_1_even_when_stdout_is_a_closed_pipe(tmp_path):
    import subprocess
    import sys

    old = write_run(tmp_path / "old", run_rows())
    new = write_run(tmp_path / "new", run_rows(dcgan__bce={"fid_digits": 30.0}))
    proc = subprocess.Popen([sys.executable, "-m", "ganbench", "compare", str(old), str(new),
                             "--fail-on", "fid_digits:+15%"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1, err
    assert "1 regression(s): dcgan+bce:fid_digits" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------
# Two-sided metrics, the noise band, the summary line, seeds (issues 20 and 22)
# ------------------------------------------------------------------------------------------
REAL = {"combo": "real data", "status": "reference", "prdc_precision": 0.90,
        "prdc_density": 0.98, "is_digits": 2.15, "modes_share_7": 0.50, "modes_share_8": 0.49,
        "metric_n": 1001, "metric_image_size": 32}


def quality_row(**values):
    return {"combo": "dcgan+bce", "status": "ok", "metric_n": 1001, "metric_image_size": 32,
            **values}


def test_repeated_digits_are_worse_on_every_two_sided_metric(tmp_path, capsys):
    # A fair generator against one that repeats a few real digits (precision 1.00, density
    # 1.62) or draws all ten digits for a 7s-and-8s run (IS 9.5): higher, never better.
    fair = quality_row(prdc_precision=0.86, prdc_density=0.90, is_digits=2.30,
                       modes_share_7=0.47, modes_share_8=0.46)
    collapsed = quality_row(prdc_precision=1.00, prdc_density=1.62, is_digits=9.5,
                            modes_share_7=0.95, modes_share_8=0.0)
    table = cmp.compare(side([fair, REAL]), side([collapsed, REAL]))
    for metric in ("prdc_precision", "prdc_density", "is_digits", "modes_share_7",
                   "modes_share_8"):
        row = verdict(table, "dcgan+bce", metric)
        assert row["better"] == "closer" and row["verdict"] == cmp.WORSE, metric
    density = verdict(table, "dcgan+bce", "prdc_density")
    # distance to real 0.98: |0.90 - 0.98| = 0.08 -> |1.62 - 0.98| = 0.64, +700%
    assert density["delta_pct"] == pytest.approx(700.0)
    assert (density["old_real"], density["new_real"]) == (0.98, 0.98)
    old = write_run(tmp_path / "old", [fair, REAL])
    new = write_run(tmp_path / "new", [collapsed, REAL])
    capsys.readouterr()
    assert main(["compare", str(old), str(new), "--fail-on",
                 "prdc_density:-10%,is_digits:-10%"]) == 1
    err = capsys.readouterr().err
    assert "dcgan+bce:is_digits" in err and "dcgan+bce:prdc_density" in err
    # and the other way round it is an improvement, which never fails
    assert main(["compare", str(new), str(old), "--fail-on", "prdc_density:+10%"]) == 0


def test_closer_fail_on_reads_either_sign_and_needs_the_real_row(tmp_path, capsys):
    assert cmp.parse_fail_on("prdc_density:-10%,is_digits:+5%") == {"prdc_density": 10.0,
                                                                    "is_digits": 5.0}
    fair = quality_row(is_digits=2.30)
    old = write_run(tmp_path / "old", [fair])                  # no real-data row
    new = write_run(tmp_path / "new", [quality_row(is_digits=9.5), REAL])
    table = cmp.compare(cmp.read_side(old), cmp.read_side(new))
    assert verdict(table, "dcgan+bce", "is_digits")["verdict"] == (
        "not comparable: no real-data row in old")
    assert main(["compare", str(old), str(new), "--fail-on", "is_digits:+5%"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "distance to the real-data row" in err


def test_tiny_changes_are_unchanged_or_within_noise():
    old = side([{"combo": "a", "status": "ok", "fid_digits": 20.0, "peak_mem_bytes": 1000,
                 "img_per_s": 100.0, "modes_kl": 0.5}])
    new = side([{"combo": "a", "status": "ok", "fid_digits": 20.0, "peak_mem_bytes": 1001,
                 "img_per_s": 99.0, "modes_kl": 0.6}])
    table = cmp.compare(old, new, {"img_per_s": -0.5})
    assert verdict(table, "a", "fid_digits")["verdict"] == "unchanged"      # 0.0%
    assert verdict(table, "a", "peak_mem_bytes")["verdict"] == cmp.NOISE    # +0.1%
    assert verdict(table, "a", "img_per_s")["verdict"] == cmp.REGRESSION   # -1.0%: past
    assert verdict(table, "a", "modes_kl")["verdict"] == cmp.WORSE         # +20%
    assert cmp.summary_line(table) == "0 better, 2 worse, 1 within noise, 1 unchanged; " \
                                      "1 regression"


def test_cli_prints_the_summary_line_units_and_seed_notes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    old = bench_json(tmp_path / "old.json", {"test_a": 0.100, "test_b": 0.010})
    new = bench_json(tmp_path / "new.json", {"test_a": 0.150, "test_b": 0.010})
    assert main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "median (s)" in out                                  # pytest-benchmark: seconds
    assert out.strip().splitlines()[-1] == "0 better, 1 worse, 0 within noise, 1 unchanged; " \
                                           "0 regressions"
    a = write_run(tmp_path / "a", [dict(r, seed=0) for r in run_rows()])
    b = write_run(tmp_path / "b", [dict(r, seed=1) for r in run_rows()])
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "seed differs: 0 in old, 1 in new" in captured.err
    assert "0 better, 0 worse" in captured.err                 # csv stays clean on stdout
    assert "better, " not in captured.out


def seeded(values: dict[str, list[float]], metric: str = "fid_digits") -> list[dict]:
    return [{"combo": combo, "status": "ok", "seed": s, metric: v, "metric_n": 1001,
             "metric_image_size": 32}
            for combo, vals in values.items() for s, v in enumerate(vals)]


def test_multi_seed_runs_compare_seed_distributions(tmp_path, capsys):
    old = side(seeded({"a": [20.0, 21.0, 22.0], "b": [20.0, 21.0, 22.0]}))
    new = side(seeded({"a": [30.0, 31.0, 32.0], "b": [19.0, 23.0, 21.5]}))
    table = cmp.compare(old, new, {"fid_digits": 15.0})
    a, b = verdict(table, "a", "fid_digits"), verdict(table, "b", "fid_digits")
    assert a["verdict"] == cmp.REGRESSION and a["effect_g"] < 0 and a["p_value"] < 0.05
    assert (a["old"], a["old_low"], a["old_high"], a["old_count"]) == (21.0, 20.0, 22.0, 3)
    # b's median moved +2.4% (21 -> 21.5), which the p10-p90 rule or a lone pair would call
    # worse; over three seeds it is noise
    assert b["verdict"] == cmp.NOISE and b["p_value"] > 0.05 and "Welch" in b["test"]
    # different seed counts are said, and a one-seed side is compared without a test
    more = write_run(tmp_path / "more", seeded({"a": [20.0, 21.0, 22.0, 20.5]}))
    one = write_run(tmp_path / "one", [dict(r, seed=0) for r in seeded({"a": [21.0]})])
    three = write_run(tmp_path / "three", seeded({"a": [20.0, 21.0, 22.0]}))
    assert main(["compare", str(three), str(more)]) == 0
    assert "seeds differ: 3 seeds (0,1,2) in old, 4 seeds (0,1,2,3) in new" in \
        capsys.readouterr().err
    assert main(["compare", str(three), str(one)]) == 0
    assert "one side has a single seed" in capsys.readouterr().err


def test_duplicate_seed_of_a_combination_is_an_error():
    rows = seeded({"a": [1.0, 2.0]})
    rows[1]["seed"] = 0
    with pytest.raises(UserError, match="'a' appears twice with seed 0"):
        side(rows)


def test_narrow_terminal_keeps_both_spreads_or_neither_and_says_so(tmp_path, capsys,
                                                                    monkeypatch):
    old = write_run(tmp_path / "old", [dict(r, **timed(160.0, 150.0, 170.0)) for r in
                                       run_rows()])
    new = write_run(tmp_path / "new", [dict(r, **timed(180.0, 175.0, 185.0)) for r in
                                       run_rows()])
    for width in (80, 100, 120, 160):
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(["compare", str(old), str(new)]) == 0
        out = capsys.readouterr().out
        header = out.splitlines()[0]
        assert ("old spread" in header) == ("new spread" in header), width
        assert "change" in header and "verdict" in header
        assert max(len(line) for line in out.splitlines()) <= width
        if "old spread" not in header:
            assert "old spread, new spread" in " ".join(out.split())
