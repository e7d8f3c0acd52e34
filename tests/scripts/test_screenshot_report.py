"""The HTML report in a real headless browser: scripts/screenshot_report.py renders a run's page
and the screenshot shows the page (not a blank or an error page). Skipped where no Chromium is
installed (CI images have none unless installed on purpose: `apt-get install chromium`)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganbench.results.html import write_html

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "results" / "quality-cpu-600-steps"
spec = importlib.util.spec_from_file_location("screenshot_report",
                                              REPO / "scripts" / "screenshot_report.py")
screenshot_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screenshot_report)

needs_browser = pytest.mark.skipif(
    screenshot_report.find_browser() is None,
    reason="no Chromium on PATH (apt-get install chromium); the screenshot needs a real browser")


@needs_browser
def test_screenshot_of_the_report_shows_the_page(tmp_path):
    page = write_html(RUN, tmp_path / "report.html")
    png = screenshot_report.screenshot(page, tmp_path / "shot.png", width=1400, height=1600)
    image = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert image.shape == (1600, 1400)
    # A rendered page: mostly white background with dark text and coloured charts, so both
    # ends of the grey scale are present; a blank or failed render is one flat colour.
    assert (image > 240).mean() > 0.5 and (image < 80).mean() > 0.005
    # The title line (dark text) sits in the top 80 pixels, left of the middle.
    assert (image[:80, :700] < 80).any()


@needs_browser
def test_cli_writes_the_png_and_reports_a_missing_browser(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("report.html"))
    assert screenshot_report.main([str(run), str(tmp_path / "a.png"), "--height", "800"]) == 0
    assert (run / "report.html").exists() and (tmp_path / "a.png").stat().st_size > 10_000
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    assert screenshot_report.main([str(run), str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("screenshot_report:")


def test_without_a_browser_the_error_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(screenshot_report.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        screenshot_report.screenshot(tmp_path / "x.html", tmp_path / "x.png")
