"""What the digit classifier says about an image set, computed once per set and shared.

Every classifier-based metric (fid-digits, kid-digits, is-digits, prdc, modes, and the class
of each sample that memorisation's per-class thresholds need) reads the same three views of the
shipped classifier (:mod:`ganbench.quality.classifier`): the 64 penultimate units after their
ReLU (``features``), the same units before it (``pre_activations``), and the log-softmax of
the logits. :func:`classifier_outputs` embeds a set once, in batches, and keeps the last few
sets, so scoring one (fake, real) pair with every metric embeds each set once, and the
held-out set shared by every row of a run once per run.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


class ClassifierOutputs(NamedTuple):
    features: torch.Tensor         # (N, 64) float64, penultimate layer after the ReLU
    log_probs: torch.Tensor        # (N, 10) float64, log-softmax of the logits
    pre_activations: torch.Tensor  # (N, 64) float64, penultimate layer before the ReLU


_CACHE: list = []   # [(weakref to images, images._version, ClassifierOutputs)], newest last
_CACHE_SIZE = 4     # fake + real of the current row, and a little slack


def classifier_outputs(images: torch.Tensor) -> ClassifierOutputs:
    """Classifier features and log-probabilities of ``images`` (N, 1, S, S) in [-1, 1].

    Cached by tensor identity: the same tensor object, unmodified (its in-place version counter
    unchanged), is embedded once; the last few sets used are kept (least recently used goes
    first). Weak references, so the cache never keeps images alive.
    """
    from ganbench.quality.classifier import embed_pre_activations, load_classifier

    for i, (ref, version, out) in enumerate(_CACHE):
        if ref() is images and images._version == version:
            _CACHE.append(_CACHE.pop(i))  # most recently used last: the shared real set stays
            return out
    pre, logits = embed_pre_activations(load_classifier(), images.detach().cpu())
    pre = pre.double()
    out = ClassifierOutputs(pre.clamp(min=0), F.log_softmax(logits.double(), dim=1), pre)
    _CACHE.append((weakref.ref(images), images._version, out))
    del _CACHE[:-_CACHE_SIZE]
    return out


def predicted_classes(images: torch.Tensor) -> torch.Tensor:
    """The classifier's most likely digit (N,) int64 for each image (from the shared cache)."""
    return classifier_outputs(images).log_probs.argmax(1)


def classifier_unavailable(device: str) -> Optional[str]:
    """Why the classifier-based metrics cannot run (its weights are missing), else None."""
    from ganbench.quality.classifier import WEIGHTS_PATH

    if not WEIGHTS_PATH.is_file():
        return f"classifier weights missing ({WEIGHTS_PATH}); run `ganbench classifier train`"
    return None
