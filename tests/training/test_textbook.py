"""--baseline textbook: one textbook-step row per architecture, speedups measured in the run."""

import math
import subprocess
import sys

import pandas as pd
import pytest

from ganbench.training.textbook import add_speedups, baseline_combos
from ganbench.sweep.matrix import Combination, build_matrix
from ganbench.registry import get_registry


def test_one_baseline_per_architecture_with_its_book_defaults():
    registry = get_registry()
    combos, _ = build_matrix(("dcgan", "sagan", "sdpa-attn", "eager-attn"), registry)
    base = baseline_combos(combos, registry)
    assert [c.name for c in base] == ["dcgan+bce@textbook", "sagan+hinge+eager-attn@textbook"]
    assert all(c.step == "textbook" for c in base)
    assert Combination("sagan", "hinge", "sdpa-attn").name == "sagan+hinge+sdpa-attn"


def test_speedups_hand_computed_and_only_against_a_matching_baseline():
    rows = [
        {"combo": "sagan@textbook", "architecture": "sagan", "step": "textbook", "status": "ok",
         "image_size": 32, "batch_size": 64, "img_per_s": 50.0},
        {"combo": "sagan", "architecture": "sagan", "step": "ganbench", "status": "ok",
         "image_size": 32, "batch_size": 64, "img_per_s": 125.0},
        {"combo": "dcgan", "architecture": "dcgan", "step": "ganbench", "status": "ok",
         "image_size": 32, "batch_size": 64, "img_per_s": 400.0},  # no dcgan baseline
        {"combo": "sagan-x", "architecture": "sagan", "step": "ganbench", "status": "failed",
         "image_size": 32, "batch_size": 64},
    ]
    add_speedups(rows)
    assert rows[0]["speedup_vs_textbook"] == 1.0
    assert rows[1]["speedup_vs_textbook"] == pytest.approx(2.5)
    assert "speedup_vs_textbook" not in rows[2] and "speedup_vs_textbook" not in rows[3]


def test_a_failed_baseline_gives_no_speedups():
    rows = [{"architecture": "a", "step": "textbook", "status": "crashed", "image_size": 32,
             "batch_size": 8, "img_per_s": math.nan},
            {"architecture": "a", "step": "ganbench", "status": "ok", "image_size": 32,
             "batch_size": 8, "img_per_s": 10.0}]
    assert all("speedup_vs_textbook" not in r for r in add_speedups(rows))


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ganbench", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # 22 s CPU (user+sys), measured on the loaded 2-core VM
def test_run_with_textbook_baseline_gives_a_speedup_column(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("--plugins", "sagan", "--baseline", "textbook", "--image-size", "32",
                   "--steps", "4", "--warmup", "1", "--batch-size", "8", "--metrics", "none",
                   "--in-process", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out / "results.csv")
    assert list(df["combo"]) == ["sagan+hinge+eager-attn@textbook", "sagan+hinge+eager-attn"]
    assert list(df["step"]) == ["textbook", "ganbench"]
    assert df["speedup_vs_textbook"].iloc[0] == 1.0
    expected = df["img_per_s"].iloc[1] / df["img_per_s"].iloc[0]
    assert df["speedup_vs_textbook"].iloc[1] == pytest.approx(expected)
    assert (out / "samples" / "sagan+hinge+eager-attn@textbook.png").exists()


def test_cuda_graph_without_cuda_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    proc = run_cli("--plugins", "dcgan", "--cuda-graph", "--device", "cpu", "--steps", "3",
                   "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--cuda-graph needs a CUDA device" in \
        proc.stderr
    assert not (tmp_path / "run").exists()


def test_bad_baseline_name_is_refused(tmp_path):
    proc = run_cli("--plugins", "dcgan", "--baseline", "book", cwd=tmp_path)
    assert proc.returncode == 2 and "textbook" in proc.stderr
