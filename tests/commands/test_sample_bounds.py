"""Issue 22, item 6: `sample --n` is bounded with a one-line error and shows progress for large
n; the samples are those ganbench.training.loop.generate draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganbench.cli import main
from ganbench.commands import sample


def generator_run(tmp_path):
    from ganbench.plugins import dcgan
    from ganbench.specs import ModelRequest

    torch.manual_seed(0)
    G, _ = dcgan.build(ModelRequest(32, 16))
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    torch.save({"generator": G.state_dict(), "architecture": "dcgan", "attention": None,
                "image_size": 32, "z_dim": 16}, run / "models" / "dcgan+bce.G.pt")
    return run, G


@pytest.mark.parametrize("n", [sample.MAX_SAMPLES + 1, 100_000_000])
def test_too_many_samples_is_one_line_exit_2_before_any_work(tmp_path, capsys, n):
    out = tmp_path / "s.npz"
    code = main(["sample", str(tmp_path / "no-run"), "--combo", "x", "--n", str(n),
                 "--out", str(out)])  # the bound is checked before the run folder is read
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"ganbench: error: --n {n} is more than 100,000 samples (they "
                                 "are held in memory and written as one .npz); draw several "
                                 "files with different --seed values instead"]
    assert not out.exists()


def test_draw_gives_the_samples_generate_gives_in_uint8():
    from ganbench.plugins import dcgan
    from ganbench.results.figures import to_uint8
    from ganbench.specs import ModelRequest
    from ganbench.training.loop import generate

    torch.set_num_threads(1)
    G, _ = dcgan.build(ModelRequest(32, 16))
    n = sample.CHUNK + 37  # two chunks, the second short
    images, first = sample.draw(G, n, 16, "cpu", seed=3)
    reference = generate(G, n, 16, "cpu", seed=3)
    assert images.dtype == np.uint8 and images.shape == (n, 32, 32)
    assert np.array_equal(images, to_uint8(reference))
    assert torch.equal(first, reference[:64])


def test_large_n_shows_progress_on_stderr(tmp_path, capsys, monkeypatch):
    run, _ = generator_run(tmp_path)
    monkeypatch.setattr(sample, "PROGRESS_FROM", 1000)  # "large" for a fast test
    monkeypatch.setattr(sample, "CHUNK", 250)
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--combo", "dcgan+bce", "--n", "1000", "--device", "cpu",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    shown = [line.split(" in ")[0] for line in captured.err.splitlines()]
    assert shown == ["sample: 250/1000 (20%)", "sample: 500/1000 (50%)",
                     "sample: 750/1000 (70%)", "sample: 1000/1000 (100%)"]
    assert captured.out.strip() == f"wrote 1000 samples to {out}"
    assert np.load(out)["images"].shape == (1000, 32, 32)
    capsys.readouterr()
    assert main(["sample", str(run), "--combo", "dcgan+bce", "--n", "999", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""  # small n: quiet
