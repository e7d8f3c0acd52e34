"""A small CNN digit classifier: the feature extractor behind the digit-quality metrics.

Why a classifier of our own: Inception FID needs ImageNet weights from a model hub, which this
project cannot fetch, and Inception features say little about 28x28 grey digits anyway. The
usual practice for MNIST-like data is to score samples in the feature space of a classifier
trained on the digits themselves (a LeNet-sized network is plenty). Numbers computed
this way are comparable only with other numbers from the *same* weights.

Input contract: float tensors (N, 1, S, S) with values in [-1, 1] (what ``ganbench.data.prepare``
and every generator produce). If S != 28 the batch is first resized to 28x28 with bilinear
interpolation with antialiasing (``F.interpolate(mode="bilinear", antialias=True,
align_corners=False)``), the same filter ``ganbench.data.prepare`` uses to make 32x32 or 64x64
digits from MNIST's 28x28; so a generated 64x64 digit is brought back to the classifier's
resolution the way the real digits left it. (Test digits taken 28 -> 64 -> 28 or 28 -> 32 -> 28
this way are classified 99.2% right, against 99.26% at 28.)

The network (114k parameters, 0.46 MB of float32 weights)::

    (N,1,28,28) -conv5x5(16)-ReLU-maxpool2-> (N,16,14,14) -conv5x5(32)-ReLU-maxpool2-> (N,32,7,7)
    -flatten-> (N,1568) -linear-> pre-activations (N,64) -ReLU-> features (N,64) -linear-> logits

Two 64-d views of the penultimate layer: ``features`` (after the ReLU; what fid-digits uses) and
``pre_activations`` (the same linear layer before the ReLU; what PRDC uses). Why two: on real
digits 19 of the 64 post-ReLU units are never positive, and many more are zero for any one
image, so an image the network barely responds to (blank, constant grey, uniform noise) maps
near the origin, close to real digits with small activations: with post-ReLU features a blank
set scored precision 1.00 against 0.91 for real digits. Before the ReLU the same units are
negative by different amounts, so those images land far from every real digit (precision 0.00;
measured in tests/plugins/test_metrics.py). ``features == pre_activations.clamp(min=0)``.
PRDC standardises each pre-activation unit by its mean and standard deviation over the
embedded MNIST training digits (:func:`pre_activation_scale`; fixed, never the evaluated set),
so no unit's scale dominates the k-NN distances.

Use (the shipped weights, checked against their recorded SHA-256 before loading)::

    model = load_classifier()                   # cached: one load per process
    feats, logits = embed(model, images)        # (N, 64), (N, 10); batched, no grad
    pre, logits = embed_pre_activations(model, images)  # (N, 64) before the ReLU, (N, 10)
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ganbench.errors import ChecksumError, DataError

INPUT_SIZE = 28
FEATURE_DIM = 64
NUM_CLASSES = 10
ASSETS = Path(__file__).resolve().parent.parent / "assets"  # ganbench/assets
WEIGHTS_PATH = ASSETS / "digit_classifier.pt"
# Per-unit mean and standard deviation of the pre-activations over fixed training digits (see
# pre_activation_scale), recorded beside the weights so no run has to recompute them.
SCALE_PATH = ASSETS / "digit_classifier_scale.json"


def checksum_path(weights: Path) -> Path:
    """Where the checksum record of ``weights`` lives: ``X.pt`` -> ``X.json`` beside it."""
    return Path(weights).with_suffix(".json")


def to_classifier_input(x: torch.Tensor) -> torch.Tensor:
    """Check the (N, 1, S, S) contract and resize to 28x28 (bilinear, antialias) if needed."""
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
        raise ValueError(f"expected images of shape (N, 1, S, S), got {tuple(x.shape)}")
    x = x.float()
    if x.shape[-1] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          antialias=True, align_corners=False)
    return x


class DigitClassifier(nn.Module):
    """LeNet-style CNN; ``features`` is the penultimate layer used by FID and PRDC."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (N,16,14,14)
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N,32,7,7)
            nn.Flatten(),                                                 # (N,1568)
            nn.Linear(32 * 7 * 7, FEATURE_DIM), nn.ReLU(),                # (N,64)
        )
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)                   # (N,10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, 64) of images (N, 1, S, S) in [-1, 1]."""
        return self.body(to_classifier_input(x))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate linear layer's output (N, 64) before its ReLU: ``features`` is its
        positive part. Same weights, no new parameters."""
        return self.body[:-1](to_classifier_input(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10) of images (N, 1, S, S) in [-1, 1]."""
        return self.head(self.features(x))

    forward = logits


@torch.no_grad()
def embed(model: DigitClassifier, x: torch.Tensor,
          batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 64) and logits (N, 10) of ``x``, in batches, without gradients."""
    feats, logits = [], []
    for start in range(0, len(x), batch_size):
        f = model.features(x[start:start + batch_size])
        feats.append(f)
        logits.append(model.head(f))
    if not feats:
        return torch.zeros(0, FEATURE_DIM), torch.zeros(0, NUM_CLASSES)
    return torch.cat(feats), torch.cat(logits)


@torch.no_grad()
def embed_pre_activations(model: DigitClassifier, x: torch.Tensor,
                          batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations (N, 64) and logits (N, 10) of ``x``, in batches, without gradients.

    ``pre.clamp(min=0)`` equals :func:`embed`'s features, so one pass gives both views."""
    pres, logits = [], []
    for start in range(0, len(x), batch_size):
        pre = model.pre_activations(x[start:start + batch_size])
        pres.append(pre)
        logits.append(model.head(pre.clamp(min=0)))
    if not pres:
        return torch.zeros(0, FEATURE_DIM), torch.zeros(0, NUM_CLASSES)
    return torch.cat(pres), torch.cat(logits)


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    was_training = model.training
    model.eval()
    _, logits = embed(model, images)
    model.train(was_training)
    return float((logits.argmax(1) == labels.to(logits.device)).float().mean())


def _mnist_tensors(mnist_dir: Union[str, Path]):
    """MNIST train/test as float (N,1,28,28) in [-1,1] and int64 labels, via ganbench.data."""
    from ganbench import data

    mnist = data.load_mnist_dir(mnist_dir)
    return (data.prepare(mnist.train_images, INPUT_SIZE), torch.from_numpy(mnist.train_labels),
            data.prepare(mnist.test_images, INPUT_SIZE), torch.from_numpy(mnist.test_labels))


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, seed: int = 0, epochs: int = 3,
                   batch_size: int = 128, max_lr: float = 3e-3,
                   log: Optional[Callable[[str], None]] = print) -> DigitClassifier:
    """Train a fresh classifier on ``images`` (N, 1, 28, 28) in [-1, 1] with int64 ``labels``.

    Reproducible: the seed fixes the initial weights and the shuffling (its own generator), and
    the CPU kernels used here are deterministic for a given torch build and thread count (two
    runs give byte-identical weight files). Adam with a one-cycle learning-rate schedule
    (Smith & Topin 2017, "Super-Convergence") gets to 99.26% MNIST test accuracy in 3 epochs.
    Returns the model in eval mode.
    """
    torch.manual_seed(seed)
    model = DigitClassifier()
    shuffle = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(images) // batch_size  # drop the ragged last batch
    opt = torch.optim.Adam(model.parameters(), lr=max_lr / 25)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr,
                                                total_steps=epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=shuffle)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}, "
                f"{time.perf_counter() - start:.1f} s")
    return model.eval()


def train_classifier(mnist_dir: Union[str, Path], seed: int = 0, epochs: int = 3,
                     log: Optional[Callable[[str], None]] = print, **fit_options
                     ) -> tuple[DigitClassifier, dict]:
    """Train on the 60k MNIST training digits in ``mnist_dir``: the shipped weights' recipe.

    Returns the model (eval mode) and a summary: ``test_accuracy`` (on the 10k test digits,
    never trained on), ``train_seconds``, ``seed``, ``epochs``, ``torch`` (the version). About
    25-35 s on 2 idle CPU cores (see :func:`fit_classifier`; ``fit_options`` go to it).
    """
    train_x, train_y, test_x, test_y = _mnist_tensors(mnist_dir)
    start = time.perf_counter()
    model = fit_classifier(train_x, train_y, seed=seed, epochs=epochs, log=log, **fit_options)
    seconds = time.perf_counter() - start
    summary = {"test_accuracy": accuracy(model, test_x, test_y), "train_seconds": round(seconds, 1),
               "seed": seed, "epochs": epochs, "torch": torch.__version__}
    if log:
        log(f"test accuracy {summary['test_accuracy']:.4f} on {len(test_x)} MNIST test digits")
    return model, summary


def scale_of(model: DigitClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (64,) and unbiased standard deviation (64,) of the pre-activations of ``images``,
    float64."""
    pre, _ = embed_pre_activations(model, images)
    pre = pre.double()
    return pre.mean(0), pre.std(0)


def _scale_digits() -> torch.Tensor:
    """The fixed digits the scale is measured on: all 10,000 training images of the embedded
    MNIST subset (every class; never a run's held-out or generated images), at 28x28."""
    from ganbench import data

    return data.prepare(data.load_embedded().train_images, INPUT_SIZE)


def write_pre_activation_scale(weights: Union[str, Path] = WEIGHTS_PATH,
                               path: Union[str, Path] = SCALE_PATH) -> Path:
    """Measure :func:`scale_of` the shipped training digits with ``weights`` and record it,
    with the weights' SHA-256, at ``path``. How the shipped record was made::

        python -c "from ganbench.quality.classifier import write_pre_activation_scale as w; w()"
    """
    mean, std = scale_of(load_weights(weights), _scale_digits())
    record = {"weights_sha256": sha256_of(weights),
              "digits": "embedded MNIST subset, all 10000 training images, 28x28",
              "mean": [round(v, 6) for v in mean.tolist()],
              "std": [round(v, 6) for v in std.tolist()]}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
    return Path(path)


@functools.lru_cache(maxsize=4)
def _scale_cached(weights: str, path: str) -> tuple[torch.Tensor, torch.Tensor]:
    record_path = Path(path)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("weights_sha256") == sha256_of(weights):
            return (torch.tensor(record["mean"], dtype=torch.float64),
                    torch.tensor(record["std"], dtype=torch.float64))
    # Other weights (retrained, or given by path): measure once per process (~5-15 s on 2 cores).
    return scale_of(load_classifier(weights), _scale_digits())


def pre_activation_scale(weights: Union[str, Path, None] = None,
                         path: Union[str, Path] = SCALE_PATH) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (64,) float64: how the pre-activations of ``weights`` (default: the
    shipped ones) are spread over the embedded training digits. Read from the record at
    ``path`` when it was made for exactly these weights (SHA-256 match), else measured."""
    weights_path = Path(weights or WEIGHTS_PATH).resolve()
    return _scale_cached(str(weights_path), str(Path(path).resolve()))


def sha256_of(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_classifier(model: DigitClassifier, path: Union[str, Path] = WEIGHTS_PATH,
                    summary: Optional[dict] = None) -> Path:
    """Write the weights (a plain state dict) and, beside them, a JSON with their SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Saved through a buffer: torch.save names the zip's inner folder after the file, so saving
    # to a path would make identical weights hash differently under different file names.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    record = {"file": path.name, "sha256": sha256_of(path), **(summary or {})}
    checksum_path(path).write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_weights(path: Union[str, Path]) -> DigitClassifier:
    """Load ``path`` after checking its SHA-256 against the JSON record beside it (uncached)."""
    path = Path(path)
    record_path = checksum_path(path)
    if not path.is_file():
        raise DataError(f"classifier weights not found: {path} "
                        f"(make them with `ganbench classifier train`)")
    if not record_path.is_file():
        raise ChecksumError(f"no checksum record {record_path} for {path}; refusing to load")
    expected = json.loads(record_path.read_text())["sha256"]
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{path} has SHA-256 {actual[:16]}..., but {record_path.name} "
                            f"records {expected[:16]}...; the file is corrupt or was replaced")
    model = DigitClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> DigitClassifier:
    return load_weights(path)


def load_classifier(path: Union[str, Path, None] = None) -> DigitClassifier:
    """The shipped classifier (or the one at ``path``), checksum-verified, cached per process.

    The model is in eval mode with gradients off; treat it as read-only (it is shared).
    """
    return _load_cached(str(Path(path or WEIGHTS_PATH).resolve()))
