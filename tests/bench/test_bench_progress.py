"""What bench attention shows on stderr while it works."""

import io
import re
import time

from ganbench.bench import progress, shapes
from ganbench.cli import main

STAMP = r"\[\d\d:\d\d:\d\d\] "


def test_piped_run_prints_the_plan_first_then_a_line_per_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shapes, "SHAPE_SETS",
                        {**shapes.SHAPE_SETS, "textbook": (shapes.Shape("tiny", 16, 8, 24),)})
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    err = capsys.readouterr().err.splitlines()  # capsys: not a terminal, as when piped
    assert re.fullmatch(STAMP + r"bench attention: 1 kernel\(s\) x 1 shape\(s\) x 2 passes = "
                        r"2 rows on cpu \(fp32, batch 2\); per row 1 warm-up call\(s\), then "
                        r">= 3 calls and >= 0 s \(at most 5000 calls or 10 s\)", err[0])
    assert re.fullmatch(STAMP + r"\[1/2\] eager-attn tiny fwd: [\d.]+ ms \(p10-p90 "
                        r"[\d.]+-[\d.]+, n 3\), err \S+, ok", err[1])
    assert re.match(STAMP + r"\[2/2\] eager-attn tiny fwd\+bwd: ", err[2])
    # then a "suspect" line if load made the forward slower than fwd+bwd, and the files
    assert all(re.match(STAMP + "suspect: eager-attn tiny fwd", line) for line in err[3:-1])
    assert err[-1].startswith("wrote ")


def test_a_silent_phase_gets_a_still_line_every_heartbeat():
    stream = io.StringIO()
    with progress.BenchProgress(stream=stream, terminal=False, heartbeat_s=0.05) as shown:
        shown.doing("compile-attn G 16x16 fwd: warm-up")
        deadline = time.monotonic() + 10  # generous: a loaded machine wakes threads late
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2  # one per silent heartbeat, not just once
    assert all(re.fullmatch(STAMP + r"still compile-attn G 16x16 fwd: warm-up \(0 s so far\)",
                            line) for line in lines)


def test_no_still_line_while_rows_keep_coming():
    stream = io.StringIO()
    with progress.BenchProgress(stream=stream, terminal=False, heartbeat_s=10) as shown:
        shown.start(1, "plan")
        shown.row({"kernel": "k", "site": "s", "pass": "fwd", "median_ms": 1.5, "p10_ms": 1.0,
                   "p90_ms": 2.0, "count": 20, "graph_median_ms": float("nan"),
                   "rel_err_max": 3e-7, "status": "ok"})
    lines = stream.getvalue().splitlines()
    assert [line[11:] for line in lines] == [
        "plan", "[1/1] k s fwd: 1.50 ms (p10-p90 1.00-2.00, n 20), err 3.0e-07, ok"]


def test_quiet_shows_nothing_and_starts_no_thread():
    stream = io.StringIO()
    shown = progress.BenchProgress(stream=stream, quiet=True, heartbeat_s=0.01)
    shown.start(2, "plan")
    shown.doing("x")
    shown.line("y")
    time.sleep(0.05)
    shown.close()
    assert stream.getvalue() == "" and shown._thread is None


def test_terminal_bar_prints_rows_above_it_and_goes_away():
    stream = io.StringIO()
    with progress.BenchProgress(stream=stream, terminal=True) as shown:
        shown.start(2, "plan")
        shown.doing("eager-attn tiny fwd: timing")
        shown.row({"kernel": "k", "site": "s", "pass": "fwd", "median_ms": 1.0, "p10_ms": 1.0,
                   "p90_ms": 1.0, "count": 3, "status": "ok"})
        assert shown.bar is not None and shown.bar.n == 1
    assert shown.bar is None
    text = stream.getvalue()
    assert "plan" in text and "[1/2] k s fwd: 1.00 ms" in text and "eager-attn tiny fwd" in text
