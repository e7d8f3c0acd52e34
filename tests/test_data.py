"""ganbench.data: IDX reader, MNIST folder, image folders, selection, split, prepare, embedded."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganbench import data
from ganbench.errors import DataError

MNIST_DIR = Path("/work/shared/data/mnist")
# From the MNIST README: how many test images there are of each digit 0..9.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 (labels) or 3 (images) dimensions as an IDX file."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def write(path: Path, content: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
LABELS = np.array([3, 1, 4, 1, 5], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("array", [IMAGES, LABELS], ids=["images", "labels"])
def test_read_idx_round_trips_raw_and_gzip(tmp_path, array, gz):
    path = write(tmp_path / "file-ubyte", idx_bytes(array), gz)  # no .gz name: magic bytes decide
    result = data.read_idx(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)
    result[0] = 0  # the caller owns a writable array


def test_read_idx_raw_file_named_gz(tmp_path):
    path = write(tmp_path / "labels.gz", idx_bytes(LABELS))
    np.testing.assert_array_equal(data.read_idx(path), LABELS)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope-ubyte: no such file"):
        data.read_idx(tmp_path / "nope-ubyte")


def test_read_idx_directory(tmp_path):
    with pytest.raises(DataError, match="is not a file"):
        data.read_idx(tmp_path)


def test_read_idx_bad_magic_says_found_and_expected(tmp_path):
    path = write(tmp_path / "x", struct.pack(">II", 2052, 0))
    with pytest.raises(DataError, match=r"x: found magic number 2052 .* expected 2051 .* 2049"):
        data.read_idx(path)


def test_read_idx_png_is_not_idx(tmp_path):
    path = write(tmp_path / "digit.png", b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError, match="0x89504e47"):
        data.read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_says_bytes_expected_and_found(tmp_path, gz):
    content = idx_bytes(IMAGES)
    path = write(tmp_path / "short", content[:-7], gz)
    with pytest.raises(DataError, match=rf"short: truncated.*needs {len(content)} bytes, "
                                        rf"found {len(content) - 7}"):
        data.read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = write(tmp_path / "h", idx_bytes(IMAGES)[:10])
    with pytest.raises(DataError, match="truncated IDX header: expected 16 bytes, found 10"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = write(tmp_path / "long", idx_bytes(LABELS) + b"\0\0")
    with pytest.raises(DataError, match="2 unexpected bytes after the data"):
        data.read_idx(path)


def test_read_idx_unreadable_gzip(tmp_path):
    good = gzip.compress(idx_bytes(IMAGES))
    path = write(tmp_path / "bad.gz", good[:-10])  # the stream ends early
    with pytest.raises(DataError, match="bad.gz: not a readable gzip file"):
        data.read_idx(path)


def test_read_idx_huge_header_does_not_allocate(tmp_path):
    path = write(tmp_path / "huge", struct.pack(">IIII", 2051, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path)


# Fuzzing: whatever the bytes, read_idx returns a valid array or raises DataError.
@pytest.fixture(scope="module")
def fuzz_file():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "fuzz-ubyte"


def check_read_idx_contract(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        array = data.read_idx(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert array.dtype == np.uint8 and array.ndim in (1, 3)
    # A successful read must be exact: the array encodes back to the (decompressed) content.
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert idx_bytes(array) == raw


FUZZ_SETTINGS = settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


@FUZZ_SETTINGS
@given(content=st.binary(max_size=80))
def test_fuzz_read_idx_random_bytes(fuzz_file, content):
    check_read_idx_contract(fuzz_file, content)


@FUZZ_SETTINGS
@given(content=st.sampled_from([idx_bytes(IMAGES), idx_bytes(LABELS), idx_bytes(LABELS[:0])]),
       gz_before=st.booleans(), gz_after=st.booleans(), draw=st.data())
def test_fuzz_read_idx_mutated_files(fuzz_file, content, gz_before, gz_after, draw):
    """Mutate a valid IDX file (optionally its gzip form), optionally gzip the result."""
    content = bytearray(gzip.compress(content) if gz_before else content)
    for _ in range(draw.draw(st.integers(0, 3))):
        kind = draw.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw.draw(st.integers(0, len(content)))
        if kind == "flip" and at < len(content):
            content[at] = draw.draw(st.integers(0, 255))
        elif kind == "cut":
            del content[at:at + draw.draw(st.integers(1, 8))]
        else:
            content[at:at] = draw.draw(st.binary(min_size=1, max_size=8))
    content = bytes(content)
    check_read_idx_contract(fuzz_file, gzip.compress(content) if gz_after else content)


# --------------------------------------------------------------------------------------------
# load_mnist_dir
# --------------------------------------------------------------------------------------------
def write_mnist(folder: Path, n_train=6, n_test=4, sep="-", gz=False,
                train_labels=None) -> Path:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    arrays = {
        f"train-images{sep}idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        f"train-labels{sep}idx1-ubyte": (train_labels if train_labels is not None
                                         else np.arange(n_train, dtype=np.uint8) % 10),
        f"t10k-images{sep}idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        f"t10k-labels{sep}idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        write(folder / (name + suffix), idx_bytes(array), gz)
    return folder


@pytest.mark.parametrize("sep,gz", [("-", False), (".", True)])
def test_load_mnist_dir(tmp_path, sep, gz):
    mnist = data.load_mnist_dir(write_mnist(tmp_path / "m", sep=sep, gz=gz))
    assert mnist.train_images.shape == (6, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (4, 28, 28)
    assert mnist.train_labels.dtype == np.int64
    assert mnist.train_labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_load_mnist_dir_missing_file(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load_mnist_dir(folder)


def test_load_mnist_dir_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        data.load_mnist_dir(tmp_path / "absent")


def test_load_mnist_dir_count_mismatch(tmp_path):
    folder = write_mnist(tmp_path / "m", train_labels=np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="has 6 images but train-labels-idx1-ubyte has 5 labels"):
        data.load_mnist_dir(folder)


def test_load_mnist_dir_labels_in_image_file(tmp_path):
    folder = write_mnist(tmp_path / "m")
    write(folder / "t10k-images-idx3-ubyte", idx_bytes(LABELS))
    with pytest.raises(DataError, match="expected IDX images"):
        data.load_mnist_dir(folder)


def test_load_mnist_dir_label_out_of_range(tmp_path):
    folder = write_mnist(tmp_path / "m", train_labels=np.array([0, 1, 2, 3, 4, 12], np.uint8))
    with pytest.raises(DataError, match="label 12 is not a digit"):
        data.load_mnist_dir(folder)


# --------------------------------------------------------------------------------------------
# load_image_folder
# --------------------------------------------------------------------------------------------
def save(path: Path, value: int, size=(8, 8), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)
    return path


def test_folder_img78_naming(tmp_path):
    for i in range(3):
        save(tmp_path / f"img_7_{i}.jpg", 200)
        save(tmp_path / f"img_8_{i}.jpg", 50)
    images, labels = data.load_image_folder(tmp_path)
    assert images.shape == (6, 8, 8) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert sorted(labels.tolist()) == [7, 7, 7, 8, 8, 8]


def test_folder_digit_subfolders_and_unknown(tmp_path):
    save(tmp_path / "3" / "a.png", 30)
    save(tmp_path / "5" / "b.bmp", 50)
    save(tmp_path / "loose.gif", 70)
    save(tmp_path / "other" / "c.png", 90)
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    save(tmp_path / ".hidden" / "d.png", 10)  # hidden folders are skipped
    images, labels = data.load_image_folder(tmp_path)
    by_value = dict(zip(images[:, 0, 0].tolist(), labels.tolist()))
    assert by_value == {30: 3, 50: 5, 70: -1, 90: -1}


def test_folder_unlabelled_colour(tmp_path):
    save(tmp_path / "a.png", 255, mode="RGB")
    save(tmp_path / "b.png", 0, mode="RGB")
    images, labels = data.load_image_folder(tmp_path)
    assert images.shape == (2, 8, 8)
    assert images[:, 0, 0].tolist() == [255, 0]
    assert labels.tolist() == [-1, -1]


def test_folder_sizes_resized_to_most_common_square(tmp_path):
    save(tmp_path / "a.png", 100, size=(8, 8))
    save(tmp_path / "b.png", 100, size=(8, 8))
    save(tmp_path / "c.png", 100, size=(20, 12))
    images, _ = data.load_image_folder(tmp_path)
    assert images.shape == (3, 8, 8)
    assert (images == 100).all()  # a uniform image stays uniform through the resize


def test_folder_non_square_most_common(tmp_path):
    save(tmp_path / "a.png", 100, size=(6, 10))  # (width, height)
    images, _ = data.load_image_folder(tmp_path)
    assert images.shape == (1, 10, 10)


def test_folder_empty(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images found"):
        data.load_image_folder(tmp_path)


def test_folder_missing(tmp_path):
    with pytest.raises(DataError, match="absent: no such folder"):
        data.load_image_folder(tmp_path / "absent")


def test_folder_corrupt_image(tmp_path):
    save(tmp_path / "good.png", 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png: not a readable image") as info:
        data.load_image_folder(tmp_path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# select_digits and split_heldout
# --------------------------------------------------------------------------------------------
SEL_IMAGES = np.arange(6, dtype=np.uint8).reshape(6, 1, 1)
SEL_LABELS = np.array([7, 8, 7, 1, 8, 7], dtype=np.int64)


def test_select_digits():
    images, labels = data.select_digits(SEL_IMAGES, SEL_LABELS, (7, 1))
    assert labels.tolist() == [7, 7, 1, 7]
    assert images[:, 0, 0].tolist() == [0, 2, 3, 5]


def test_select_no_digits_keeps_all():
    images, labels = data.select_digits(SEL_IMAGES, SEL_LABELS, ())
    assert len(images) == 6 and labels is SEL_LABELS


def test_select_absent_digit_lists_present_ones():
    with pytest.raises(DataError, match=r"no images of digit\(s\) 3; this data has digit\(s\) "
                                        "1, 7, 8"):
        data.select_digits(SEL_IMAGES, SEL_LABELS, (3,))


@pytest.mark.parametrize("digit", [10, -1, 1.5, True])
def test_select_out_of_range(digit):
    with pytest.raises(DataError, match="digits must be 0..9"):
        data.select_digits(SEL_IMAGES, SEL_LABELS, (digit,))


def test_select_unlabelled():
    with pytest.raises(DataError, match="this data has no labels"):
        data.select_digits(SEL_IMAGES, np.full(6, -1), (7,))
    images, _ = data.select_digits(SEL_IMAGES, np.full(6, -1), ())
    assert len(images) == 6


def test_select_partly_labelled_drops_unknown():
    _, labels = data.select_digits(SEL_IMAGES, np.array([7, -1, 7, -1, 8, -1]), (7,))
    assert labels.tolist() == [7, 7]


def test_split_heldout_is_seeded_disjoint_and_complete():
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1)
    labels = np.arange(50) % 10
    train, train_labels, held, held_labels = data.split_heldout(images, labels, 0.1, seed=3)
    assert len(held) == 5 and len(train) == 45
    assert sorted(train.ravel().tolist() + held.ravel().tolist()) == list(range(50))
    assert (held_labels == held.ravel() % 10).all()
    again = data.split_heldout(images, labels, 0.1, seed=3)
    np.testing.assert_array_equal(again[2], held)
    assert not np.array_equal(data.split_heldout(images, labels, 0.1, seed=4)[2], held)


def test_split_heldout_small():
    two = np.zeros((2, 1, 1), np.uint8)
    train, _, held, _ = data.split_heldout(two, np.zeros(2), 0.1)
    assert len(train) == 1 and len(held) == 1
    with pytest.raises(DataError, match="need at least 2 images"):
        data.split_heldout(two[:1], np.zeros(1))


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_prepare_shape_range_dtype(size):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    x = data.prepare(images, size)
    assert x.shape == (3, 1, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert (x[0] == -1).all() and (x[1] == 1).all()


def test_prepare_exact_values_without_resize():
    image = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    expected = torch.tensor([[[[-1.0, 1.0], [-0.6, -0.2]]]])
    torch.testing.assert_close(data.prepare(image, 2), expected)


def test_prepare_exact_values_bilinear_upscale():
    # align_corners=False, 2 -> 4: output pixels sit at input coordinates -0.25, 0.25, 0.75, 1.25,
    # so (edges clamped) each row is [a, 3a/4 + b/4, a/4 + 3b/4, b]; separable in 2-D.
    image = np.array([[0, 100], [100, 200]], dtype=np.uint8)
    w = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    expected = torch.tensor(w @ image @ w.T / 127.5 - 1, dtype=torch.float32)
    torch.testing.assert_close(data.prepare(image[None], 4)[0, 0], expected)


def test_prepare_antialias_keeps_thin_strokes_when_shrinking():
    image = np.zeros((1, 8, 8), dtype=np.uint8)
    image[0, :, 3] = 255  # a one-pixel vertical stroke that plain bilinear sampling would miss
    x = data.prepare(image, 2)
    assert x.max() > -0.9


def test_prepare_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        data.prepare(np.zeros((1, 2, 2), np.float32), 2)


# --------------------------------------------------------------------------------------------
# The embedded subset
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded():
    return data.load_embedded()


def test_embedded_shapes_and_balance(embedded):
    assert embedded.train_images.shape == (10000, 28, 28)
    assert embedded.test_images.shape == (10000, 28, 28)
    assert embedded.train_images.dtype == np.uint8 and embedded.test_images.dtype == np.uint8
    assert embedded.train_labels.dtype == np.int64
    assert np.bincount(embedded.train_labels, minlength=10).tolist() == [1000] * 10
    assert np.bincount(embedded.test_labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert embedded.train_images.max() == 255 and embedded.train_images.min() == 0


def test_embedded_metadata(embedded):
    meta = embedded.metadata
    assert "CC BY-SA 3.0" in meta["licence"] and "Corinna Cortes" in meta["licence"]
    assert meta["seed"] == 0 and meta["per_digit"] == 1000
    assert meta["sha256_decompressed"]["t10k-images.idx3-ubyte"].startswith("0fa7898d")


def test_embedded_asset_is_small():
    assert data.EMBEDDED_PATH.stat().st_size < 4_000_000


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="real MNIST not available here")
def test_embedded_test_set_is_the_real_mnist_test_set(embedded):
    files = data.find_mnist_files(MNIST_DIR)
    np.testing.assert_array_equal(data.read_idx(files["test_images"]), embedded.test_images)
    np.testing.assert_array_equal(data.read_idx(files["test_labels"]), embedded.test_labels)


@pytest.mark.parametrize("shape", [(3, 28, 0), (3, 0, 28), (3, 0, 0)])
def test_read_idx_images_without_rows_or_columns_are_a_data_error(tmp_path, shape):
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(np.zeros(shape, dtype=np.uint8)))
    with pytest.raises(DataError, match=rf"images of {shape[1]} rows x {shape[2]} columns"):
        data.read_idx(path)


def test_read_idx_zero_images_is_still_a_valid_file(tmp_path):
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(np.zeros((0, 28, 28), dtype=np.uint8)))
    assert data.read_idx(path).shape == (0, 28, 28)
