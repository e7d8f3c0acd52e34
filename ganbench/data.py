"""Readers for handwritten digits: IDX files (MNIST), image folders, and the embedded subset.

Every reader returns plain numpy arrays: images are uint8 (N, H, W) grey-scale with white digits
on black (MNIST's convention), labels are int64 (N,) with -1 where the digit is unknown.
:func:`prepare` is the one place where images become the float tensors a GAN trains on.

Every failure a user can cause (a wrong path, a damaged file, a digit that is not there) raises
:class:`ganbench.errors.DataError` with one line that names the file and says what to do.

numpy and Pillow are imported at module level (cheap); torch only inside :func:`prepare`, so that
importing this module does not cost the ~1.8 s of ``import torch``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Union

import numpy as np

from ganbench.errors import DataError

if TYPE_CHECKING:  # only for the type checker: see the module docstring
    import torch

PathLike = Union[str, Path]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
GZIP_MAGIC = b"\x1f\x8b"
# The smallest IDX images a run accepts (they are resized to --image-size, 32 to 128). MNIST
# test digits shrunk to S x S and enlarged to 32x32, as a run would, then read by the shipped
# digit classifier (2,000 digits): S = 1-3: 12% correct (chance); 4: 22%; 6: 51%; 7: 71%;
# 8: 81%; 10: 91%; 14: 98%; 28: 98.9%. Below 8x8 most digits are no longer digits.
MIN_IMAGE_SIDE = 8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
EMBEDDED_PATH = Path(__file__).parent / "assets" / "mnist_embedded.npz"
REGENERATE_HINT = "regenerate it with: python tools/make_embedded_mnist.py MNIST_DIR"

# The four standard MNIST files, by role. Both spellings seen in the wild are accepted
# ("train-images-idx3-ubyte" from LeCun's site, "train-images.idx3-ubyte" from some mirrors),
# each raw or gzipped.
MNIST_FILES = {
    "train_images": ("train-images", 3),
    "train_labels": ("train-labels", 1),
    "test_images": ("t10k-images", 3),
    "test_labels": ("t10k-labels", 1),
}


@dataclass(frozen=True)
class MnistArrays:
    """MNIST's two splits: images uint8 (N, 28, 28), labels int64 (N,) in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    metadata: dict = field(default_factory=dict)  # provenance, where the source records it


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------
def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzipped) into a uint8 array.

    Contract:
      - gzip is detected by its magic bytes (1f 8b), not by the file name;
      - header integers are big-endian; magic 2051 gives images (N, rows, cols), magic 2049
        gives labels (N,); both uint8 and writable;
      - the file must hold exactly the bytes its header announces;
      - any failure (missing file, unreadable gzip, wrong magic number, too few or too many bytes)
        raises :class:`DataError` naming the file; no other exception escapes for bad content.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise DataError(f"{path}: is not a file; give the path of an IDX file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc

    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise DataError(f"{path}: not a readable gzip file ({exc}); re-download it") from exc

    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX header: expected at least 4 bytes, found "
                        f"{len(data)}; re-download the file")
    magic = int.from_bytes(data[:4], "big")
    if magic == IDX_IMAGES_MAGIC:
        n_dims = 3
    elif magic == IDX_LABELS_MAGIC:
        n_dims = 1
    else:
        raise DataError(f"{path}: found magic number {magic} (0x{magic:08x}), expected "
                        f"{IDX_IMAGES_MAGIC} (IDX images) or {IDX_LABELS_MAGIC} (IDX labels); "
                        "is this an MNIST IDX file?")

    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise DataError(f"{path}: truncated IDX header: expected {header_size} bytes, found "
                        f"{len(data)}; re-download the file")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    if n_dims == 3 and 0 in shape[1:]:  # 0 images is a valid (empty) file; 0-pixel images not
        raise DataError(f"{path}: IDX header says images of {shape[1]} rows x {shape[2]} "
                        "columns; an image needs at least one of each (damaged file?)")
    expected = header_size + math.prod(shape)  # Python ints: a huge header cannot overflow
    if len(data) < expected:
        raise DataError(f"{path}: truncated: header {shape} needs {expected} bytes, found "
                        f"{len(data)}; re-download the file")
    if len(data) > expected:
        raise DataError(f"{path}: {len(data) - expected} unexpected bytes after the data "
                        f"(header {shape} needs {expected} bytes, found {len(data)}); "
                        "the file is damaged, re-download it")
    # frombuffer over bytes is read-only; copy so callers own an ordinary array.
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def find_mnist_files(directory: PathLike) -> dict[str, Path]:
    """Locate the four MNIST files in ``directory``: {role: path} for the roles of MNIST_FILES.

    Accepted names: ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte`` (and likewise for
    train-labels, t10k-images, t10k-labels), each optionally ending in ``.gz``; a raw file is
    preferred over a gzipped one. Raises DataError if the folder or any file is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; give the folder holding the four "
                        "MNIST IDX files")
    found = {}
    for role, (prefix, dims) in MNIST_FILES.items():
        names = [f"{prefix}{sep}idx{dims}-ubyte{gz}" for gz in ("", ".gz") for sep in ("-", ".")]
        match = next((directory / n for n in names if (directory / n).is_file()), None)
        if match is None:
            raise DataError(f"{directory}: missing {prefix}-idx{dims}-ubyte[.gz]; the folder "
                            "needs train-images, train-labels, t10k-images and t10k-labels")
        found[role] = match
    return found


def load_mnist_dir(directory: PathLike) -> MnistArrays:
    """Read the four MNIST IDX files in ``directory`` (names as in :func:`find_mnist_files`).

    Returns images uint8 (N, rows, cols) and labels int64 (N,). Raises DataError for a missing
    file, an image file that holds labels (or the reverse), images smaller than
    :data:`MIN_IMAGE_SIDE` on a side, an image/label count mismatch, or a label outside 0..9.
    """
    paths = find_mnist_files(directory)
    arrays = {}
    for role, path in paths.items():
        array = read_idx(path)
        want = MNIST_FILES[role][1]
        if array.ndim != want:
            kind = "images" if want == 3 else "labels"
            raise DataError(f"{path}: expected IDX {kind} (magic "
                            f"{IDX_IMAGES_MAGIC if want == 3 else IDX_LABELS_MAGIC}) but the file "
                            "holds the other kind; check the file names")
        if want == 3 and min(array.shape[1:]) < MIN_IMAGE_SIDE:
            raise DataError(f"{path}: images of {array.shape[1]}x{array.shape[2]} pixels are "
                            f"too small: a run enlarges them to --image-size (32 to 128) and "
                            f"needs at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} for a legible "
                            "digit (MNIST's are 28x28)")
        arrays[role] = array
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(f"{paths[f'{split}_images']} has {len(images)} images but "
                            f"{paths[f'{split}_labels'].name} has {len(labels)} labels; the "
                            "files do not belong together")
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[f'{split}_labels']}: label {int(labels.max())} is not a "
                            "digit 0..9; is this an MNIST label file?")
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    return MnistArrays(**arrays)


def load_embedded() -> MnistArrays:
    """The MNIST subset shipped in the package (``ganbench/assets/mnist_embedded.npz``).

    Train: 1,000 training images per digit (10,000, chosen with a fixed seed). Test: the full
    10,000-image MNIST test set. Images uint8 (N, 28, 28), labels int64. ``metadata`` holds the
    source, the SHA-256 checksums of the files it was cut from, the licence and the seed.
    See tools/make_embedded_mnist.py.
    """
    if not EMBEDDED_PATH.is_file():
        raise DataError(f"{EMBEDDED_PATH}: the embedded MNIST subset is missing; "
                        + REGENERATE_HINT)
    try:
        # allow_pickle=False: the asset is plain arrays plus a JSON string, nothing executable.
        with np.load(EMBEDDED_PATH, allow_pickle=False) as npz:
            return MnistArrays(
                train_images=npz["train_images"],
                train_labels=npz["train_labels"].astype(np.int64),
                test_images=npz["test_images"],
                test_labels=npz["test_labels"].astype(np.int64),
                metadata=json.loads(str(npz["metadata"])),
            )
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise DataError(f"{EMBEDDED_PATH}: cannot read the embedded subset ({exc}); "
                        + REGENERATE_HINT) from exc


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------
_IMG_NAME = re.compile(r"^img_(\d)_", re.IGNORECASE)  # the textbook's img_78/img_7_12.jpg


def _label_for(path: Path, root: Path) -> int:
    """A digit sub-folder (``root/7/x.png``) wins; else an ``img_7_...`` name; else -1."""
    parent = path.parent
    if parent != root and re.fullmatch(r"\d", parent.name):
        return int(parent.name)
    match = _IMG_NAME.match(path.name)
    return int(match.group(1)) if match else -1


def load_image_folder(directory: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read every png/jpg/jpeg/bmp/gif under ``directory`` (recursively, sorted by path).

    Returns images uint8 (N, S, S) grey-scale and labels int64 (N,). Labels come from, in order:
    a sub-folder named after the digit (``DIR/7/any.png``); the textbook's img_78 naming
    (``img_7_12.jpg``: the digit after ``img_``); otherwise -1 (unknown).

    Size: S is the larger side of the most common image size in the folder (ties: the size met
    first). Images of any other size, or non-square ones, are resized to S x S with Pillow's
    bilinear filter (which averages over the footprint when shrinking); expect a folder of
    same-size square digits, where nothing is resized. Colour images are converted to grey
    (Pillow's "L"), GIFs contribute their first frame. Digits are expected white on black, as in
    MNIST; nothing is inverted.

    Raises DataError for a missing folder, a folder with no images, or a file Pillow cannot read.
    """
    from PIL import Image  # Pillow is light, but only this reader needs it

    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give a folder of digit images")
    files = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"{root}: no images found (looked for {'/'.join(IMAGE_SUFFIXES)}); "
                        "give a folder of digit images")

    grey = []
    for path in files:
        try:
            with Image.open(path) as image:
                grey.append(image.convert("L"))  # convert() loads the pixels, inside the try
        # Pillow reports damaged files through several exception types, depending on the format.
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: not a readable image ({exc}); remove or replace it") from exc

    sizes = Counter(image.size for image in grey)  # Counter keeps first-seen order for ties
    side = max(sizes.most_common(1)[0][0])
    images = np.stack([
        np.asarray(image if image.size == (side, side)
                   else image.resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)
        for image in grey
    ])
    labels = np.array([_label_for(p, root) for p in files], dtype=np.int64)
    return images, labels


# --------------------------------------------------------------------------------------------
# Selection, held-out split, preparation
# --------------------------------------------------------------------------------------------
def select_digits(images: np.ndarray, labels: np.ndarray,
                  digits: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the images whose label is in ``digits``; an empty ``digits`` keeps everything.

    Raises DataError if a digit is outside 0..9, if the data has no labels at all (every label
    -1) while digits are asked for, or if nothing matches (the message lists the digits present).
    Images with an unknown label (-1) are dropped whenever digits are asked for.
    """
    digits = tuple(digits)
    if not digits:
        return images, labels
    bad = [d for d in digits if isinstance(d, bool) or not isinstance(d, (int, np.integer))
           or not 0 <= d <= 9]
    if bad:
        raise DataError(f"digits must be 0..9, got {', '.join(map(str, bad))}")
    if labels.size and (labels == -1).all():
        raise DataError("this data has no labels, so digits cannot be selected; drop --digits, "
                        "or name files img_D_N.png or put them in sub-folders 0..9")
    keep = np.isin(labels, digits)
    if not keep.any():
        present = sorted(int(d) for d in np.unique(labels) if d >= 0)
        raise DataError(f"no images of digit(s) {', '.join(map(str, digits))}; this data has "
                        f"digit(s) {', '.join(map(str, present)) or 'none'}")
    return images[keep], labels[keep]


def split_heldout(images: np.ndarray, labels: np.ndarray, fraction: float = 0.1,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out a seeded random ``fraction`` of the images, for sources without a test split.

    Returns (train_images, train_labels, heldout_images, heldout_labels). The held-out count is
    round(N * fraction), at least 1 and at most N - 1, so both parts are non-empty; it is not
    stratified by digit. Both parts keep the source order. The same (N, fraction, seed) always
    gives the same split. Raises DataError for fewer than 2 images.
    """
    n = len(images)
    if n < 2:
        raise DataError(f"need at least 2 images to hold one out for the quality metrics, "
                        f"found {n}; add images")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    n_held = min(max(1, round(n * fraction)), n - 1)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:n_held]] = True
    return images[~held], labels[~held], images[held], labels[held]


def prepare(images: np.ndarray, image_size: int, chunk: int = 4096) -> "torch.Tensor":
    """uint8 images (N, H, W) -> float32 tensor (N, 1, S, S) in [-1, 1], S = ``image_size``.

    One resize filter for every source: bilinear with ``antialias=True, align_corners=False``
    (skipped when the images are already S x S), then ``x / 127.5 - 1`` so 0 -> -1 and 255 -> 1,
    the range of the generator's tanh output.
    """
    import torch
    import torch.nn.functional as F

    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"prepare() takes uint8 (N, H, W) images, got {images.dtype} "
                         f"{images.shape}")
    if int(image_size) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    size = int(image_size)
    n = len(images)
    out = torch.empty((n, 1, size, size), dtype=torch.float32)
    # In chunks so the peak memory is the output plus one chunk, not two full float copies
    # (60,000 digits at 64x64 are ~1 GB as float32).
    for start in range(0, n, chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk]))
        x = x.unsqueeze(1).to(torch.float32)  # (B, 1, H, W)
        if x.shape[-2:] != (size, size):
            # Bilinear, not bicubic: its weights are non-negative, so no ringing pushes values
            # outside [0, 255] (and so outside tanh's range). Not nearest: 28 -> 32 or 64 by
            # nearest makes uneven blocky strokes a discriminator can learn to tell real from
            # fake. antialias=True makes shrinking (a large folder image -> 32) average over each
            # output pixel's footprint instead of sampling 4 pixels and dropping thin strokes;
            # when enlarging it changes nothing. align_corners=False treats pixels as areas, the
            # same convention as Pillow's resize.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        # The clamp only absorbs float rounding (e.g. 255.00002) so the range contract holds.
        out[start:start + len(x)] = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)
    return out
