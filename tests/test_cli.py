"""End to end through the console entry point, on tiny settings."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from ganbench.cli import main

TINY = ["--steps", "3", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
        "--metrics", "none", "--quiet"]


def ganbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ganbench", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_does_not_import_torch():
    code = ("import sys; from ganbench.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_run_dcgan_and_sagan_in_process(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan,sagan", "--in-process", "--out", str(out),
                 *TINY]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df["combo"]) == ["dcgan+bce", "sagan+hinge+eager-attn"]
    assert (df["status"] == "ok").all()
    assert (df["img_per_s"] > 0).all() and (df["peak_mem_bytes"] > 0).all()
    assert (df["timed_steps"] == 2).all()
    assert df["torch_version"].notna().all() and df["device"].eq("cpu").all()
    assert (out / "samples" / "dcgan+bce.png").exists()
    assert (out / "samples" / "sagan+hinge+eager-attn.png").exists()
    assert (out / "attention" / "sagan+hinge+eager-attn.png").exists()
    assert not (out / "attention" / "dcgan+bce.png").exists()  # no attention layers
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 3 and config["device"] == "cpu"


def test_run_isolated_process_and_report(tmp_path):
    out = tmp_path / "iso"
    res = ganbench("run", "--plugins", "dcgan", "--out", str(out), *TINY)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "results.csv")
    assert df.loc[0, "status"] == "ok"
    assert "fresh process" in df.loc[0, "mem_method"]
    rep = ganbench("report", str(out))
    assert rep.returncode == 0 and "dcgan+bce" in rep.stdout


@pytest.mark.parametrize("args, fragment", [
    (["run", "--plugins", "sagn"], "unknown plugin 'sagn'; did you mean sagan"),
    (["run", "--plugins", "dcgan", "--steps", "0"], "--steps must be a positive integer"),
    (["run", "--plugins", "dcgan", "--digits", "12"], "between 0 and 9"),
    (["run", "--plugins", "dcgan", "--image-size", "16"], "--image-size must be one of"),
    (["run", "--plugins", "dcgan", "--batch-size", "100000"], "larger than the"),
    (["run", "--plugins", "dcgan", "--data", "nosuch"], "unknown dataset plugin"),
    (["report", "/nonexistent/run"], "no results table"),
    (["run", "--plugins", "dcgan", "--checkpoint-every", "-5"], "--checkpoint-every must be >= 0"),
    (["run", "--plugins", "dcgan", "--data", "folder:/nonexistent"], "no such folder"),
    (["run", "--plugins", "sagan,eager-attn", "--option", "eager-attn.k=1"],
     "--option eager-attn.k: eager-attn rejects it"),
    (["run", "--plugins", "sagan,triton-attn", "--option", "triton-attn.backward=fast"],
     "backward must be one of auto, one-launch, two-kernel, atomic; got 'fast'"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "never"
    extra = ["--out", str(out)] if args[0] == "run" else []
    res = ganbench(*args, *extra)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error:"), res.stderr
    assert fragment in lines[0]
    assert not out.exists()


def test_plugins_lists_every_kind_with_source_and_availability():
    res = ganbench("plugins", "--device", "cpu")
    assert res.returncode == 0
    for word in ("architectures:", "losses:", "attention kernels:", "metrics:", "datasets:",
                 "dcgan", "sagan", "bce", "hinge", "eager-attn", "built-in"):
        assert word in res.stdout
    triton_line = next(l for l in res.stdout.splitlines() if "triton-attn" in l)
    assert triton_line.split()[2] in ("yes", "no")


def test_unwritable_output_path_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = ganbench("bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                   "--shapes", "textbook", "--out", str(blocker / "bench"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error:"), res.stderr


def test_fresh_run_refuses_a_folder_that_holds_results(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"rows": []}')
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *TINY]) == 2
