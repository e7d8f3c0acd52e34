"""Sample-quality metrics for handwritten digits, measured with ganbench's own digit classifier.

Most metrics here look at images through :mod:`ganbench.quality.classifier`: ``fid-digits`` uses its
64-d penultimate features after the ReLU, ``prdc`` the same layer before the ReLU (see
:class:`Prdc` for why), ``is-digits`` and ``modes`` its softmax. ``memorisation`` works in pixel
space against the training images. Classifier outputs are computed once per image set, in
batches, and the last few sets are cached (see :func:`classifier_outputs`), so running all the
metrics on one (fake, real) pair embeds each set once, and the held-out set shared by every row
of a run once per run.

Numbers from these metrics are comparable only with numbers made with the same classifier
weights (``ganbench/assets/digit_classifier.json`` records their SHA-256), at the same image
size and at similar sample counts: FID in particular is biased upward at small N (Binkowski et
al. 2018, "Demystifying MMD GANs"), and resizing alone moves it (the classifier sees 28x28, so
32x32 and 64x64 digits reach it through different resampling). :func:`ganbench.quality.evaluate.evaluate`
tags every row with ``metric_n`` and ``metric_image_size`` for that reason. Compare against the
"real data" row (:func:`ganbench.quality.evaluate.real_reference_row`), scored the same way at the same N.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from ganbench.hookspecs import hookimpl
from ganbench.specs import Metric, MetricContext, MetricSpec

NUM_CLASSES = 10


# --------------------------------------------------------------------------------------------
# Shared feature extraction
# --------------------------------------------------------------------------------------------
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


def _classifier_unavailable(device: str) -> Optional[str]:
    from ganbench.quality.classifier import WEIGHTS_PATH  # cheap: the module's torch is loaded already

    if not WEIGHTS_PATH.is_file():
        return f"classifier weights missing ({WEIGHTS_PATH}); run `ganbench classifier train`"
    return None


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------
def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64, by eigh)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor,
                     mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982):

        d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))

    FID (Heusel et al. 2017) reports d^2 itself, and so does this function: a float >= 0 (up to
    round-off). The trace term needs no scipy ``sqrtm``: with s1 = sigma1^(1/2), sigma1 sigma2 =
    s1 (s1 sigma2) and A = (s1 sigma2) s1 have the same eigenvalues (XY and YX always do), so
    tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(A)). Both s1 and A are symmetric PSD, so both
    steps use ``eigh``, which is backward stable for symmetric matrices and returns real
    eigenvalues; the only negative ones are round-off of true zeros, clamped to 0. In float64 this
    avoids the spurious complex parts a general ``sqrtm`` of the non-symmetric product produces
    when the covariances are near-singular (as 64-d features from a few hundred samples are).
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    sigma1 = (sigma1 + sigma1.T) / 2   # symmetrise away round-off from the covariance estimate
    sigma2 = (sigma2 + sigma2.T) / 2
    s1 = _sqrt_psd(sigma1)
    middle = s1 @ sigma2 @ s1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def mean_and_covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = features.double()
    if len(x) < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {len(x)}")
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def frechet_distance_of_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    return frechet_distance(*mean_and_covariance(a), *mean_and_covariance(b))


# --------------------------------------------------------------------------------------------
# Inception-Score analogue
# --------------------------------------------------------------------------------------------
def inception_score(log_probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x) (Salimans et al. 2016).

    From log-probabilities (N, C). Ranges from 1 (every sample has the same class distribution)
    to C (confident and evenly spread over C classes): with a digit selection of K classes, a
    perfect generator scores about K. Computed over all N samples at once, not averaged over 10
    splits as the original does: splits only add small-sample noise at the N used here.
    """
    lp = log_probs.double()
    log_marginal = torch.logsumexp(lp, dim=0) - math.log(len(lp))  # log mean_x p(y|x)
    kl = (lp.exp() * (lp - log_marginal)).sum(1)                   # (N,)
    return float(kl.mean().exp())


# --------------------------------------------------------------------------------------------
# Precision, recall, density, coverage
# --------------------------------------------------------------------------------------------
PR_K = 3  # Kynkaanniemi et al. 2019 ("Improved Precision and Recall Metric ...") use k = 3
DC_K = 5  # Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics ...") recommend k = 5
CHUNK = 1024  # rows of a distance block: 1024 x 2000 float64 = 16 MB at a time


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (A, B), each pair computed directly as sqrt(sum (a - b)^2).

    Not cdist's default |a|^2 + |b|^2 - 2 a.b expansion: that loses digits to cancellation, and
    its round-off depends on the block, so a point lying exactly on a k-NN radius (a set scored
    against itself, duplicated samples) could fall in or out of a ball depending on chunking.
    """
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """Distance (N,) from each row of x (N, D) to its k-th nearest other row of x."""
    if len(x) <= k:
        raise ValueError(f"k-nearest neighbours with k={k} need more than {k} samples, "
                         f"got {len(x)}")
    radii = []
    for start in range(0, len(x), chunk):
        d = _distances(x[start:start + chunk], x)                # (c, N)
        # k + 1 smallest: the smallest is the point itself (distance 0).
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(real: torch.Tensor, fake: torch.Tensor, pr_k: int = PR_K, dc_k: int = DC_K,
         chunk: int = CHUNK) -> dict[str, float]:
    """Precision, recall (k = ``pr_k``), density, coverage (k = ``dc_k``) of feature sets.

    With B_k(x) the ball around x reaching its k-th nearest neighbour in its own set:
      precision = share of fake samples inside some real ball B_k(r)         (fidelity)
      recall    = share of real samples inside some fake ball B_k(f)         (diversity)
      density   = sum over fakes of the number of real balls B_k(r) holding it, / (k * M);
                  about 1 when fake matches real, above 1 when fakes crowd dense regions
      coverage  = share of real samples whose ball B_k(r) holds at least one fake
    Distances in float64 blocks of ``chunk`` rows, so memory stays O(chunk * N) however large
    the sets; one pass over the fake-by-real distances serves all four.
    """
    real, fake = real.double(), fake.double()
    r_pr, r_dc = knn_radii(real, pr_k, chunk), knn_radii(real, dc_k, chunk)
    f_pr = knn_radii(fake, pr_k, chunk)
    in_real_ball = 0                        # fakes inside some real pr-ball
    density_hits = 0                        # (fake, real dc-ball) containments
    recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), math.inf, dtype=torch.float64)
    for start in range(0, len(fake), chunk):
        d = _distances(fake[start:start + chunk], real)          # (c, N_real)
        in_real_ball += int((d <= r_pr).any(1).sum())
        density_hits += int((d <= r_dc).sum())
        recalled |= (d <= f_pr[start:start + chunk, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "prdc_precision": in_real_ball / len(fake),
        "prdc_recall": float(recalled.double().mean()),
        "prdc_density": density_hits / (dc_k * len(fake)),
        "prdc_coverage": float((nearest_fake <= r_dc).double().mean()),
    }


# --------------------------------------------------------------------------------------------
# Mode coverage
# --------------------------------------------------------------------------------------------
# A selected class is "covered" when the generator's share of samples *confidently* classified as
# that class is at least half the real set's share of it: with 7s and 8s at about 50% each, a
# generator must make at least ~25% confident 8s for the 8s to count. Why half: it is the point
# where the generator makes the class at half its real rate, i.e. has lost at least half of that
# mode, and it is far from sampling noise at the N ganbench uses: at N = 1001 and a real share of
# 0.5 the share of a perfect generator has a standard deviation of sqrt(0.25 / 1001) = 1.6
# percentage points, 15 of them from the threshold (all ten digits at 0.1 each: 0.95 points,
# 5 of them from the threshold); below about N = 100 per class the rule gets noisy. The rule it
# replaces (a share of 5% for two digits) counted a generator with 25% 8s against 49% real as
# covering both classes; so does this one, but only just, and 20% would not.
COVERED_SHARE_OF_REAL = 0.5
# "Confidently": the predicted class has softmax probability >= 0.5, a majority. Without it,
# images that look like no digit at all spread their argmax over many classes (uniform noise
# "covers" 8 of 10 digits); with it none passes, while 99.7% of real test digits pass (99% after
# a 5x5 blur).
MODE_MIN_CONFIDENCE = 0.5
# The class histograms behind modes_kl are smoothed with 0.5 pseudo-counts per class (the
# Jeffreys / Krichevsky-Trofimov estimator), so KL stays finite when the generator makes a class
# the real set never shows (classifier confusions, or digits outside the selection).
KL_PSEUDO_COUNT = 0.5


def class_histogram(predictions: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Counts (num_classes,) of the predicted classes, as float64."""
    return torch.bincount(predictions, minlength=num_classes).double()


def confident_shares(log_probs: torch.Tensor) -> torch.Tensor:
    """Share (10,) of all rows whose most likely class is c with probability >= 0.5."""
    confidence, prediction = log_probs.max(1)
    sure = confidence >= math.log(MODE_MIN_CONFIDENCE)
    return class_histogram(prediction[sure]) / max(len(log_probs), 1)


def mode_stats(fake_log_probs: torch.Tensor, real_log_probs: torch.Tensor,
               digits: tuple[int, ...]) -> dict[str, float]:
    """Mode coverage from classifier log-probabilities of fakes (N, 10) and reals (M, 10).

    ``digits`` is the selection (empty = all ten). Columns:
      ``modes_share_<d>`` for each selected digit d: share of all fakes classified as d with
      probability >= 0.5 (MODE_MIN_CONFIDENCE);
      ``modes_covered``: selected classes d with modes_share_d >= 0.5 (COVERED_SHARE_OF_REAL)
      times the real set's share of d, measured the same way (and at least one sample);
      ``modes_total``: K, the number of selected classes;
      ``modes_frac_0`` .. ``modes_frac_9``: share of fakes whose most likely class is c, however
      unsure (these sum to 1);
      ``modes_kl``: KL(generated || real) between those argmax class histograms, smoothed, over
      all ten classes (so making digits outside the selection costs too).
    Both sides use the classifier's predictions, not the real labels, so its confusions affect
    both alike.
    """
    selected = tuple(sorted(set(digits))) or tuple(range(NUM_CLASSES))
    fake_shares = confident_shares(fake_log_probs)
    real_shares = confident_shares(real_log_probs)
    one_sample = 1 / max(len(fake_log_probs), 1)
    covered = sum(1 for d in selected
                  if fake_shares[d] >= max(COVERED_SHARE_OF_REAL * real_shares[d], one_sample))

    fake_counts = class_histogram(fake_log_probs.argmax(1))
    real_counts = class_histogram(real_log_probs.argmax(1))
    p = (fake_counts + KL_PSEUDO_COUNT) / (fake_counts.sum() + KL_PSEUDO_COUNT * NUM_CLASSES)
    q = (real_counts + KL_PSEUDO_COUNT) / (real_counts.sum() + KL_PSEUDO_COUNT * NUM_CLASSES)
    row: dict[str, float] = {"modes_covered": covered, "modes_total": len(selected),
                             "modes_kl": float((p * (p / q).log()).sum())}
    row.update({f"modes_share_{d}": float(fake_shares[d]) for d in selected})
    fractions = fake_counts / max(len(fake_log_probs), 1)
    row.update({f"modes_frac_{c}": float(fractions[c]) for c in range(NUM_CLASSES)})
    return row


# --------------------------------------------------------------------------------------------
# Memorisation
# --------------------------------------------------------------------------------------------
# A sample counts as a near-copy when its nearest training image is closer than all but 1% of the
# held-out real digits ever get to theirs. The 1st percentile rather than the minimum: the
# minimum of N held-out distances is one outlier (on the embedded 7s and 8s at 32x32: minimum
# 4.0, 1st percentile 5.1, median 9.3 in [-1, 1] pixel units), and a generator that copies
# lands at 0, far below either.
MEMO_QUANTILE = 0.01


def nearest_distances(x: torch.Tensor, pool: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Euclidean distance (N,) from each image of x (N, ...) to its nearest image in pool.

    Pixel space, float64, flattened. cdist's matrix-multiply form (fast: a 1001 x 12,000 block
    of 32x32 images takes about a second on 2 cores) is accurate to ~1e-6 here, far below the
    distances compared (several units), and an exact copy still comes out at about 0.
    """
    x, pool = x.flatten(1).double(), pool.flatten(1).double()
    return torch.cat([torch.cdist(x[s:s + chunk], pool).min(1).values
                      for s in range(0, len(x), chunk)])


_MEMO_CACHE: list = []  # [(ref to real, real._version, ref to train, train._version, distances)]


def _heldout_to_train(real: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """nearest_distances(real, train), cached by identity: the same held-out half and training
    set serve every row of a run."""
    for ref_r, v_r, ref_t, v_t, out in _MEMO_CACHE:
        if ref_r() is real and ref_t() is train and real._version == v_r and train._version == v_t:
            return out
    out = nearest_distances(real, train)
    _MEMO_CACHE.append((weakref.ref(real), real._version, weakref.ref(train), train._version, out))
    del _MEMO_CACHE[:-2]
    return out


def memorisation(fake: torch.Tensor, real: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """Near-copies of the training images among ``fake``, judged against held-out ``real``.

    All three are images (N, 1, S, S) at the same S; distances are Euclidean in pixel space.
    With d(x) the distance from x to its nearest training image and t the MEMO_QUANTILE (1st
    percentile) of d over the held-out ``real`` images:
      ``memo_copy_share``: share of fakes with d(fake) < t. Held-out digits score about 0.01
      (by construction of t, up to sampling noise); a copy of the training set scores 1.
      ``memo_nn_ratio``: median d(fake) / median d(real). About 1 for new digits like the
      held-out ones, 0 for copies; well above 1 means the samples are far from every training
      digit (a fidelity problem that the other metrics measure better).
    """
    if not (fake.shape[1:] == real.shape[1:] == train.shape[1:]):
        raise ValueError(f"memorisation needs images of one shape; got fake {tuple(fake.shape)}, "
                         f"real {tuple(real.shape)}, train {tuple(train.shape)}")
    held = _heldout_to_train(real, train)
    threshold = torch.quantile(held, MEMO_QUANTILE)
    d = nearest_distances(fake, train)
    # quantile(0.5), not median(): torch's median is the lower middle value of an even count.
    return {"memo_copy_share": float((d < threshold).double().mean()),
            "memo_nn_ratio": float(torch.quantile(d, 0.5) / torch.quantile(held, 0.5))}


# --------------------------------------------------------------------------------------------
# The Metric objects
# --------------------------------------------------------------------------------------------
class FidDigits(Metric):
    """Frechet distance between classifier features of fake and real digits (``fid_digits``).

    Same formula as FID (Heusel et al. 2017) but in the 64-d feature space of ganbench's digit
    classifier, NOT Inception's 2048-d pool3: it is not comparable to Inception FID numbers
    from papers, only to other fid_digits values made with the same weights and sample count.
    """

    def compute(self, fake, real, context: MetricContext):
        return {"fid_digits": frechet_distance_of_features(
            classifier_outputs(fake).features, classifier_outputs(real).features)}


class IsDigits(Metric):
    """Inception-Score analogue from the classifier's softmax over the fakes (``is_digits``).

    Ignores ``real``; compare with the real-data row's value (about K for K selected digits).
    """

    def compute(self, fake, real, context: MetricContext):
        return {"is_digits": inception_score(classifier_outputs(fake).log_probs)}


def prdc_features(images: torch.Tensor) -> torch.Tensor:
    """The space PRDC measures in: the classifier's 64 penultimate units before their ReLU,
    each standardised by its mean and standard deviation over the embedded training digits
    (:func:`ganbench.quality.classifier.pre_activation_scale`; fixed, not the evaluated sets)."""
    from ganbench.quality.classifier import pre_activation_scale

    mean, std = pre_activation_scale()
    return (classifier_outputs(images).pre_activations - mean) / std


class Prdc(Metric):
    """Precision/recall (k=3) and density/coverage (k=5) in :func:`prdc_features`.

    Not on the post-ReLU features fid-digits uses: 19 of those 64 units are zero on every real
    held-out 7 and 8, and an image the network hardly responds to maps near the origin, inside
    the k-NN balls of real digits with small activations. Dropping the dead units changes
    nothing (a unit that is 0 for every image adds 0 to every distance); blank images differ
    from digits in *how negative* the units are, which only the pre-activations keep.
    Standardising then stops the few units with a wide range (standard deviations 0.47 to 16.4
    over the training digits) from deciding every distance. Precision measured in each space
    (real digits score 0.88-0.91 in all three):

      ==============================  =========  ===============  ============================
      set (against real digits)       post-ReLU  pre-activation   pre-activation, standardised
      ==============================  =========  ===============  ============================
      blank, held-out 7s/8s, N=1001   1.00       0.00             0.00
      uniform noise, 7s/8s, N=1001    0.78       0.00             0.00
      blank, all ten digits, N=500    0.00       0.00             0.00
      uniform noise, ten, N=500       0.99       0.14             0.00
      ==============================  =========  ===============  ============================

    A single real digit repeated keeps precision 1.00 in every space, rightly (it *is* a real
    digit); recall and coverage (about 0) are what flag it.
    """

    def compute(self, fake, real, context: MetricContext):
        return prdc(prdc_features(real), prdc_features(fake))


class Modes(Metric):
    """How many of the selected digit classes the generator produces, and in what shares."""

    def compute(self, fake, real, context: MetricContext):
        return mode_stats(classifier_outputs(fake).log_probs, classifier_outputs(real).log_probs,
                          tuple(context.digits))


class Memorisation(Metric):
    """Near-copies of training images (``memo_copy_share``, ``memo_nn_ratio``): see
    :func:`memorisation`. Needs ``context.train`` (the run's training images at the run's image
    size); without it both columns are NaN, never a guess."""

    def compute(self, fake, real, context: MetricContext):
        if context.train is None:
            return {"memo_copy_share": math.nan, "memo_nn_ratio": math.nan}
        train = context.train
        if train.device.type != "cpu" or train.requires_grad:  # else keep the object: cache key
            train = train.detach().cpu()
        return memorisation(fake, real, train)


# --------------------------------------------------------------------------------------------
# Optional: FID with Inception, from local weights only
# --------------------------------------------------------------------------------------------
INCEPTION_ENV = "GANBENCH_INCEPTION_WEIGHTS"  # path of torch-fidelity's pt_inception weights


def _inception_unavailable(device: str) -> Optional[str]:
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed"
    path = os.environ.get(INCEPTION_ENV)
    if not path:
        return f"set {INCEPTION_ENV} to a local Inception weights file (never downloaded)"
    if not os.path.isfile(path):
        return f"{INCEPTION_ENV}={path} is not a file"
    return None


class FidInception(Metric):
    """Standard FID on Inception-v3 pool3 features (``fid_inception``), via torch-fidelity.

    Uses only the weights file named by $GANBENCH_INCEPTION_WEIGHTS: passing a weights path to
    torch-fidelity's extractor stops it from fetching any. Digits are made 3-channel uint8, as
    torch-fidelity expects; it resizes them to 299x299 itself.
    """

    def __init__(self) -> None:
        reason = _inception_unavailable("cpu")
        if reason:
            raise RuntimeError(f"fid-inception is unavailable: {reason}")
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.extractor = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"],
            feature_extractor_weights_path=os.environ[INCEPTION_ENV]).eval()

    @torch.no_grad()
    def _features(self, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
        rgb = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
        return torch.cat([self.extractor(rgb[i:i + batch_size])[0]
                          for i in range(0, len(rgb), batch_size)])

    def compute(self, fake, real, context: MetricContext):
        return {"fid_inception": frechet_distance_of_features(self._features(fake),
                                                              self._features(real))}


@hookimpl
def ganbench_register_metrics(register):
    register(MetricSpec(name="fid-digits", factory=FidDigits,
                        summary="Frechet distance on digit-classifier features (not Inception FID)",
                        why_unavailable=_classifier_unavailable,
                        directions={"fid_digits": "lower"}, primary="fid_digits"))
    register(MetricSpec(name="is-digits", factory=IsDigits,
                        summary="Inception-Score analogue from the digit classifier's softmax",
                        why_unavailable=_classifier_unavailable,
                        # Higher is better only up to the real data's value: for a digit
                        # subset a higher IS than real means samples of other digits.
                        directions={"is_digits": "higher"}))
    register(MetricSpec(name="prdc", factory=Prdc,
                        summary="Precision/recall (k=3) and density/coverage (k=5) on "
                        "classifier features", why_unavailable=_classifier_unavailable,
                        directions={"prdc_*": "higher"}))
    register(MetricSpec(name="modes", factory=Modes,
                        summary="Digit classes produced, class shares and KL to the real shares",
                        why_unavailable=_classifier_unavailable,
                        # modes_share_<d> has no better direction: it is read against the real
                        # share, so compare leaves it out.
                        directions={"modes_covered": "higher", "modes_kl": "lower"}))
    register(MetricSpec(name="memorisation", factory=Memorisation,
                        summary="Share of samples nearer a training image than held-out digits "
                        "ever are (pixel space)",
                        # memo_nn_ratio is best near 1 (not lower, not higher): not compared.
                        directions={"memo_copy_share": "lower"}))
    register(MetricSpec(name="fid-inception", factory=FidInception,
                        summary="Inception FID via torch-fidelity, from local weights only",
                        why_unavailable=_inception_unavailable,
                        directions={"fid_inception": "lower"}))
