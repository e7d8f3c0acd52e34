"""ganbench report --html / --format gab-json on a hand-made run folder (no training)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ganbench.results import html as html_report
from ganbench.cli import main

COMBOS = ["dcgan+bce", "sagan+hinge+eager-attn", "sagan+hinge+sdpa-attn"]
MIB = 2 ** 20


def png(path: Path, shade: int) -> bytes:
    """A small grey PNG whose bytes differ per ``shade`` (so each embed is identifiable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 10), shade, dtype=np.uint8), mode="L").save(path)
    return path.read_bytes()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """Three ok combinations, one failed, the reference row; samples, attention, curves."""
    rows = []
    for i, combo in enumerate(COMBOS):
        rows.append({"combo": combo, "status": "ok", "batch_size": 16,
                     "img_per_s": 100.0 / (i + 1), "step_ms_median": 160.0 * (i + 1),
                     "step_ms_p10": 150.0 * (i + 1), "step_ms_p90": 200.0 * (i + 1),
                     "peak_mem_bytes": (500 + 10 * i) * MIB, "mem_method": "cpu.peak_rss",
                     "fid_digits": 20.0 + i, "is_digits": float("nan") if i == 2 else 1.5,
                     "device_name": "Test CPU", "torch_version": "2.x", "git_commit": "abc"})
    rows.append({"combo": "sagan+hinge+compile-attn", "status": "failed",
                 "error": "RuntimeError: boom"})
    rows.append({"combo": "real data", "status": "reference", "fid_digits": 0.4})
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    for i, combo in enumerate(COMBOS):
        png(tmp_path / "samples" / f"{combo}.png", 10 + i)
        if "sagan" in combo:
            png(tmp_path / "attention" / f"{combo}.png", 100 + i)
        curve = pd.DataFrame({"step": [10, 20, 30], "wall_s": [1.0, 2.0, 3.0],
                              "fid_digits": [40.0 - i, 30.0 - i, 25.0 - i]})
        (tmp_path / "curves").mkdir(exist_ok=True)
        curve.to_csv(tmp_path / "curves" / f"{combo}.csv", index=False)
    return tmp_path


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_html_embeds_every_combinations_images(run_dir):
    page = html_report.build_html(run_dir)
    images = embedded_pngs(page)
    for combo in COMBOS:
        assert (run_dir / "samples" / f"{combo}.png").read_bytes() in images, combo
        assert combo in page
        attention = run_dir / "attention" / f"{combo}.png"
        if attention.exists():
            assert attention.read_bytes() in images, combo
    # 3 samples + 2 attention maps + throughput + memory + curves
    assert len(images) == 3 + 2 + 3
    assert all(img.startswith(b"\x89PNG") for img in images)


def test_html_is_self_contained(run_dir):
    page = html_report.build_html(run_dir)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    assert "<script" not in page


def test_html_reports_failures_and_table(run_dir):
    page = html_report.build_html(run_dir)
    assert "sagan+hinge+compile-attn (failed)" in page
    assert "RuntimeError: boom" in page       # the error column is in the table
    assert "Test CPU" in page                 # environment line


def test_curves_section_only_with_curves(run_dir):
    assert "Quality over training" in html_report.build_html(run_dir)
    for path in (run_dir / "curves").iterdir():
        path.unlink()
    page = html_report.build_html(run_dir)
    assert "Quality over training" not in page
    assert len(embedded_pngs(page)) == 3 + 2 + 2


def test_charts_skip_missing_columns(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"rows": [
        {"combo": "dcgan+bce", "status": "failed", "error": "x"}]}))
    page = html_report.build_html(tmp_path)
    assert embedded_pngs(page) == []
    assert "dcgan+bce (failed)" in page


def test_gab_json_shape_and_directions(run_dir):
    paths = html_report.write_gab_json(run_dir)
    assert [p.name for p in paths] == ["gab-bigger.json", "gab-smaller.json"]

    def strict(path):  # github-action-benchmark needs plain JSON numbers: no NaN
        return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))

    bigger, smaller = strict(paths[0]), strict(paths[1])
    for entries in (bigger, smaller):
        assert isinstance(entries, list) and entries
        for e in entries:
            assert {"name", "unit", "value"} <= set(e) <= {"name", "unit", "value", "extra"}
            assert isinstance(e["value"], float) and isinstance(e["unit"], str)
    big = {e["name"]: e for e in bigger}
    small = {e["name"]: e for e in smaller}
    assert big["dcgan+bce img_per_s"]["value"] == 100.0
    assert big["dcgan+bce img_per_s"]["unit"] == "img/s"  # the column registry's unit
    assert small["dcgan+bce step_ms_median"]["unit"] == "ms"
    assert small["sagan+hinge+eager-attn peak_mem_bytes"] == {
        "name": "sagan+hinge+eager-attn peak_mem_bytes", "unit": "MiB", "value": 510.0,
        "extra": "Test CPU, 2.x, abc"}
    assert "dcgan+bce fid_digits" in small
    # is_digits is closer-to-real: without the real row's value it cannot be judged
    names = " ".join(list(big) + list(small))
    assert "is_digits" not in names
    assert "real data" not in names and "compile-attn" not in names  # reference, failed rows


def test_gab_json_gives_closer_metrics_as_their_distance_to_real(run_dir):
    df = html_report.read_table(run_dir)
    df.loc[df["status"] == "reference", "is_digits"] = 1.75
    entries = html_report.gab_entries(df)
    small = {e["name"]: e for e in entries["lower"]}
    assert small["dcgan+bce is_digits distance to real"]["value"] == pytest.approx(0.25)
    assert "sagan+hinge+sdpa-attn is_digits distance to real" not in small  # NaN left out
    assert not [e for e in entries["higher"] if "is_digits" in e["name"]]


def test_cli_report_html_and_gab(run_dir, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(run_dir), "--html", str(out), "--format", "gab-json",
                 "--gab-dir", str(tmp_path / "gab")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("combo")              # the table is still printed
    assert out.exists() and (tmp_path / "gab" / "gab-bigger.json").exists()
    assert main(["report", str(run_dir), "--html"]) == 0
    assert (run_dir / "report.html").exists()


def test_cli_report_missing_run_is_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--html"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# What a reader sees: settings, a table that scrolls, reference lines, attention colour bars
# ------------------------------------------------------------------------------------------
def test_header_shows_the_run_settings_from_config_json(run_dir):
    (run_dir / "config.json").write_text(json.dumps({
        "plugins": ["dcgan", "sagan"], "steps": 600, "batch_size": 64, "image_size": 32,
        "device": "cpu", "dtype": "fp32", "seed": 7, "data": "embedded", "digits": [7, 8]}))
    page = html_report.build_html(run_dir)
    for label, value in (("steps", "600"), ("batch", "64"), ("image size", "32"),
                         ("device", "cpu"), ("dtype", "fp32"), ("seed", "7"),
                         ("data", "embedded"), ("digits", "7, 8")):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page, label


def test_header_falls_back_to_the_rows_without_config_json(run_dir):
    page = html_report.build_html(run_dir)
    assert "<dt>batch</dt><dd>16</dd>" in page


def test_table_scrolls_and_has_units_and_blanks(run_dir):
    page = html_report.build_html(run_dir)
    table = page[page.index('<div class="scroll">'):]
    table = table[:table.index("</div>")]
    assert "<th>img/s</th>" in table and "<th>peak MiB</th>" in table
    assert "500.0" in table                 # 500 MiB of bytes
    assert "nan" not in table.lower()
    assert "overflow-x: auto" in page


def test_every_quality_curve_gets_the_real_data_line(run_dir, monkeypatch):
    import matplotlib.axes

    lines = []
    real = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda ax, y=0, *a, **k: (
        lines.append((ax.get_title(), y, k.get("label"))), real(ax, y, *a, **k))[1])
    curves = html_report.read_curves(run_dir)
    for combo, df in curves.items():
        df["prdc_recall"] = [0.1, 0.2, 0.3]
    df = html_report.read_table(run_dir)
    reference = html_report.reference_values(df)
    assert reference == {"fid_digits": 0.4}
    assert html_report.curves_chart(curves, {**reference, "prdc_recall": 0.88})
    assert sorted((y, label) for _, y, label in lines) == [(0.4, "real data"),
                                                          (0.88, "real data")]


def test_attention_figure_has_a_colour_bar_per_map_and_readable_titles(tmp_path):
    import matplotlib.figure
    import torch

    from ganbench.results import figures as report
    from ganbench.registry import get_registry
    from ganbench.specs import ModelRequest

    registry = get_registry()
    G, _ = registry.architectures["sagan"].build(
        ModelRequest(32, 20, attend=registry.attention["eager-attn"].factory()))
    saved = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        saved["fig"] = fig
        return real_savefig(fig, *args, **kwargs)

    import pytest as _pytest
    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", spy)
        path = report.save_attention_figure(G, torch.randn(2, 20, 1, 1), tmp_path / "a.png",
                                            "sagan")
    assert path.exists()
    fig = saved["fig"]
    layers = report.attention_modules(G)
    image_axes = [ax for ax in fig.axes if ax.get_images()]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2 * len(layers)     # one per map, per sample row
    titles = [ax.get_title() for ax in image_axes if ax.get_title()]
    assert titles[1].startswith(f"attention 1 of {len(layers)}: 8x8 map (N=64)")
    assert f"at {layers[0][0]}" in titles[1]
