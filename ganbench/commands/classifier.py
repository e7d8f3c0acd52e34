"""``ganbench classifier``: train or check the digit classifier behind the quality metrics.

    ganbench classifier train --mnist DIR [--seed S] [--epochs E] [--out FILE]
    ganbench classifier eval [--mnist DIR] [--weights FILE]

``train`` writes the weights and, beside them, a JSON record of their SHA-256 and test accuracy
(``ganbench/assets/digit_classifier.pt`` + ``.json`` by default: the shipped pair). ``eval``
reports the test accuracy of the weights on the 10,000 MNIST test digits; without ``--mnist`` it
uses the test split of the embedded MNIST subset, which is the full MNIST test set.
"""

from __future__ import annotations

import argparse
import os

from ganbench.errors import ConfigError
from ganbench.options import Option, add_options

NAME = "classifier"
HELP = "train or evaluate the digit classifier used by fid-digits, is-digits, prdc and modes"
SYNOPSIS = "{train,eval}"
DESCRIPTION = ("Retrain (train, seeded) or check (eval: test accuracy) the shipped digit "
               "classifier behind the quality metrics fid-digits, is-digits, prdc and modes.")

MNIST_ENV = "GANBENCH_MNIST"  # default for --mnist: a folder with the four MNIST IDX files


TRAIN_OPTIONS = (
    Option("--mnist", "folder with the four MNIST IDX files", metavar="DIR",
           default=os.environ.get(MNIST_ENV), default_text=f"${MNIST_ENV}"),
    Option("--seed", "seed", type=int, default=0),
    Option("--epochs", "epochs", type=int, default=3),
    Option("--out", "weights file to write; FILE.json gets the checksum", metavar="FILE",
           default_text="the shipped ganbench/assets/digit_classifier.pt"),
)
EVAL_OPTIONS = (
    Option("--mnist", "folder with the MNIST IDX files", metavar="DIR",
           default=os.environ.get(MNIST_ENV),
           default_text=f"${MNIST_ENV}, else the embedded subset's test split"),
    Option("--weights", "weights to check", metavar="FILE", default_text="the shipped ones"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="classifier_command", metavar="ACTION")
    train = sub.add_parser("train", help="train on the 60k MNIST training digits",
                           description="Train the classifier (seeded, ~40 s on 2 CPU cores) and "
                           "write its weights and checksum record.")
    add_options(train, TRAIN_OPTIONS)
    evaluate = sub.add_parser("eval", help="test accuracy of the shipped (or given) weights",
                              description="Print the accuracy on the 10,000 MNIST test digits.")
    add_options(evaluate, EVAL_OPTIONS)
    parser.set_defaults(_parser=parser)


def _train(args: argparse.Namespace) -> int:
    from ganbench.quality import classifier

    if not args.mnist:
        raise ConfigError(f"give --mnist DIR (the folder with the MNIST IDX files) or set "
                          f"${MNIST_ENV}")
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    model, summary = classifier.train_classifier(args.mnist, seed=args.seed, epochs=args.epochs)
    path = classifier.save_classifier(model, args.out or classifier.WEIGHTS_PATH, summary)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) and "
          f"{classifier.checksum_path(path).name}; test accuracy "
          f"{summary['test_accuracy']:.4f}, trained in {summary['train_seconds']:.1f} s")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from ganbench import data
    from ganbench.quality import classifier

    arrays = data.load_mnist_dir(args.mnist) if args.mnist else data.load_embedded()
    images = data.prepare(arrays.test_images, classifier.INPUT_SIZE)
    labels = torch.from_numpy(arrays.test_labels)
    model = _load(classifier, args.weights)
    acc = classifier.accuracy(model, images, labels)
    where = args.weights or classifier.WEIGHTS_PATH
    print(f"{where}: test accuracy {acc:.4f} on {len(labels)} MNIST test digits")
    return 0


def _load(classifier, weights):
    """The classifier at ``weights`` (or the shipped one); any failure of a damaged, edited or
    hostile file (its checksum record included) is one line, never torch's advice on how to
    turn the weights-only protection off."""
    from ganbench.files.safe_load import describe

    try:
        return classifier.load_classifier(weights)
    except Exception as exc:
        raise describe(weights or classifier.WEIGHTS_PATH, "ganbench digit-classifier file",
                       exc) from None


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "classifier_command", None)
    if action == "train":
        return _train(args)
    if action == "eval":
        return _eval(args)
    args._parser.print_help()
    return 2
