"""ganbench from Python (issue 24): ``ganbench.run``/``load`` against ``ganbench run``, the same
error messages, interrupts that leave a resumable folder, notebook display, and docs/api.md
kept in step with the docstrings.

The runs are tiny (dcgan, 4 steps, batch 8, 32 px: dcgan builds 32, 64 and 128 px only) and
train in worker processes, the default, as a notebook would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import ganbench
from ganbench.api import options as api_options
from ganbench.cli import main
from ganbench.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"steps": 4, "batch_size": 8, "image_size": 32, "eval_n": 20, "warmup": 1,
        "device": "cpu"}
TINY_ARGV = ["--steps", "4", "--batch-size", "8", "--image-size", "32", "--eval-n", "20",
             "--warmup", "1", "--device", "cpu"]
# Columns that measure the machine (times, memory) or the checkout, not what was trained: they
# differ between any two runs. Everything else must be equal at the same seed.
MEASURED = re.compile(r"^(step_ms_.*|img_per_s|peak_mem_.*|mem_method|first_step_s|"
                      r"train_wall_s|eval_s|compile_s|finished_at|git_commit|"
                      r"load_avg_.*|cpu_s|cpu_per_wall|cpu_wait_share|steal_pct)$")  # the load too


def cli_error(argv: list[str], capsys) -> str:
    """What `ganbench` prints after 'ganbench: error: ' (asserting one line and exit 2)."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ganbench: error: "), err
    return err[0][len("ganbench: error: "):]


@pytest.fixture()
def one_thread(monkeypatch):
    """One OpenMP thread in the workers: on the shared 2-core machine two threads fighting
    other processes made tiny steps ~25x slower (tests/sweep/test_faults.py measured it)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# ------------------------------------------------------------------------------------------
# Import and options: fast
# ------------------------------------------------------------------------------------------
def test_import_ganbench_and_its_api_stay_light():
    code = ("import sys, ganbench; ganbench.run; ganbench.load; ganbench.Run; "
            "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_names():
    assert ganbench.run is ganbench.api.runs.run and ganbench.Run is ganbench.api.runs.Run
    assert {"run", "load", "Run", "Comparison", "Images"} <= set(dir(ganbench))
    with pytest.raises(AttributeError):
        ganbench.no_such_name  # noqa: B018


def imported_by(path: Path) -> set[str]:
    """Every ganbench module a file imports, at module level or inside functions."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ganbench"):
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ganbench")}
    return out


def test_the_api_sits_between_the_commands_and_the_rest():
    """api -> sweep, results, config; commands -> api; never back (no import circle)."""
    package = ROOT / "ganbench"
    for path in (package / "api").glob("*.py"):
        upward = {m for m in imported_by(path) if m.startswith(("ganbench.commands",
                                                                 "ganbench.cli"))}
        assert not upward, (path.name, upward)
    for path in package.rglob("*.py"):
        part = path.relative_to(package).parts[0]
        if part in ("api", "commands", "__init__.py", "cli.py"):
            continue
        assert not {m for m in imported_by(path) if m.startswith("ganbench.api")}, path


def cli_parser():
    import argparse

    from ganbench.commands import run as cmd_run

    parser = argparse.ArgumentParser()
    cmd_run.add_arguments(parser)
    return parser


def test_the_api_takes_exactly_the_cli_options():
    dests = {a.dest for a in cli_parser()._actions if a.option_strings and a.dest != "help"}
    assert set(api_options.option_names()) == dests


def test_the_api_defaults_are_the_cli_defaults():
    from_cli = api_options.config_from_options(vars(cli_parser().parse_args(["--plugins",
                                                                             "dcgan"])))
    assert from_cli == api_options.config_from_options({"plugins": "dcgan"})


def test_python_values_mean_what_the_cli_text_means():
    text = api_options.config_from_options(
        {"plugins": "sagan, hinge", "digits": "3,5", "metrics": "none", "columns": "combo,img_per_s",
         "option": ["compile-attn.mode=max-autotune", "x.k=3"], "in_process": True,
         "out": "runs/a"})
    python = api_options.config_from_options(
        {"plugins": ["sagan", "hinge"], "digits": [3, 5], "metrics": [],
         "columns": ["combo", "img_per_s"],
         "option": {"compile-attn": {"mode": "max-autotune"}, "x": {"k": 3}},
         "in_process": True, "out": Path("runs/a")})
    assert text == python
    assert python.plugins == ("sagan", "hinge") and python.digits == (3, 5)
    assert python.metrics == () and python.isolate is False and python.out == Path("runs/a")
    assert python.options == {"compile-attn": {"mode": "max-autotune"}, "x": {"k": 3}}


# (keyword arguments of ganbench.run, the same request on the command line)
BAD = [
    ({"steps": 0}, ["--steps", "0"]),
    ({"batch_size": -2}, ["--batch-size", "-2"]),
    ({"image_size": 48}, ["--image-size", "48"]),
    ({"digits": "7,x"}, ["--digits", "7,x"]),
    ({"digits": [7, 7]}, ["--digits", "7,7"]),
    ({"steps": 5, "warmup": 5}, ["--steps", "5", "--warmup", "5"]),
    ({"seed": -1}, ["--seed", "-1"]),
    ({"option": ["compile-attn"]}, ["--option", "compile-attn"]),
    ({"device": "tpu"}, ["--device", "tpu"]),
    ({"compile_mode": "fastest"}, ["--compile-mode", "fastest"]),
    ({"compile": "all"}, ["--compile", "all"]),
    ({"malloc": "jemalloc"}, ["--malloc", "jemalloc"]),
    ({"columns": " , "}, ["--columns", " , "]),
    ({"metrics": ","}, ["--metrics", ","]),
    ({"checkpoint_every": -1}, ["--checkpoint-every", "-1"]),
    ({"jobs": 2, "in_process": True}, ["--jobs", "2", "--in-process"]),
    ({"target_fid": 0.0}, ["--target-fid", "0"]),
    ({"retry_failed": True}, ["--retry-failed"]),
    ({"plugins": None}, []),
    ({"plugins": "dcgn"}, ["--plugins", "dcgn"]),             # found by the plan (registry)
    ({"image_size": 16}, ["--image-size", "16"]),             # dcgan builds 32, 64, 128
]


@pytest.mark.parametrize("kwargs, argv", BAD, ids=[" ".join(a) or "no-plugins" for _, a in BAD])
def test_bad_options_raise_the_message_the_cli_prints(tmp_path, capsys, kwargs, argv):
    out = tmp_path / "never"
    given = {"plugins": "dcgan", "out": out, **kwargs}
    cli_argv = ["run", "--out", str(out), *argv]
    if "plugins" not in kwargs:
        cli_argv += ["--plugins", "dcgan"]
    expected = cli_error(cli_argv, capsys)
    with pytest.raises(UserError) as caught:
        ganbench.run(**{k: v for k, v in given.items() if v is not None})
    assert str(caught.value) == expected
    assert not out.exists()


def test_option_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"^--steps must be a positive integer, got 0$"):
        ganbench.run("dcgan", 0)


@pytest.mark.parametrize("given, argv", [
    ({"batch_size": 8}, ["--batch-size", "8"]),
    ({"plugins": "dcgan"}, ["--plugins", "dcgan"]),
    ({"force": True}, ["--force"]),
])
def test_resume_refuses_settings_with_the_cli_message(tmp_path, capsys, given, argv):
    from ganbench.config import RunConfig

    (tmp_path / "config.json").write_text(json.dumps(RunConfig(plugins=("dcgan",)).to_dict()))
    expected = cli_error(["run", "--resume", str(tmp_path), *argv], capsys)
    assert expected.startswith(f"--resume takes its settings from {tmp_path}/config.json; drop")
    with pytest.raises(ConfigError) as caught:
        ganbench.run(resume=tmp_path, **given)
    assert str(caught.value) == expected


def test_resume_of_a_missing_folder(tmp_path, capsys):
    expected = cli_error(["run", "--resume", str(tmp_path / "nope")], capsys)
    with pytest.raises(UserError, match=re.escape(expected)):
        ganbench.run(resume=tmp_path / "nope")


def test_unknown_option_names_get_the_closest_one():
    with pytest.raises(ConfigError, match=r"no run option 'stpes'; did you mean 'steps'\?"):
        ganbench.run("dcgan", stpes=4)
    with pytest.raises(ConfigError, match=r"no run option 'isolate'"):
        ganbench.run("dcgan", isolate=False)  # a RunConfig field, but no option: in_process


def test_nproc_is_for_the_shell(tmp_path):
    with pytest.raises(ConfigError, match="would replace this Python process"):
        ganbench.run("dcgan", nproc=2, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_load_refuses_what_is_no_run_folder(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        ganbench.load(tmp_path / "nope")
    with pytest.raises(UserError, match="no config.json there"):
        ganbench.load(tmp_path)


# ------------------------------------------------------------------------------------------
# Display and comparisons on hand-made folders: fast
# ------------------------------------------------------------------------------------------
def fake_run(folder: Path, rows: list[dict], grids: dict[str, int] = None) -> Path:
    """A run folder as `ganbench run` leaves it: config.json, results.json, sample PNGs
    (a grey level per combination, so each image can be recognised)."""
    from PIL import Image

    from ganbench.config import RunConfig
    from ganbench.results.store import write_table

    folder.mkdir(parents=True)
    cfg = RunConfig(plugins=("dcgan",), steps=4, image_size=32, batch_size=8, device="cpu",
                    dtype="fp32", metrics=())
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    write_table(rows, folder)
    for name, grey in (grids or {}).items():
        (folder / "samples").mkdir(exist_ok=True)
        Image.new("L", (20, 10), grey).save(folder / "samples" / f"{name}.png")
    return folder


def row(combo: str, img_per_s: float, p10: float, p90: float, **extra) -> dict:
    median = 8 * 1000 / img_per_s
    return {"combo": combo, "status": "ok", "batch_size": 8, "image_size": 32,
            "step_ms_median": median, "step_ms_p10": p10, "step_ms_p90": p90,
            "timed_steps": 20, "img_per_s": img_per_s, "peak_mem_bytes": 2 ** 28, **extra}


def test_run_table_samples_and_html(tmp_path):
    run = ganbench.load(fake_run(tmp_path / "a", [row("b+x", 50, 150, 170),
                                                  row("a+y", 80, 90, 110)],
                                 grids={"a+y": 200, "b+x": 30, "stray": 90}))
    assert list(run.table["combo"]) == ["b+x", "a+y"] and run.combos == ["b+x", "a+y"]
    assert run.summary is None and run.curves == {} and dict(run.attention) == {}
    assert run.settings.steps == 4
    samples = run.samples
    assert list(samples) == ["b+x", "a+y", "stray"]  # table order, then files without a row
    assert samples["a+y"].getpixel((0, 0)) == 200 and samples["b+x"].getpixel((0, 0)) == 30
    png = samples["a+y"]._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = run._repr_html_()
    # The table with units, as `ganbench run` prints it: img/s and peak MiB (2**28 B = 256 MiB)
    assert "<th" in page and "img/s" in page and "peak MiB" in page and "256.0" in page
    assert page.count("data:image/png;base64,") == 3 and "<figcaption>a+y</figcaption>" in page
    # config.json plans dcgan+bce, which has no row: the page says how to go on
    assert f"unfinished: dcgan+bce; continue with <code>ganbench.load(" in page
    assert repr(run) == f"ganbench.load({str(run.dir)!r})"


def test_summary_is_read_when_present(tmp_path):
    run = ganbench.load(fake_run(tmp_path / "a", [row("a", 50, 150, 170)]))
    pd.DataFrame({"combo": ["a"], "img_per_s_mean": [50.0]}).to_csv(run.dir / "summary.csv",
                                                                    index=False)
    assert run.summary.to_dict("records") == [{"combo": "a", "img_per_s_mean": 50.0}]


def test_comparison_is_what_ganbench_compare_says(tmp_path, capsys):
    # b+x: 50 -> 40 img/s (-20%), its step-time ranges apart: a regression past -10%.
    # a+y: 80 -> 79 img/s inside each other's p10-p90: within noise.
    old = fake_run(tmp_path / "old", [row("b+x", 50, 150, 170), row("a+y", 80, 90, 110)])
    new = fake_run(tmp_path / "new", [row("b+x", 40, 190, 210), row("a+y", 79, 92, 112)])
    assert main(["compare", str(old), str(new), "--format", "csv",
                 "--fail-on", "img_per_s:-10%"]) == 1
    cli_csv = capsys.readouterr().out
    result = ganbench.load(old).compare(ganbench.load(new), fail_on="img_per_s:-10%")
    assert result.to_text("csv").strip() == cli_csv.strip()
    verdicts = result.table.set_index(["key", "metric"])["verdict"]
    assert verdicts["b+x", "img_per_s"] == "REGRESSION"
    assert verdicts["a+y", "img_per_s"] == "within noise"
    assert not result.passed and list(result.regressions["key"]) == ["b+x"]
    page = result._repr_html_()
    assert "1 regression(s)" in page and "REGRESSION" in page and "-20.0%" in page
    assert str(result) == result.to_text("markdown")
    assert ganbench.load(old).compare(old).passed  # a run against itself


def test_comparison_errors_are_the_cli_errors(tmp_path, capsys):
    old = fake_run(tmp_path / "old", [row("a", 50, 150, 170)])
    expected = cli_error(["compare", str(old), str(old), "--fail-on", "img_per_s:+10%"], capsys)
    with pytest.raises(UserError) as caught:
        ganbench.load(old).compare(old, fail_on="img_per_s:+10%")
    assert str(caught.value) == expected


def test_report_reads_tables_through_the_api(tmp_path, capsys):
    run = ganbench.load(fake_run(tmp_path / "a", [row("a", 50, 150, 170)]))
    assert main(["report", str(run.dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["rows"]
    assert [r["combo"] for r in printed] == list(run.table["combo"])
    page = run.report_html(tmp_path / "page.html")
    assert page == (tmp_path / "page.html").read_text() and page.startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------------------------
# Notebook progress (ganbench.sweep.progress): widgets only in a kernel that has ipywidgets
# ------------------------------------------------------------------------------------------
class _Shell:
    def __init__(self, config):
        self.config = config


def pretend_ipython(monkeypatch, config) -> None:
    """IPython loaded, its shell configured as ``config`` (a kernel's holds IPKernelApp)."""
    ipython = pytest.importorskip("IPython")
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setattr(ipython, "get_ipython", lambda: _Shell(config))


def test_progress_uses_notebook_bars_only_in_a_kernel_with_widgets(monkeypatch):
    import importlib.util
    import io

    from ganbench.sweep.progress import Progress, notebook_bar_class

    has_widgets = importlib.util.find_spec("ipywidgets") is not None

    assert notebook_bar_class() is None  # plain pytest: no IPython kernel
    pretend_ipython(monkeypatch, {})  # IPython in a terminal: not a kernel
    assert notebook_bar_class() is None
    pretend_ipython(monkeypatch, {"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # a kernel without ipywidgets
    assert notebook_bar_class() is None
    assert Progress(2, 10, stream=io.StringIO()).terminal is False  # -> plain lines
    monkeypatch.delitem(sys.modules, "ipywidgets")
    if not has_widgets:
        pytest.skip("ipywidgets is not installed (pip install -e '.[notebook]')")
    from tqdm.notebook import tqdm as notebook_tqdm

    assert notebook_bar_class() is notebook_tqdm
    assert Progress(2, 10, quiet=True).terminal is False  # quiet stays quiet


# ------------------------------------------------------------------------------------------
# docs/api.md cannot drift
# ------------------------------------------------------------------------------------------
def test_docs_api_reference_is_generated_from_the_docstrings():
    from ganbench.api import reference

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert reference.updated(page) == page, (
        "docs/api.md is stale: run `python -m ganbench.api.reference docs/api.md`")
    for name in ganbench.api.PUBLIC:
        first = (getattr(ganbench.api, name).__doc__ or "").strip().splitlines()[0]
        assert first and first in page, name


# ------------------------------------------------------------------------------------------
# Real runs (slow: each trains in worker processes)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """The same tiny run from the shell (`ganbench run`, in-process main) and from Python."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # see one_thread; module scope
    base = tmp_path_factory.mktemp("twins")
    assert main(["run", "--plugins", "dcgan", *TINY_ARGV, "--quiet",
                 "--out", str(base / "cli")]) == 0
    run = ganbench.run("dcgan", out=base / "api", quiet=True, **TINY)
    return base / "cli", run


def same_trained_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    keep = [c for c in a.columns if not MEASURED.match(c)]
    pd.testing.assert_frame_equal(a[keep], b[keep], check_dtype=False)


@pytest.mark.slow
def test_run_and_load_round_trip_the_cli_table(twin_runs):
    cli_dir, run = twin_runs
    assert isinstance(run, ganbench.Run) and run.dir.name == "api"
    table = run.table
    assert list(table["status"]) == ["ok", "reference"]
    assert table.loc[0, "fid_digits"] > 0 and table.loc[0, "metric_n"] == 20
    same_trained_numbers(ganbench.load(cli_dir).table, table)
    pd.testing.assert_frame_equal(ganbench.load(run.dir).table, table)
    settings = run.settings
    assert dataclasses.replace(ganbench.load(cli_dir).settings, out=run.dir) == settings
    assert settings.isolate and settings.steps == 4 and settings.out == run.dir
    assert run.unfinished == [] and run.combos == ["dcgan+bce"]
    assert run.samples["dcgan+bce"].size == (274, 274)  # 8 tiles of 32 px + 9 gaps of 2
    comparison = run.compare(cli_dir)
    verdicts = comparison.table.set_index("metric")["verdict"]
    assert verdicts["fid_digits"] == "unchanged" and verdicts["is_digits"] == "unchanged"
    page = run._repr_html_()
    assert "fid_digits" in page and "dcgan+bce" in page and "data:image/png" in page


@pytest.mark.slow
def test_rerunning_a_cell_on_the_same_folder_is_refused_like_the_cli(twin_runs, capsys):
    _, run = twin_runs
    argv = ["run", "--plugins", "dcgan", *TINY_ARGV, "--out", str(run.dir)]
    expected = cli_error(argv, capsys)
    assert "already holds a finished run" in expected and "--force" in expected
    before = run.table
    with pytest.raises(UserError) as caught:
        ganbench.run("dcgan", out=run.dir, **TINY)
    assert str(caught.value) == expected
    pd.testing.assert_frame_equal(run.table, before)  # nothing lost


@pytest.mark.slow
def test_force_starts_afresh(tmp_path, one_thread):
    out = fake_run(tmp_path / "old", [row("other+run", 50, 150, 170)])
    run = ganbench.run("dcgan", out=out, force=True, metrics="none", quiet=True, **TINY)
    assert run.combos == ["dcgan+bce"]


def interrupt_when(ready, timeout_s: float = 300.0) -> threading.Thread:
    """SIGINT to this process (what a notebook's stop button sends the kernel) once
    ``ready()`` is true, from a timer thread."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_an_interrupt_leaves_a_folder_that_load_resume_finishes(tmp_path, capsys, one_thread):
    from ganbench.sweep.resume import RunInterrupted

    out = tmp_path / "run"
    second = out / "checkpoints" / "dcgan+hinge.pt"
    options = dict(TINY, steps=30, checkpoint_every=2, metrics="none", out=out)
    # Stop mid-way through the second combination, once it has checkpointed.
    watcher = interrupt_when(lambda: second.exists())
    with pytest.raises(RunInterrupted) as caught:
        ganbench.run("dcgan,bce,hinge", **options)
    watcher.join()
    assert caught.value.run_dir == out and caught.value.exit_code == 130
    err = capsys.readouterr().err
    assert f"continue with: ganbench.run(resume={str(out)!r})" in err
    interrupted = ganbench.load(out)
    assert interrupted.combos == ["dcgan+bce"] and interrupted.unfinished == ["dcgan+hinge"]
    assert second.exists()
    assert "unfinished: dcgan+hinge" in interrupted._repr_html_()

    # Re-running the cell is refused, with the CLI's words; nothing is lost.
    expected = cli_error(["run", "--plugins", "dcgan,bce,hinge", *TINY_ARGV, "--steps", "30",
                          "--checkpoint-every", "2", "--metrics", "none", "--out", str(out)],
                         capsys)
    assert f"continue it with: ganbench run --resume {out}" in expected
    with pytest.raises(UserError) as refused:
        ganbench.run("dcgan,bce,hinge", **options)
    assert str(refused.value) == expected and second.exists()

    finished = interrupted.resume(quiet=True)
    table = finished.table.set_index("combo")
    assert list(table.index) == ["dcgan+bce", "dcgan+hinge"]
    assert (table["status"] == "ok").all() and (table["steps"] == 30).all()
    assert table.loc["dcgan+hinge", "resumed_from_step"] >= 2
    assert finished.unfinished == [] and not second.exists()
