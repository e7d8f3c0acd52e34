"""Metrics inside a run: the real-data row, shared N, curves, time-to-target, sampling."""

import numpy as np
import pandas as pd

from ganbench.cli import main

TINY = ["--steps", "4", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
        "--eval-n", "150", "--quiet", "--in-process"]


def test_run_with_metrics_curves_target_and_sample(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan", "--eval-every", "2", "--target-fid", "1e9",
                 "--out", str(out), *TINY]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df["combo"]) == ["dcgan+bce", "real data"]
    assert list(df["status"]) == ["ok", "reference"]
    # Generator row and floor are scored at the same N against the same held-out half.
    assert df["metric_n"].tolist() == [150, 150]
    real = df.set_index("combo").loc["real data"]
    fake = df.set_index("combo").loc["dcgan+bce"]
    assert real["fid_digits"] < fake["fid_digits"]  # 4 steps of training are far from real
    assert real["modes_covered"] == 2
    # Every evaluation beat a target of 1e9, so the first one (step 2) is the time to target.
    curves = pd.read_csv(out / "curves" / "dcgan+bce.csv")
    assert curves["step"].tolist() == [2, 4]
    assert fake["time_to_target_s"] == curves["wall_s"].iloc[0]
    assert (out / "curves" / "dcgan+bce.png").exists()

    npz = tmp_path / "s.npz"
    assert main(["sample", str(out), "--combo", "dcgan+bce", "--n", "10", "--out", str(npz),
                 "--grid", str(tmp_path / "g.png")]) == 0
    images = np.load(npz)["images"]
    assert images.shape == (10, 32, 32) and images.dtype == np.uint8
    assert (tmp_path / "g.png").exists()
    assert main(["sample", str(out), "--combo", "nope", "--out", str(npz)]) == 2
