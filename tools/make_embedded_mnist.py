"""Build ganbench/assets/mnist_embedded.npz from the four MNIST IDX files.

    python tools/make_embedded_mnist.py /work/shared/data/mnist

What it writes (compressed npz, all uint8 except the index and the metadata):
  train_images (10000, 28, 28), train_labels (10000,): 1,000 training images per digit, chosen
      with a seeded generator and kept in MNIST's original order (so classes stay interleaved);
  train_index (10000,) uint16: where each chosen image sits in MNIST's 60,000-image training set;
  test_images (10000, 28, 28), test_labels (10000,): the full MNIST test set, never trained on,
      which the quality metrics compare generated digits against;
  metadata: a JSON string with the source, the SHA-256 of the four decompressed files, the
      licence and credit, the seed and the per-digit count.

The SHA-256 checksums of the decompressed files are verified first, so the asset is always cut
from the published MNIST, whatever compression or file naming the copy uses.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from ganbench.data import EMBEDDED_PATH, find_mnist_files, load_mnist_dir
from ganbench.errors import DataError

# SHA-256 of the DEcompressed files, as published with the copy in /work/shared/data/mnist.
EXPECTED_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
LICENCE = ("MNIST (Yann LeCun, Corinna Cortes, Christopher J. C. Burges) is licensed under "
           "the Creative Commons Attribution-Share Alike 3.0 licence (CC BY-SA 3.0); credit "
           "Yann LeCun and Corinna Cortes.")


def decompressed_sha256(path: Path) -> str:
    """SHA-256 of the file's content after gunzip (gzip recognised by its magic bytes)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    digest = hashlib.sha256()
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def balanced_subset(labels: np.ndarray, per_digit: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_digit`` images of each digit 0..9, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in range(10):
        pool = np.flatnonzero(labels == digit)
        if len(pool) < per_digit:
            raise DataError(f"only {len(pool)} training images of digit {digit}, "
                            f"asked for {per_digit}")
        chosen.append(rng.choice(pool, size=per_digit, replace=False))
    return np.sort(np.concatenate(chosen))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", type=Path, help="folder with the four MNIST IDX files")
    parser.add_argument("--out", type=Path, default=EMBEDDED_PATH, help="npz to write")
    parser.add_argument("--per-digit", type=int, default=1000,
                        help="training images kept per digit (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="subset seed (default 0)")
    args = parser.parse_args(argv)

    try:
        paths = find_mnist_files(args.mnist_dir)
        checksums = {}
        for role, path in paths.items():
            digest = decompressed_sha256(path)
            checksums[path.name.removesuffix(".gz")] = digest
            if digest != EXPECTED_SHA256[role]:
                raise DataError(f"{path}: SHA-256 of the decompressed file is {digest}, expected "
                                f"{EXPECTED_SHA256[role]}; this is not the published MNIST")
        mnist = load_mnist_dir(args.mnist_dir)
        index = balanced_subset(mnist.train_labels, args.per_digit, args.seed)
    except DataError as exc:
        print(f"make_embedded_mnist: error: {exc}", file=sys.stderr)
        return 2

    metadata = {
        "source": "MNIST database of handwritten digits (http://yann.lecun.com/exdb/mnist/)",
        "contents": f"train: {args.per_digit} training images per digit, seeded; "
                    "test: the full MNIST test set",
        "sha256_decompressed": checksums,
        "licence": LICENCE,
        "seed": args.seed,
        "per_digit": args.per_digit,
        "generator": "tools/make_embedded_mnist.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        train_images=mnist.train_images[index],
        train_labels=mnist.train_labels[index].astype(np.uint8),
        train_index=index.astype(np.uint16),  # 60,000 < 2**16
        test_images=mnist.test_images,
        test_labels=mnist.test_labels.astype(np.uint8),
        metadata=np.array(json.dumps(metadata, indent=1)),  # a str array: loads without pickle
    )
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.1f} MB): {len(index)} train, "
          f"{len(mnist.test_labels)} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
