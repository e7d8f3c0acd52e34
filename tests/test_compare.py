"""ganbench compare: directions, thresholds, exit codes 0/1/2, missing rows, malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ganbench import compare as cmp
from ganbench.cli import main
from ganbench.errors import UserError


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
    ("is_digits", "higher"), ("prdc_precision", "higher"), ("prdc_coverage", "higher"),
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
    return cmp._from_run_table(pd.DataFrame(rows), "t")


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
    assert by[("test_op", "median")]["verdict"] == "same"
    assert by[("test_step[sagan]", "img_per_s")]["better"] == "higher"
    assert ("test_op", "note") not in by


def test_cli_csv_format(tmp_path, capsys):
    old = write_run(tmp_path / "old", run_rows())
    assert main(["compare", str(old), str(old), "--format", "csv"]) == 0
    df = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(df.columns) == cmp.COLUMNS
    assert set(df["verdict"]) == {"same"}


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
