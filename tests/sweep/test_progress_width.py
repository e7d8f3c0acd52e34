"""Issue 22, item 9: at 80 columns the bars keep their width and show one ETA; piped progress
prints a line at least every HEARTBEAT_S while a combination runs. Item 6: a warning raised in
the parent and again in the worker is shown once."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from ganbench.sweep.progress import MIN_BAR, Progress

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(stream: io.StringIO) -> list[str]:
    """Every line tqdm drew (each redraw starts with a carriage return)."""
    return [seg for seg in re.split(r"[\r\n]", ANSI.sub("", stream.getvalue())) if seg.strip()]


def bar_width(line: str) -> int:
    return len(line.split("|")[1]) if line.count("|") >= 2 else -1


@pytest.mark.parametrize("width", [80, 120])
def test_at_80_columns_the_bars_keep_their_width_and_there_is_one_eta(width):
    stream = Terminal()
    progress = Progress(total=2, steps=600, stream=stream, width=width)
    progress.start("sagan+hinge+eager-attn")
    progress.event("sagan+hinge+eager-attn", "phase", phase="training")
    for step in (10, 20, 300):
        progress.event("sagan+hinge+eager-attn", "step", step=step, d_loss=1.047,
                       g_loss=-0.256)
    progress.combo_bar = progress.running["sagan+hinge+eager-attn"].bar
    progress.combo_bar.refresh()
    progress.overall.refresh()
    lines = drawn(stream)
    combo = [line for line in lines if line.startswith("sagan+hinge+eager-attn:")]
    overall = [line for line in lines if line.startswith("combinations:")]
    assert combo and overall
    for line in combo + overall:
        assert len(line) <= width, line
        assert bar_width(line) >= MIN_BAR, line
        assert line.count("ETA") <= 1 and "<" not in line and "s/it" not in line, line
    assert all("ETA" not in line for line in combo)  # the run's ETA is on the sweep's bar only
    assert "ETA" in overall[-1]
    last = combo[-1]
    assert last.endswith("300/600, training" + (" d_loss=1.047 g_loss=-0.256" if width >= 100
                                                 else "")), last
    progress.close()


def test_a_long_name_is_cut_so_the_bar_keeps_its_width():
    stream = Terminal()
    progress = Progress(total=1, steps=600, stream=stream, width=80)
    name = "sagan+a-very-long-loss-plugin-name+another-long-kernel-name"
    progress.start(name)
    progress.event(name, "phase", phase="compiling kernels")
    progress.running[name].bar.refresh()
    progress.close()
    line = [x for x in drawn(stream) if x.startswith("sagan+a-very")][-1]
    assert len(line) <= 80 and bar_width(line) >= MIN_BAR and "…:" in line, line


def test_piped_progress_prints_at_least_every_heartbeat_while_nothing_happens():
    stream = io.StringIO()
    progress = Progress(total=1, steps=600, stream=stream, terminal=False, heartbeat_s=0.4)
    progress.start("sagan+hinge+eager-attn")
    progress.event("sagan+hinge+eager-attn", "phase", phase="training")
    progress.event("sagan+hinge+eager-attn", "step", step=10, d_loss=1.0, g_loss=1.0)
    time.sleep(1.5)  # no event at all: a slow first tenth of the steps
    progress.close()
    lines = stream.getvalue().splitlines()
    beats = [line for line in lines if ": still step 10/600 after " in line]
    assert 2 <= len(beats) <= 4, lines
    time.sleep(0.6)
    assert stream.getvalue().splitlines() == lines  # close() stopped the heartbeat


def test_no_heartbeat_when_quiet_or_once_the_combination_is_done():
    stream = io.StringIO()
    progress = Progress(total=1, steps=10, stream=stream, terminal=False, heartbeat_s=0.2)
    progress.start("a")
    progress.finish("a", "ok")
    time.sleep(0.6)
    progress.close()
    assert not [line for line in stream.getvalue().splitlines() if "still" in line]
    quiet = io.StringIO()
    silent = Progress(total=1, steps=10, stream=quiet, quiet=True, heartbeat_s=0.2)
    silent.start("a")
    time.sleep(0.5)
    silent.close()
    assert quiet.getvalue() == ""


@pytest.mark.slow  # ~30 s on the shared 2-core machine: a worker trains 2 steps
def test_a_warning_in_parent_and_worker_is_shown_once(tmp_path):
    """Pillow warns while reading these images: once when the run is planned (the parent) and
    again when the worker loads the data. The user sees one line."""
    from PIL import Image

    folder = tmp_path / "digits"
    for digit in (7, 8):
        (folder / str(digit)).mkdir(parents=True)
        for i in range(8):
            image = Image.fromarray(np.full((28, 28), 30 * i, np.uint8), mode="L").convert("P")
            image.save(folder / str(digit) / f"{i}.png", transparency=b"\x00" * 256)
    res = subprocess.run([sys.executable, "-m", "ganbench", "run", "--plugins", "dcgan",
                          "--data", f"folder:{folder}", "--metrics", "none", "--steps", "2",
                          "--warmup", "1", "--batch-size", "4", "--device", "cpu", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    mentions = [line for line in res.stderr.splitlines()
                if "Palette images with Transparency" in line]
    assert len(mentions) == 1 and mentions[0].startswith("warning: UserWarning: "), res.stderr
