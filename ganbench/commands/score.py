"""`ganbench score SAMPLES`: any set of digits through the full metric suite, beside real data.

    ganbench score samples.npz --digits 7,8 [--image-size S] [--json]
    ganbench score my_pngs/ --digits all

SAMPLES is an .npz holding a uint8 array ``images`` (N x H x W or N x 1 x H x W, 0 = background,
any size; what `ganbench sample` writes) or a folder of digit images (PNG, JPEG, BMP, GIF; read
as `--data folder:DIR` reads them). The samples are brought to S x S (default: their own size)
with the filter runs use for real digits, then scored exactly as a run scores a generator
(:func:`ganbench.quality.evaluate.evaluate`, against the same held-out half of the selected
digits, with the run's training digits for memorisation), and the "real data" row (other
held-out digits against that half) is printed beside them at the same N. So a GAN trained
outside ganbench can be scored, and a metric can be checked on hand-built sets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "score"
HELP = ("score a set of digits (.npz or image folder) with the quality metrics, beside the "
        "real-data row")
MIN_SIDE, MAX_SIDE = 8, 256  # --image-size range: the classifier sees 28x28 either way


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("samples", type=Path, metavar="SAMPLES",
                   help=".npz with a uint8 'images' array (N x H x W or N x 1 x H x W, "
                        "0 = background; `ganbench sample` writes one) or a folder of images")
    p.add_argument("--digits", default="7,8",
                   help="the digits the samples should be, or 'all' (default 7,8): they are "
                        "scored against held-out digits of these classes")
    p.add_argument("--image-size", type=int, metavar="S",
                   help=f"side the samples are scored at, {MIN_SIDE}-{MAX_SIDE} (default: "
                        "their own; other sizes are resized as runs resize real digits)")
    p.add_argument("--n", type=int, metavar="N",
                   help="score N of the samples, drawn with --seed (default: all of them, up "
                        "to half the held-out digits)")
    p.add_argument("--metrics", metavar="NAMES",
                   help="comma-separated metric plugins (default: every one available here)")
    p.add_argument("--data", default="embedded", metavar="SOURCE",
                   help="where the held-out and training digits come from, as for `ganbench "
                        "run --data` (default embedded)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the held-out split (as a run's --seed) and of --n's draw")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: metric column -> value, n, image_size, and "
                        "real_data (the reference row's columns)")


def read_samples(path: Path):
    """uint8 (N, H, W) images from an .npz (array ``images``) or an image folder.

    DataError (one line) for a missing path, an unreadable or non-npz file, no ``images`` array,
    a dtype other than uint8, a shape other than (N, H, W) or (N, 1, H, W), no images, and (for
    folders) no image files or an unreadable one.
    """
    import zipfile
    import zlib

    import numpy as np

    from ganbench import data
    from ganbench.errors import DataError

    if path.is_dir():
        images, _ = data.load_image_folder(path)
        return images
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder; give an .npz or a folder of images")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz file ({' '.join(str(exc).split())})"
                        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # an .npy: one bare array
        raise DataError(f"{path}: an .npy array, not an .npz archive; save it with "
                        "np.savez(FILE, images=ARRAY)")
    with archive:
        keys = list(archive.keys())
        if "images" not in keys:
            raise DataError(f"{path}: no 'images' array (it has: {', '.join(keys) or 'none'}); "
                            "save the samples as np.savez(FILE, images=uint8_array)")
        try:
            images = archive["images"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{path}: cannot read its 'images' array "
                            f"({' '.join(str(exc).split())})") from None
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' is {images.dtype}, expected uint8 (0..255, "
                        "0 = background)")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise DataError(f"{path}: 'images' has shape {images.shape}, expected N x H x W or "
                        "N x 1 x H x W")
    if 0 in images.shape:
        raise DataError(f"{path}: 'images' holds no pixels (shape {images.shape})")
    return images


def _digits(text: str) -> tuple[int, ...]:
    from ganbench.config import parse_digits
    from ganbench.errors import ConfigError

    digits = parse_digits(text)
    bad = [d for d in digits if not 0 <= d <= 9]
    if bad:
        raise ConfigError(f"--digits must be between 0 and 9, got {bad[0]}")
    if len(set(digits)) != len(digits):
        raise ConfigError("--digits lists a digit twice")
    return digits


def _metric_names(text, registry) -> list[str]:
    """--metrics as given (each checked), or every registered metric available on the CPU."""
    from ganbench.errors import UserError
    from ganbench.registry import why_unavailable

    if text is None:
        return [name for name, spec in registry.metrics.items()
                if not why_unavailable(spec, "cpu")]
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--metrics is empty; name at least one metric (see `ganbench plugins`)")
    for name in names:
        reason = why_unavailable(registry.lookup(name, ("metric",)).spec, "cpu")
        if reason:
            raise UserError(f"metric {name} cannot run here: {reason}")
    return names


def score(images, digits: tuple[int, ...], image_size: int, data, metric_names: list[str],
          registry, n: int, seed: int = 0) -> tuple[dict, dict]:
    """(row of the samples, real-data row), both scored at N = ``n`` against the held-out half
    a run with this ``seed`` scores against (:func:`ganbench.quality.evaluate.eval_sets`).

    ``images`` uint8 (M, H, W), M >= n (the first n are scored); ``data`` the DigitData of the
    digits at ``image_size``."""
    from ganbench import data as digit_data
    from ganbench.quality import evaluate as quality
    from ganbench.specs import MetricContext

    samples = digit_data.prepare(images[:n], image_size)
    sets = quality.eval_sets(data.heldout, data.heldout_labels, n, seed)
    context = MetricContext(digits=digits or tuple(range(10)), image_size=image_size,
                            device="cpu", seed=seed, real_labels=sets.real_labels,
                            train=data.train)
    row = quality.evaluate(metric_names, samples, sets.real, context, registry)
    reference, _ = quality.real_reference_row(data.heldout, data.heldout_labels, n, context,
                                              registry, metric_names, seed=seed)
    return row, reference


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ganbench.errors import ConfigError, DataError
    from ganbench.quality import evaluate as quality
    from ganbench.registry import get_registry, why_unavailable
    from ganbench.sweep.plan import parse_data

    digits = _digits(args.digits)
    if args.image_size is not None and not MIN_SIDE <= args.image_size <= MAX_SIDE:
        raise ConfigError(f"--image-size must be from {MIN_SIDE} to {MAX_SIDE}, got "
                          f"{args.image_size}")
    images = read_samples(args.samples)
    side = args.image_size or max(images.shape[1:])
    if not MIN_SIDE <= side <= MAX_SIDE:
        raise DataError(f"{args.samples}: images are {images.shape[1]}x{images.shape[2]}; give "
                        f"--image-size from {MIN_SIDE} to {MAX_SIDE} to score them at")
    registry = get_registry()
    names = _metric_names(args.metrics, registry)
    spec, argument = parse_data(args.data, registry)
    reason = why_unavailable(spec, "cpu")
    if reason:
        raise ConfigError(f"--data {spec.name} cannot be used here: {reason}")
    data = spec.load(argument, digits, side)

    most = quality.max_eval_n(len(data.heldout))
    n = args.n if args.n is not None else min(len(images), most)
    if n < 2 or n > len(images) or n > most:
        raise ConfigError(f"cannot score N = {n}: there are {len(images)} samples and the "
                          f"{len(data.heldout)} held-out digits allow at most {most} (half, so "
                          "the real-data row gets the other half); N must be at least 2")
    if n < len(images):
        print(f"ganbench score: scoring a random {n} of the {len(images)} samples (seed "
              f"{args.seed}); the real-data row is at N = {n} too", file=sys.stderr)
        images = images[np.sort(np.random.default_rng(args.seed).permutation(len(images))[:n])]
    try:
        row, reference = score(images, digits, side, data, names, registry, n, args.seed)
    except quality.TooFewSamplesError as exc:
        raise DataError(f"{n} samples are too few: {exc}; give more, or leave that metric "
                        "out with --metrics") from None
    _print(row, reference, args.json, _directions(registry, names))
    return 0


def _directions(registry, names: list[str]) -> dict[str, str]:
    """{column pattern: 'lower' | 'higher' | 'closer'} declared by the metrics scored."""
    return {pattern: way for name in names
            for pattern, way in registry.lookup(name, ("metric",)).spec.directions}


def _print(row: dict, reference: dict, as_json: bool, directions: dict[str, str]) -> None:
    import json
    import math

    from ganbench.quality.evaluate import TAG_COLUMNS

    def clean(values: dict) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in values.items() if k not in TAG_COLUMNS}

    if as_json:
        out = {"n": row["metric_n"], "image_size": row["metric_image_size"], **clean(row),
               "real_data": clean(reference)}
        print(json.dumps(out, indent=1))
        return
    from fnmatch import fnmatchcase

    from tabulate import tabulate

    def better(column: str) -> str:
        way = next((w for p, w in directions.items() if fnmatchcase(column, p)), "")
        return "closer to real" if way == "closer" else way

    lines = [(k, row[k], reference.get(k), better(k)) for k in row if k not in TAG_COLUMNS]
    print(f"N = {row['metric_n']} samples at {row['metric_image_size']}x"
          f"{row['metric_image_size']}; real data: {reference['metric_n']} other held-out "
          "digits, scored against the same ones")
    print(tabulate(lines, headers=["metric", "samples", "real data", "better"], floatfmt=".4g"))
