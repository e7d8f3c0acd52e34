"""A run with several seeds per combination: summary.csv, the table that replaces the per-seed
rows (screen and results.md), the verdicts under it, the HTML, and --reference."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ganbench.cli import main
from ganbench.results import store, summary

FID = {"dcgan+bce": [80.0, 90.0, 85.0], "sagan+hinge+eager-attn": [60.0, 62.0, 61.0]}
RATE = {"dcgan+bce": [100.0, 104.0, 102.0], "sagan+hinge+eager-attn": [50.0, 52.0, 51.0]}


def seeded_rows(seeds=(0, 1, 2)) -> list[dict]:
    rows = []
    for combo in FID:
        for i, seed in enumerate(seeds):
            rows.append({"combo": combo, "status": "ok", "seed": seed, "steps": 6,
                         "batch_size": 8, "digits": "7,8", "img_per_s": RATE[combo][i],
                         "step_ms_median": 8000.0 / RATE[combo][i],
                         "peak_mem_bytes": 2 ** 20 * (100 + i), "fid_digits": FID[combo][i],
                         "is_digits": 2.2 + 0.01 * i, "modes_share_7": 0.5,
                         "metric_n": 50, "metric_image_size": 16, "finished_at": f"t{i}"})
    rows.append({"combo": "real data", "status": "reference", "fid_digits": 3.0,
                 "is_digits": 2.15, "modes_share_7": 0.5, "metric_n": 50,
                 "metric_image_size": 16})
    return rows


def test_summarise_medians_intervals_and_constant_columns():
    out = summary.summarise(pd.DataFrame(seeded_rows())).set_index("combo")
    d = out.loc["dcgan+bce"]
    assert (d["fid_digits"], d["fid_digits_ci_low"], d["fid_digits_ci_high"]) == (85.0, 80.0, 90.0)
    assert d["img_per_s"] == 102.0 and d["peak_mem_bytes"] == 2 ** 20 * 101
    assert d["n_seeds"] == 3 and d["seeds"] == "0,1,2" and d["status"] == "ok"
    assert d["ci_coverage"] == pytest.approx(0.75)       # 3 seeds: min-max holds it 75%
    assert d["steps"] == 6 and d["metric_n"] == 50       # the same for every seed: kept
    assert d["finished_at"] is None or (isinstance(d["finished_at"], float)
                                        and math.isnan(d["finished_at"]))  # differs: blank
    assert out.loc["real data", "status"] == "reference"
    assert out.loc["real data", "fid_digits"] == 3.0


def test_a_failed_seed_is_counted_not_averaged():
    rows = seeded_rows()
    rows[1].update(status="diverged", fid_digits=float("nan"))
    d = summary.summarise(pd.DataFrame(rows)).set_index("combo").loc["dcgan+bce"]
    assert d["status"] == "2/3 ok, 1 diverged" and d["n_seeds"] == 2
    assert d["fid_digits"] == pytest.approx(82.5)        # median of 80 and 85
    assert d["seeds"] == "0,1,2"


def test_one_seed_per_combination_is_no_summary():
    rows = [r for r in seeded_rows() if r.get("seed", 0) == 0]
    df = pd.DataFrame(rows)
    assert not summary.has_seeds(df)
    assert "[" not in store.summary_markdown(df)          # the per-seed table as before


def test_write_table_writes_summary_and_verdicts_and_shows_them(tmp_path):
    df = store.write_table(seeded_rows(), tmp_path)
    assert len(df) == 7                                   # results.csv keeps every seed
    summ = pd.read_csv(tmp_path / "summary.csv")
    assert list(summ["combo"]) == ["dcgan+bce", "sagan+hinge+eager-attn", "real data"]
    verdicts = pd.read_csv(tmp_path / "verdicts.csv")
    fid = verdicts[verdicts["metric"] == "fid_digits"].iloc[0]
    assert (fid["combo"], fid["vs"], fid["verdict"]) == ("dcgan+bce", "sagan+hinge+eager-attn",
                                                         "worse")
    md = (tmp_path / "results.md").read_text()
    table, _, below = md.partition("Verdicts")
    assert table.count("| dcgan+bce ") == 1               # one row, not three
    assert "| dcgan+bce" in below                         # and its verdicts under it
    assert "85.00 [80.00, 90.00]" in md                  # fid_digits: 4 significant figures
    assert "Verdicts between combinations" in md and "Welch" in md
    assert "75% at 3 seeds" in md


def test_the_runs_reference_comes_from_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"reference": "sagan+hinge+eager-attn"}))
    df = store.write_table(seeded_rows(), tmp_path)
    assert df.attrs["reference"] == "sagan+hinge+eager-attn"
    verdicts = pd.read_csv(tmp_path / "verdicts.csv")
    assert set(verdicts["vs"]) == {"sagan+hinge+eager-attn"}
    assert "Verdicts against sagan+hinge+eager-attn" in (tmp_path / "results.md").read_text()


def test_printed_table_fits_and_replaces_the_seed_rows():
    text = store.summary_markdown(pd.DataFrame(seeded_rows()), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    table = text.partition("Verdicts")[0]
    lines = [x for x in table.splitlines() if x.startswith("dcgan+bce ")]
    assert len(lines) == 1                                # one row for three seeds
    assert lines[0].split()[1] == "3"                     # n: three seeds
    assert "[100, 104]" in lines[0]                       # img/s: median [interval]


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"rows": seeded_rows()}))
    return folder


def test_report_reference_flag_and_a_bad_name(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["report", str(run_dir), "--reference", "dcgan+bce"]) == 0
    out = capsys.readouterr().out
    assert "Verdicts against dcgan+bce" in out and "sagan+hinge+eager-attn  better" in out
    assert main(["report", str(run_dir), "--reference", "dcgan"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean dcgan+bce" in err
    assert main(["report", str(run_dir), "--reference", "real data"]) == 2


def test_html_shows_intervals_verdicts_and_an_error_bar_chart(run_dir):
    from ganbench.results import html

    page = html.build_html(run_dir)
    assert "85.00 [80.00, 90.00]" in page and "Verdicts between combinations" in page
    assert "Medians over seeds" in page and page.count("data:image/png;base64,") == 1
    entries = html.gab_entries(html.read_table(run_dir))  # one entry per combination
    names = [e["name"] for e in entries["lower"]]
    assert names.count("dcgan+bce fid_digits") == 1
    fid = next(e for e in entries["lower"] if e["name"] == "dcgan+bce fid_digits")
    assert fid["value"] == 85.0


def test_run_reference_is_checked_at_planning(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "--plugins", "dcgan", "--reference", "sagan+hinge", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reference sagan+hinge" in err
    assert "dcgan+bce" in err and not out.exists()
