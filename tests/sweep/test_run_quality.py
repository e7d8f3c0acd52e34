"""Metrics inside a run: the real-data row, shared N, curves, time-to-target, sampling."""

import math

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_run_args

from ganbench.cli import main

TINY = tiny_run_args(steps=4, metrics=None, device=None, eval_n=150, in_process=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality") / "run"
    assert main(["run", "--plugins", "dcgan", "--eval-every", "2", "--target-fid", "1e9",
                 "--out", str(out), *TINY]) == 0
    return out


def test_run_with_metrics_curves_target_and_sample(tiny_run, tmp_path):
    out = tiny_run
    df = pd.read_csv(out / "results.csv")
    assert list(df["combo"]) == ["dcgan+bce", "real data"]
    assert list(df["status"]) == ["ok", "reference"]
    # Generator row and floor are scored at the same N against the same held-out half, and
    # every row says at which N and image size its quality numbers were computed.
    assert df["metric_n"].tolist() == [150, 150]
    assert df["metric_image_size"].tolist() == [32, 32]
    # The share of each selected digit, and only those.
    assert {"modes_share_7", "modes_share_8"} <= set(df.columns)
    assert "modes_share_3" not in df.columns
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


def test_run_rows_measure_memorisation(tiny_run):
    df = pd.read_csv(tiny_run / "results.csv").set_index("combo")
    real = df.loc["real data"]
    # About 0.01 expected; at N = 150 the 1st percentile is the 2nd-3rd smallest of 150
    # distances, a noisy threshold (0.053 measured with seed 0), hence the loose bound.
    assert math.isfinite(real["memo_copy_share"]) and real["memo_copy_share"] < 0.1
    assert 0.8 < real["memo_nn_ratio"] < 1.25


def test_eval_n_above_the_held_out_half_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a if a != "150" else "1002" for a in TINY]  # 2002 held-out 7s and 8s: max 1001
    assert main(["run", "--plugins", "dcgan", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "maximum is 1001" in err and len(err.splitlines()) == 1
    assert not (out / "results.csv").exists()
