"""Built-in data sources: ``--data embedded`` (the default), ``mnist:DIR`` and ``folder:DIR``.

Each ``load(argument, digits, image_size)`` returns a :class:`ganbench.specs.DigitData` whose
``heldout`` images are never trained on. This module is imported whenever a command runs, so
ganbench.data (numpy) and torch are imported only inside the loaders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ganbench.errors import DataError
from ganbench.hookspecs import hookimpl
from ganbench.specs import DatasetSpec

if TYPE_CHECKING:
    import numpy as np

    from ganbench.specs import DigitData

FOLDER_HELDOUT_FRACTION = 0.1
FOLDER_SPLIT_SEED = 0  # fixed, so every run on a folder holds out the same images


def _no_argument(name: str, argument: Optional[str]) -> None:
    if argument:
        raise DataError(f"--data {name} takes no argument, got {name}:{argument}; "
                        f"use --data {name}")


def _need_directory(name: str, argument: Optional[str]) -> str:
    if not argument:
        raise DataError(f"--data {name} needs a folder: use --data {name}:DIR")
    return argument


def _digit_data(train: "np.ndarray", train_labels: "np.ndarray", heldout: "np.ndarray",
                heldout_labels: "np.ndarray", digits: tuple[int, ...], image_size: int,
                source: str, **extra) -> "DigitData":
    """Select ``digits`` in both parts, prepare the images, and describe the result."""
    import torch

    from ganbench.data import prepare, select_digits
    from ganbench.specs import DigitData

    train, train_labels = select_digits(train, train_labels, digits)
    heldout, heldout_labels = select_digits(heldout, heldout_labels, digits)
    chosen = f", digits {','.join(map(str, digits))}" if digits else ""
    return DigitData(
        train=prepare(train, image_size),
        train_labels=torch.from_numpy(train_labels).to(torch.int64),
        heldout=prepare(heldout, image_size),
        heldout_labels=torch.from_numpy(heldout_labels).to(torch.int64),
        source=f"{source} ({len(train)} train / {len(heldout)} held-out{chosen})",
        extra={"native_size": tuple(train.shape[1:]), **extra},
    )


def load_embedded(argument: Optional[str], digits: tuple[int, ...],
                  image_size: int) -> "DigitData":
    """The MNIST subset shipped in the package: its train part trains, the test set is held out."""
    from ganbench import data

    _no_argument("embedded", argument)
    mnist = data.load_embedded()
    return _digit_data(mnist.train_images, mnist.train_labels, mnist.test_images,
                       mnist.test_labels, digits, image_size, "embedded MNIST subset")


def load_mnist(argument: Optional[str], digits: tuple[int, ...], image_size: int) -> "DigitData":
    """The four MNIST IDX files in DIR: the training set trains, the test set is held out."""
    from ganbench import data

    directory = _need_directory("mnist", argument)
    mnist = data.load_mnist_dir(directory)
    return _digit_data(mnist.train_images, mnist.train_labels, mnist.test_images,
                       mnist.test_labels, digits, image_size, f"MNIST IDX files in {directory}",
                       path=directory)


def load_folder(argument: Optional[str], digits: tuple[int, ...], image_size: int) -> "DigitData":
    """Images in DIR; a seeded 10% of the selected digits is held out."""
    from ganbench import data

    directory = _need_directory("folder", argument)
    images, labels = data.load_image_folder(directory)
    # Select first, then split: the held-out part then always holds the selected digits, even in
    # a small folder. The split is fixed for a given folder and selection.
    images, labels = data.select_digits(images, labels, digits)
    parts = data.split_heldout(images, labels, FOLDER_HELDOUT_FRACTION, FOLDER_SPLIT_SEED)
    return _digit_data(*parts, digits, image_size,  # selecting again is a no-op
                       f"image folder {directory}, {FOLDER_HELDOUT_FRACTION:.0%} held out",
                       path=directory)


@hookimpl
def ganbench_register_datasets(register) -> None:
    register(DatasetSpec(
        name="embedded",
        summary="MNIST subset shipped with ganbench: 1,000 train/digit, full 10,000 test held out",
        load=load_embedded,
    ))
    register(DatasetSpec(
        name="mnist",
        summary="MNIST IDX files in DIR (--data mnist:DIR): train set trains, test set held out",
        load=load_mnist,
    ))
    register(DatasetSpec(
        name="folder",
        summary="digit images in DIR (--data folder:DIR): img_D_N names or 0..9 sub-folders",
        load=load_folder,
    ))
