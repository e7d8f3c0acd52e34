"""The table module and the tables built on it: units, formats, blanks, width, --columns,
--all-columns, --json, a plugin metric's columns, and bad tables (one line, exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ganbench.results import compare as cmp
from ganbench import registry
from ganbench.results import table
from ganbench.cli import main
from ganbench.hookspecs import hookimpl
from ganbench.results.store import summary_markdown
from ganbench.specs import Metric, MetricSpec

REPO = Path(__file__).resolve().parents[2]


def run_rows() -> list[dict]:
    """A run's rows as the runner writes them: every built-in metric, digits 7 and 8."""
    base = {"status": "ok", "digits": "7,8", "batch_size": 64, "image_size": 32,
            "steps": 180, "dtype": "fp32", "device_name": "AMD EPYC (2 cpus)"}
    rows = []
    for combo, rate, step, mem, fid in (("dcgan+bce", 373.3, 171.5, 573_833_216, 569.8),
                                        ("sagan+hinge+eager-attn", 209.6, 305.3, 713_752_576,
                                         16270.4)):
        rows.append({"combo": combo, **base, "img_per_s": rate, "step_ms_median": step,
                     "step_ms_p10": step * 0.96, "step_ms_p90": step * 1.07,
                     "timed_steps": 170, "peak_mem_bytes": mem, "fid_digits": fid,
                     "is_digits": 1.471, "prdc_precision": 0.7842, "prdc_recall": 0.0,
                     "prdc_density": 0.4, "prdc_coverage": 0.1, "modes_covered": 1,
                     "modes_total": 2, "modes_kl": 0.46, "modes_frac_7": 0.91,
                     "modes_frac_8": 0.02, "modes_frac_3": 0.01, "modes_share_7": 0.9,
                     "modes_share_8": 0.01, "modes_share_3": 0.01, "metric_n": 1001,
                     "d_loss_last10": 0.7, "git_commit": "abc123"})
    rows.append({"combo": "real data", "status": "reference", "fid_digits": 3.223,
                 "is_digits": 2.151, "prdc_precision": 0.9111, "prdc_recall": 0.8841,
                 "modes_covered": 2, "modes_frac_7": 0.5, "modes_frac_8": 0.49,
                 "modes_share_7": 0.5, "modes_share_8": 0.49,
                 "metric_n": 1001})
    return rows


def cells(text: str, row: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(row) or f"| {row}" in x)
    return line.split()


# ------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,figures,expected", [
    (16270.4, 3, "16270"), (6746.2, 3, "6746"), (171.53, 3, "172"), (3.2231, 3, "3.22"),
    (0.0002777, 3, "0.000278"), (0.0, 3, "0"), (-12.345, 4, "-12.35"), (float("nan"), 3, ""),
    (None, 3, ""), (float("inf"), 3, "inf"),
])
def test_sig_is_fixed_point_never_scientific(value, figures, expected):
    assert table.sig(value, figures) == expected


def test_units_and_formats_per_column():
    assert table.mib(573_833_216) == "547.2"
    assert table.signed_pct(12.34) == "+12.3%" and table.signed_pct(-4) == "-4.0%"
    assert table.signed_pct(0.01) == "0.0%" and table.signed_pct(float("nan")) == ""
    assert table.format_of("peak_mem_bytes").header == "peak MiB"
    assert table.format_of("step_ms_median").header == "step ms"
    assert table.format_of("img_per_s").header == "img/s"
    assert table.format_of("my_extra_bytes").header == "my_extra MiB"
    assert table.format_of("rel_err_dq").fmt(3.4e-7) == "3.4e-07"
    assert table.format_of("modes_frac_7").header == "7s argmax"
    assert table.format_of("modes_share_7").header == "7s share"


def test_small_tflops_are_shown_as_gflops():
    df = pd.DataFrame({"kernel": ["a", "b"], "tflops": [0.0002777, 0.0011]})
    out = table.render(df)
    assert "GFLOP/s" in out and "0.278" in out and "1.10" in out and "TFLOP/s" not in out
    big = table.render(pd.DataFrame({"kernel": ["a"], "tflops": [312.5]}))
    assert "TFLOP/s" in big and "312" in big


def test_missing_values_are_blank_and_a_column_keeps_one_format():
    text = summary_markdown(pd.DataFrame(run_rows()))
    assert "nan" not in text.lower() and "e+0" not in text
    assert cells(text, "sagan+hinge+eager-attn")[cells(text, "combo").index("fid_digits")
                                                  + 0] != ""
    assert "16270" in text and "569.8" in text  # one column, no 1.627e+04 beside 569.8


# ------------------------------------------------------------------------------------------
# The run summary
# ------------------------------------------------------------------------------------------
def test_default_run_table_fits_120_columns_with_units():
    df = pd.DataFrame(run_rows())
    text = summary_markdown(df, width=120)
    assert max(len(line) for line in text.splitlines()) <= 120
    header = text.splitlines()[0]
    for unit in ("img/s", "step ms", "peak MiB"):
        assert unit in header
    assert "fid_digits" in header and "modes" in header
    assert "547.2" in text                      # 573_833_216 bytes in MiB
    assert "172" in text                        # the median (its p10-p90 gave way to the shares)
    assert "3s" not in header.split()           # a class the run did not select
    # results.md (no width): markdown, nothing dropped
    md = summary_markdown(df)
    assert md.startswith("| combo") and "7s share" in md and "8s share" in md
    assert "argmax" not in md  # modes_frac_<d> stays in results.csv, out of the summary
    assert "172 (165-184)" in md  # results.md keeps the p10-p90


def test_a_narrow_terminal_drops_columns_and_says_which():
    text = summary_markdown(pd.DataFrame(run_rows()), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "left out to fit 80 characters" in text and "--columns" in text
    assert text.splitlines()[0].startswith("combo")


def test_columns_choose_and_order():
    text = summary_markdown(pd.DataFrame(run_rows()), ["combo", "fid_digits", "img_per_s"],
                            width=120)
    assert text.splitlines()[0].split() == ["combo", "fid_digits", "img/s"]


class ScoreMetric(Metric):
    def compute(self, fake, real, context):
        return {"sharpness_score": 1.0}


class SharpnessPlugin:
    @staticmethod
    @hookimpl
    def ganbench_register_metrics(register):
        register(MetricSpec(name="sharpness", summary="a test metric", factory=ScoreMetric,
                            directions={"sharpness_score": "higher"}))


@pytest.fixture
def with_plugin_metric(monkeypatch):
    pm, broken = registry.make_plugin_manager(load_entrypoints=False)
    pm.register(SharpnessPlugin, name="sharpness-test")
    monkeypatch.setattr(registry, "_REGISTRY", registry.collect(pm, broken))
    yield


def test_a_plugin_metric_column_appears_in_the_printed_table(with_plugin_metric, tmp_path):
    rows = run_rows()
    for row in rows:
        row["sharpness_score"] = 0.4321
    text = summary_markdown(pd.DataFrame(rows), width=140)
    assert "sharpness_score" in text.splitlines()[0] and "0.4321" in text
    assert max(len(line) for line in text.splitlines()) <= 140
    # Narrower, the per-class detail goes first; the step time's p10-p90 stays (issue 22), so
    # at 120 the plugin's column goes next, named in the note.
    text = summary_markdown(pd.DataFrame(rows), width=120)
    assert "(165-184)" in text
    assert "left out to fit 120 characters: modes_share_7, modes_share_8, sharpness_score" \
        in text
    assert "sharpness_score" in summary_markdown(pd.DataFrame(rows))  # results.md too
    assert cmp.parse_fail_on("sharpness_score:-5%") == {"sharpness_score": -5.0}


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"rows": run_rows()}))
    return folder


def test_report_default_columns_json_and_all_columns(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert max(len(x) for x in out.splitlines()) <= 120 and "peak MiB" in out
    assert main(["report", str(run_dir), "--columns", "combo,img_per_s,step_ms_p90"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["combo", "img/s", "p90", "ms"]
    assert main(["report", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[2]["img_per_s"] is None and rows[0]["fid_digits"] == 569.8
    assert main(["report", str(run_dir), "--all-columns"]) == 0
    out = capsys.readouterr().out
    assert max(len(x) for x in out.splitlines()) <= 120
    for column in ("d_loss_last10", "git_commit", "modes_kl", "metric n"):
        assert column in out
    # each part starts with the row names
    headers = [x for x in out.splitlines() if x.startswith("combo")]
    assert len(headers) >= 2


def test_report_unknown_column_is_one_line_exit_2(run_dir, capsys):
    assert main(["report", str(run_dir), "--columns", "combo,fid_digit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean fid_digits" in err


@pytest.mark.parametrize("content,needle", [
    ('{"rows": "abc"}', "must be a list of objects"),
    ('{"rows": [1, 2]}', "must be a list of objects"),
    ('{"nothing": []}', "no \"rows\" key"),
    ('[1, 2]', "no \"rows\" key"),
    ('{not json', "cannot read"),
])
def test_report_bad_results_json_is_one_line_exit_2_nothing_written(tmp_path, capsys, content,
                                                                    needle):
    (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path), "--html"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert captured.out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_the_committed_run_reports_within_120_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["report", str(REPO / "results" / "quality-cpu-600-steps")]) == 0
    out = capsys.readouterr().out
    assert max(len(x) for x in out.splitlines()) <= 120 and "nan" not in out


def test_split_repeats_the_key_and_loses_no_column():
    df = pd.DataFrame({"combo": ["a" * 20, "b"], **{f"column_{i}": [i * 1.5, math.nan]
                                                   for i in range(30)}})
    out = table.render(df, width=100, keys=["combo"], split=True)
    assert max(len(x) for x in out.splitlines()) <= 100
    for i in range(30):
        assert f"column_{i} " in out or out.count(f"column_{i}|") or f"column_{i}" in out
    parts = out.split("\n\n")
    assert len(parts) > 1 and all(p.startswith("| combo") for p in parts)


def test_run_columns_that_the_table_lacks_are_named_not_fatal():
    text = summary_markdown(pd.DataFrame(run_rows()), ["combo", "fid_digit", "img_per_s"],
                            width=120)
    assert text.splitlines()[0].split() == ["combo", "img/s"]
    assert "no column fid_digit in this table" in text
