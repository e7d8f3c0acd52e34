"""The built-in dataset plugins end to end: embedded, mnist:DIR, folder:DIR."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench.errors import DataError
from ganbench.plugins import datasets
from ganbench.specs import DatasetSpec, DigitData


@pytest.fixture(scope="module")
def specs() -> dict[str, DatasetSpec]:
    registered = []
    datasets.ganbench_register_datasets(registered.append)
    return {spec.name: spec for spec in registered}


def check_digit_data(result: DigitData, size: int, digits=None) -> None:
    for images, labels in ((result.train, result.train_labels),
                           (result.heldout, result.heldout_labels)):
        assert images.dtype == torch.float32 and images.shape[1:] == (1, size, size)
        assert images.min() >= -1 and images.max() <= 1
        assert labels.dtype == torch.int64 and labels.shape == (len(images),)
        assert len(images) > 0
        if digits is not None:
            assert set(labels.tolist()) == set(digits)


def test_three_sources_registered(specs):
    assert set(specs) == {"embedded", "mnist", "folder"}


def test_importing_the_plugin_does_not_import_torch():
    # The module is imported whenever a command runs; torch alone costs ~1.8 s.
    code = "import sys, ganbench.plugins.datasets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# embedded
# --------------------------------------------------------------------------------------------
def test_embedded_end_to_end(specs):
    result = specs["embedded"].load(None, (7, 8), 32)
    check_digit_data(result, 32, digits={7, 8})
    assert len(result.train) == 2000
    assert len(result.heldout) == 1028 + 974  # MNIST test images of 7 and 8
    assert result.source == "embedded MNIST subset (2000 train / 2002 held-out, digits 7,8)"


def test_embedded_takes_no_argument(specs):
    with pytest.raises(DataError, match="--data embedded takes no argument"):
        specs["embedded"].load("somewhere", (), 32)


def test_embedded_bad_digit(specs):
    with pytest.raises(DataError, match="digits must be 0..9"):
        specs["embedded"].load(None, (12,), 32)


# --------------------------------------------------------------------------------------------
# mnist:DIR
# --------------------------------------------------------------------------------------------
def write_tiny_mnist(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes())
    return folder


def test_mnist_end_to_end(specs, tmp_path):
    folder = write_tiny_mnist(tmp_path / "mnist")
    result = specs["mnist"].load(str(folder), (), 64)
    check_digit_data(result, 64, digits=set(range(10)))
    assert (len(result.train), len(result.heldout)) == (20, 10)
    assert result.source.endswith("(20 train / 10 held-out)")
    selected = specs["mnist"].load(str(folder), (3,), 32)
    assert (len(selected.train), len(selected.heldout)) == (2, 1)


def test_mnist_needs_a_folder(specs):
    with pytest.raises(DataError, match="use --data mnist:DIR"):
        specs["mnist"].load(None, (), 32)


def test_mnist_missing_folder(specs, tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        specs["mnist"].load(str(tmp_path / "absent"), (), 32)


# --------------------------------------------------------------------------------------------
# folder:DIR
# --------------------------------------------------------------------------------------------
def write_img78(folder: Path, per_digit: int = 10) -> Path:
    folder.mkdir()
    for digit in (7, 8):
        for i in range(per_digit):
            Image.new("L", (64, 64), 20 * digit + i).save(folder / f"img_{digit}_{i}.png")
    return folder


def test_folder_end_to_end(specs, tmp_path):
    folder = write_img78(tmp_path / "img_78")
    result = specs["folder"].load(str(folder), (), 32)
    check_digit_data(result, 32, digits=None)
    assert (len(result.train), len(result.heldout)) == (18, 2)
    # The held-out images are never in the training part (each image here is a unique grey).
    train_values = set(result.train[:, 0, 0, 0].tolist())
    assert not train_values & set(result.heldout[:, 0, 0, 0].tolist())
    again = specs["folder"].load(str(folder), (), 32)
    assert torch.equal(again.heldout, result.heldout)  # the split is seeded


def test_folder_digit_selection(specs, tmp_path):
    result = specs["folder"].load(str(write_img78(tmp_path / "img_78")), (8,), 32)
    check_digit_data(result, 32, digits={8})
    assert (len(result.train), len(result.heldout)) == (9, 1)
    assert "digits 8" in result.source


def test_folder_unlabelled_with_digits(specs, tmp_path):
    for i in range(3):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError, match="this data has no labels"):
        specs["folder"].load(str(tmp_path), (7,), 32)
    check_digit_data(specs["folder"].load(str(tmp_path), (), 32), 32)


def test_folder_needs_a_folder(specs):
    with pytest.raises(DataError, match="use --data folder:DIR"):
        specs["folder"].load("", (), 32)
