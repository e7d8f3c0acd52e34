"""Screenshot a run's HTML report in a real headless browser (Chromium).

    python scripts/screenshot_report.py RUN_DIR OUT.png [--width 1400] [--height 2400]

Writes RUN_DIR/report.html if it is missing (``ganbench report RUN_DIR --html``), then loads
it in headless Chromium and saves a PNG of the first ``--height`` pixels at ``--width``: what a
person sees on a 1400-pixel-wide screen. This is how docs/images/html-report.png was made, and
tests/scripts/test_screenshot_report.py runs it where Chromium is installed.

Chromium is found as ``$CHROMIUM``, ``chromium``, ``chromium-browser`` or ``google-chrome`` on
PATH (Debian: ``apt-get install chromium``). The flags keep it off the network and out of any
profile: the page is a local file with every image embedded, so nothing needs a connection.
Exit status 2 with one line when no browser is found or it writes no image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Headless, no sandbox (containers run as root), no GPU, and nothing that reaches the network
# at start-up (updates, sync, QUIC, first-run pages): the machine may have no network at all.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")


def find_browser() -> Optional[str]:
    """The Chromium executable to use, or None."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"]) or os.environ["CHROMIUM"]
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 2400,
               browser: Optional[str] = None, timeout: float = 120.0) -> Path:
    """Render ``page`` (an HTML file) in headless Chromium into ``out`` (PNG).

    RuntimeError with one line when no browser is found or it produced no PNG."""
    browser = browser or find_browser()
    if not browser:
        raise RuntimeError("no Chromium found (install it: apt-get install chromium, or set "
                           "CHROMIUM=/path/to/chrome)")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="ganbench-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out}", Path(page).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.exists() or out.stat().st_size == 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{browser} wrote no screenshot (exit {proc.returncode}): {last}")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (results/runs/...)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    page = args.run_dir / "report.html"
    try:
        if not page.exists():
            from ganbench.results.html import write_html

            write_html(args.run_dir)
        path = screenshot(page, args.out, args.width, args.height)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
