"""Issue 22, item 6: IDX files of images too small to hold a digit are refused in one line
(ganbench.data.MIN_IMAGE_SIDE), instead of training on enlarged blurs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ganbench import data
from ganbench.cli import main
from ganbench.errors import DataError


def write_mnist(folder: Path, side: int, n: int = 16) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = np.array([7, 8] * (n // 2), np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, side, side) + images.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes())
    return folder


@pytest.mark.parametrize("side", [1, 7])
def test_images_below_8x8_are_refused_naming_the_file(tmp_path, side):
    folder = write_mnist(tmp_path / "m", side)
    with pytest.raises(DataError) as info:
        data.load_mnist_dir(folder)
    assert str(info.value) == (
        f"{folder / 'train-images-idx3-ubyte'}: images of {side}x{side} pixels are too small: a "
        "run enlarges them to --image-size (32 to 128) and needs at least 8x8 for a legible "
        "digit (MNIST's are 28x28)")


def test_8x8_images_are_accepted(tmp_path):
    assert data.load_mnist_dir(write_mnist(tmp_path / "m", 8)).train_images.shape == (16, 8, 8)


def test_a_run_on_1x1_idx_images_is_one_line_exit_2_before_anything_is_written(tmp_path, capsys):
    folder = write_mnist(tmp_path / "m", 1)
    out = tmp_path / "never"
    code = main(["run", "--plugins", "dcgan", "--data", f"mnist:{folder}", "--metrics", "none",
                 "--steps", "2", "--batch-size", "4", "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "images of 1x1 pixels are too small" in err[0], err
    assert not out.exists()
