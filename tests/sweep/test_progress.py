"""ganbench.sweep.progress: what a run shows on stderr, drawn from events (no training here)."""

from __future__ import annotations

import io
import re

from ganbench.sweep.progress import Progress, _format_duration

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def plain(**kwargs) -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    return Progress(stream=stream, terminal=False, **kwargs), stream


def test_plain_lines_are_timestamped_at_each_phase_and_every_tenth_of_the_steps():
    progress, stream = plain(total=2, steps=40)
    progress.start("a+b")
    progress.event("a+b", "phase", phase="training")
    progress.event("a+b", "phase", phase="training")  # no change: no line
    for step in range(2, 41, 2):  # every 2 steps = 5%: only every other one gets a line
        progress.event("a+b", "step", step=step, d_loss=0.5, g_loss=1.25)
    progress.event("a+b", "phase", phase="writing")
    progress.finish("a+b", "ok")
    lines = stream.getvalue().splitlines()
    assert all(re.match(rf"{STAMP} \[1/2\] a\+b: ", line) for line in lines), lines
    body = [line.split(": ", 1)[1].rsplit(" (run ETA", 1)[0] for line in lines]
    steps = [b for b in body if b.startswith("step ")]
    assert [s.split()[1] for s in steps] == [f"{n}/40" for n in range(4, 41, 4)]
    assert steps[0] == "step 4/40 (10%) d_loss=0.500 g_loss=1.250"
    assert body[0] == "training" and body[-2] == "writing" and body[-1].startswith("ok in ")


def test_notes_and_warnings_once_per_run_and_quiet_shows_nothing():
    progress, stream = plain(total=1, steps=10)
    for _ in range(3):
        progress.note("metric x not run: needs y")
        progress.warning("UserWarning: z (plugin.py:3)")
    assert stream.getvalue().splitlines() == ["note: metric x not run: needs y",
                                              "warning: UserWarning: z (plugin.py:3)"]
    quiet, stream = plain(total=1, steps=10, quiet=True)
    quiet.note("n")
    quiet.warning("w")
    quiet.start("a")
    quiet.event("a", "step", step=10, d_loss=1.0, g_loss=1.0)
    quiet.finish("a", "failed", "boom")
    assert stream.getvalue() == ""


def test_a_failed_combination_is_named_with_its_error():
    progress, stream = plain(total=1, steps=10)
    progress.start("a")
    progress.finish("a", "diverged", "a loss became NaN or inf at step 3")
    assert stream.getvalue().splitlines()[-1] == \
        "a: diverged: a loss became NaN or inf at step 3"


def test_eta_scales_elapsed_time_by_the_work_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("ganbench.sweep.progress.time.monotonic", lambda: clock[0])
    progress, _ = plain(total=4, steps=10, done_before=1)  # 4 to train, 1 finished earlier
    assert progress.eta_s() is None  # nothing done yet: unknown
    progress.start("a")
    progress.event("a", "step", step=5, d_loss=0.0, g_loss=0.0)
    clock[0] = 110.0  # 10 s for half of one of four combinations
    assert progress.eta_s() == 10 * (4 - 0.5) / 0.5
    progress.finish("a", "ok")
    clock[0] = 120.0
    assert progress.eta_s() == 20 * 3 / 1


def test_durations_read_naturally():
    assert [_format_duration(s) for s in (None, 0.4, 59, 61, 3600 + 120)] == \
        ["?", "0s", "59s", "1m01s", "1h02m"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_bars_show_the_sweep_and_each_combination():
    stream = _Terminal()
    progress = Progress(total=2, steps=10, stream=stream)
    assert progress.terminal
    progress.note("once")
    progress.start("dcgan+bce")
    progress.event("dcgan+bce", "phase", phase="training")
    progress.event("dcgan+bce", "step", step=10, d_loss=0.25, g_loss=2.0)
    progress.finish("dcgan+bce", "ok")
    progress.start("sagan+hinge")
    progress.finish("sagan+hinge", "crashed", "worker was killed by SIGKILL")
    progress.close()
    text = stream.getvalue()
    assert "combinations" in text and "2/2" in text  # the sweep's bar reached the end
    assert "dcgan+bce:   0%" in text  # its bar (later redraws are rate-limited by tqdm)
    assert "note: once" in text
    assert "sagan+hinge: crashed: worker was killed by SIGKILL" in text
