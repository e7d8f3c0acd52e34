"""`ganbench score`: an .npz, `ganbench sample`'s own output and a PNG folder score the same
images the same way, with the real-data row beside them; every bad input is one line, exit 2."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch

from ganbench import data
from ganbench.cli import main

N = 40  # small enough for seconds per call; prdc needs 6, kid 4


@functools.lru_cache(maxsize=None)
def _digits() -> np.ndarray:
    """N embedded training 7s and 8s, uint8 28 x 28 (any digits do for the plumbing)."""
    mnist = data.load_embedded()
    keep = np.isin(mnist.train_labels, (7, 8))
    return mnist.train_images[keep][::40][:N]


def _score_json(capsys, *argv) -> dict:
    code = main(["score", *map(str, argv), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def one_line_exit_2(argv, capsys, fragment: str) -> None:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error:"), err
    assert "Traceback" not in err and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def npz_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("score") / "samples.npz"
    np.savez(path, images=_digits())
    from contextlib import redirect_stdout  # capsys is function-scoped: capture by hand here
    from io import StringIO

    buffer = StringIO()
    with redirect_stdout(buffer):
        assert main(["score", str(path), "--image-size", "32", "--json"]) == 0
    return path, json.loads(buffer.getvalue())


def test_json_is_one_object_of_metrics_with_n_size_and_the_real_row(npz_result):
    _, result = npz_result
    assert (result["n"], result["image_size"]) == (N, 32)
    metrics = {k: v for k, v in result.items() if k not in ("n", "image_size", "real_data")}
    # The default suite: every built-in metric available here, each column once.
    for column in ("fid_digits", "kid_digits", "kid_digits_sd", "is_digits", "prdc_precision",
                   "prdc_recall", "prdc_density", "prdc_coverage", "modes_covered",
                   "modes_share_7", "modes_share_8", "memo_copy_share", "memo_nn_ratio"):
        assert isinstance(metrics[column], (int, float)), column
    assert set(result["real_data"]) == set(metrics)
    assert all(v is None or math.isfinite(v) for v in metrics.values())
    # These are training digits: memorisation sees every one of them as a copy, and the real
    # row (held-out digits) as new.
    assert metrics["memo_copy_share"] == 1.0 and result["real_data"]["memo_copy_share"] < 0.1


def _as_sample_and_pngs(folder):
    """The N digits as `ganbench sample` writes them (N x 1 x H x W, plus its 'settings' entry)
    and as a folder of PNG files with a text file beside them (ignored)."""
    from PIL import Image

    images = _digits()
    as_sample = folder / "sample.npz"
    np.savez_compressed(as_sample, images=images[:, None], settings=json.dumps({"n": N}))
    pngs = folder / "pngs"
    pngs.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(pngs / f"{i:03d}.png")
    (pngs / "notes.txt").write_text("not an image; ignored beside images")
    return as_sample, pngs


def test_sample_layout_and_a_png_folder_read_like_the_npz(npz_result, tmp_path, capsys):
    """Same images, same numbers (two cheap metrics; the next test runs the whole suite)."""
    path, _ = npz_result
    as_sample, pngs = _as_sample_and_pngs(tmp_path)
    cheap = ("--metrics", "modes,is-digits")
    expected = _score_json(capsys, path, *cheap)
    assert expected["modes_share_7"] > 0.3 and expected["n"] == N and expected["image_size"] == 28
    assert _score_json(capsys, as_sample, *cheap) == expected
    assert _score_json(capsys, pngs, *cheap) == expected


@pytest.mark.slow
def test_sample_layout_and_a_png_folder_score_like_the_npz(npz_result, tmp_path, capsys):
    """The full default suite on the same images in all three forms: one code path."""
    _, expected = npz_result
    as_sample, pngs = _as_sample_and_pngs(tmp_path)
    assert _score_json(capsys, as_sample, "--image-size", 32) == expected
    assert _score_json(capsys, pngs, "--image-size", 32) == expected


def test_the_table_shows_the_real_row_and_which_way_is_better(npz_result, capsys):
    path, result = npz_result
    assert main(["score", str(path), "--image-size", "32", "--metrics", "kid-digits,prdc"]) == 0
    out = capsys.readouterr().out
    assert f"N = {N} samples at 32x32" in out and "real data" in out
    kid = next(line for line in out.splitlines() if line.startswith("kid_digits "))
    assert kid.split()[-1] == "lower"
    assert next(line for line in out.splitlines()
                if line.startswith("prdc_precision")).endswith("closer to real")


def test_ganbench_sample_output_is_accepted_as_is(tmp_path, capsys):
    """A run folder holding an (untrained) DCGAN, sampled by `ganbench sample`, scores."""
    from ganbench.files import atomic
    from ganbench.registry import get_registry
    from ganbench.specs import ModelRequest

    arch = get_registry().architectures["dcgan"]
    torch.manual_seed(0)
    G, _ = arch.build(ModelRequest(32, arch.defaults.z_dim))
    atomic.torch_save({"generator": G.state_dict(), "architecture": "dcgan", "attention": None,
                       "image_size": 32, "z_dim": arch.defaults.z_dim},
                      tmp_path / "run" / "models" / "dcgan+bce.G.pt")
    out = tmp_path / "drawn.npz"
    assert main(["sample", str(tmp_path / "run"), "--combo", "dcgan+bce", "--n", "12",
                 "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    result = _score_json(capsys, out, "--metrics", "kid-digits,memorisation")
    assert (result["n"], result["image_size"]) == (12, 32)
    assert result["kid_digits"] > result["real_data"]["kid_digits"]  # noise is not digits


def test_n_draws_a_subset_and_says_so(npz_result, capsys):
    path, _ = npz_result
    assert main(["score", str(path), "--n", "30", "--metrics", "modes", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 30 and "random 30 of the 40" in out.err


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "absent.npz", "no such file or folder"),
    (lambda d: _write(d / "k.npz", samples=_digits()), "no 'images' array (it has: samples)"),
    (lambda d: _write(d / "f.npz", images=_digits().astype(np.float32)), "is float32"),
    (lambda d: _write(d / "n.npz", images=np.zeros((4, 2, 8, 8), np.uint8)), "N x H x W"),
    (lambda d: _write(d / "2.npz", images=np.zeros((28, 28), np.uint8)), "shape (28, 28)"),
    (lambda d: _write(d / "e.npz", images=np.zeros((0, 28, 28), np.uint8)), "no pixels"),
    (lambda d: (d / "t.npz").write_text("hello") and d / "t.npz", "not a readable .npz"),
    (lambda d: np.save(d / "a.npy", _digits()) or d / "a.npy", "not an .npz archive"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no images found"),
    (lambda d: (d / "txt").mkdir() or (d / "txt" / "a.txt").write_text("x") and d / "txt",
     "no images found"),
    (lambda d: (d / "bad").mkdir() or (d / "bad" / "a.png").write_text("x") and d / "bad",
     "not a readable image"),
    (lambda d: _write(d / "few.npz", images=_digits()[:3]), "3 samples are too few: kid-digits"),
])
def test_bad_samples_are_one_line_exit_2(tmp_path, capsys, make, fragment):
    one_line_exit_2(["score", make(tmp_path)], capsys, fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--digits", "7,x"], "--digits takes comma-separated digits"),
    (["--digits", "12"], "--digits must be between 0 and 9, got 12"),
    (["--digits", "7,7"], "--digits lists a digit twice"),
    (["--image-size", "4"], "--image-size must be from 8 to 256"),
    (["--n", "41"], "cannot score N = 41: there are 40 samples"),
    (["--n", "1"], "N must be at least 2"),
    (["--metrics", "kid"], "kid"),
])
def test_bad_options_are_one_line_exit_2(npz_result, capsys, extra, fragment):
    path, _ = npz_result
    one_line_exit_2(["score", path, *extra], capsys, fragment)
