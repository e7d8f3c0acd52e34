"""Issue 22, items 6 and 12: `report` refuses a hand-edited number in one line and says when a
run is unfinished; `run` ends with the hint to the HTML report; an interrupted run with no
finished row does not claim finished rows; the plugin scaffold suggests a short run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from ganbench.cli import main
from ganbench.config import RunConfig
from ganbench.training.checkpoint import checkpoint_path, save_checkpoint


def run_folder(tmp_path: Path, rows: list, plugins=("dcgan", "sagan")) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "ganbench-run.json").write_text('{"format": "ganbench run folder", "version": 1}')
    cfg = RunConfig(plugins=plugins, metrics=(), device="cpu", steps=4, out=out)
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    (out / "results.json").write_text(json.dumps({"rows": rows}))
    return out


ROW = {"combo": "dcgan+bce", "status": "ok", "img_per_s": 41.0, "step_ms_median": 1561.0,
       "step_ms_p10": 1500.0, "step_ms_p90": 1600.0, "steps": 4}


@pytest.mark.parametrize("column, value", [("img_per_s", "abc"), ("steps", "ten"),
                                           ("peak_mem_bytes", "[1]")])
def test_a_hand_edited_number_is_one_line_exit_2(tmp_path, capsys, column, value):
    out = run_folder(tmp_path, [{**ROW, column: value}])
    assert main(["report", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (f"ganbench: error: {out}: {column} of dcgan+bce is "
                                    f"{value!r}, not a number; was the table edited by hand? "
                                    "Fix or remove that value")


def test_a_hand_edited_csv_is_caught_too(tmp_path, capsys):
    path = tmp_path / "results.csv"
    path.write_text("combo,status,img_per_s\ndcgan+bce,ok,abc\n")
    assert main(["report", str(path)]) == 2
    assert "img_per_s of dcgan+bce is 'abc', not a number" in capsys.readouterr().err


def test_report_says_when_a_run_is_unfinished(tmp_path, capsys):
    out = run_folder(tmp_path, [ROW])  # sagan+hinge+eager-attn has no row
    save_checkpoint(checkpoint_path(out, "sagan+hinge+eager-attn"), {"step": 2})
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "dcgan+bce" in captured.out and "note" not in captured.out
    assert captured.err.strip() == (
        f"note: this run is unfinished (1 of 2 row(s) written, 1 more stopped at a "
        f"checkpoint); continue it with: ganbench run --resume {out}")


def test_report_says_when_a_run_is_still_being_written(tmp_path, capsys):
    import subprocess
    import sys

    out = run_folder(tmp_path, [ROW])
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "ganbench", "run"])  # a live process that says it is ganbench
    try:
        (out / "run.lock").write_text(f"{writer.pid}\n")
        assert main(["report", str(out)]) == 0
        assert capsys.readouterr().err.strip() == (
            f"note: a ganbench run (pid {writer.pid}) is still writing {out}; this table has 1 "
            "row(s) so far")
    finally:
        writer.kill()
        writer.wait()
    assert main(["report", str(out)]) == 0  # its pid is dead now: an unfinished run
    assert "this run is unfinished (1 of 2 row(s) written)" in \
        capsys.readouterr().err


def test_a_finished_run_gets_no_note(tmp_path, capsys):
    out = run_folder(tmp_path, [ROW], plugins=("dcgan",))
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().err == ""


def test_run_ends_with_the_html_hint_on_stderr(tmp_path, capsys, monkeypatch):
    from ganbench.sweep import runner

    monkeypatch.setattr(runner, "run_one", lambda cfg, combo, *a, **k: {
        "combo": combo.name, "status": "ok"})
    out = tmp_path / "my run"
    assert main(["run", "--plugins", "dcgan", "--metrics", "none", "--steps", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == f"results: {out}"
    assert captured.err.strip().splitlines()[-1] == (
        f"see it with charts and images: ganbench report '{out}' --html")


def test_an_interrupt_before_any_row_does_not_claim_finished_rows(tmp_path, capsys,
                                                                 monkeypatch):
    from ganbench.sweep import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_one", interrupted)
    out = tmp_path / "run"
    code = main(["run", "--plugins", "dcgan", "--metrics", "none", "--steps", "2",
                 "--device", "cpu", "--out", str(out)])
    assert code == 128 + signal.SIGINT
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ganbench: interrupted by SIGINT; no row finished yet in {out}; continue with: "
        f"ganbench run --resume {out}")


def test_the_scaffold_suggests_a_short_run(tmp_path, capsys):
    assert main(["new-plugin", "focal", "--out", str(tmp_path)]) == 0
    then = [line for line in capsys.readouterr().out.splitlines() if line.startswith("then:")]
    assert then == ["then: ganbench run --plugins dcgan,bce,focal --steps 50"]
    readme = next(tmp_path.rglob("README.md")).read_text()
    assert "ganbench run --plugins dcgan,bce,focal --steps 50" in readme
