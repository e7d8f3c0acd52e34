"""Sample-quality metrics for handwritten digits, measured with ganbench's own digit classifier.

Most metrics here look at images through :mod:`ganbench.quality.classifier`: ``fid-digits`` and
``kid-digits`` (:mod:`ganbench.plugins.kid`) use its 64-d penultimate features after the ReLU,
``prdc`` the same layer before the ReLU (see :class:`Prdc` for why), ``is-digits`` and ``modes``
its softmax. ``memorisation`` (:mod:`ganbench.plugins.memorisation`) works in pixel space against
the training images, with the classifier's class of each image. Classifier outputs are computed
once per image set and cached (:func:`ganbench.quality.features.classifier_outputs`), so running
all the metrics on one (fake, real) pair embeds each set once, and the held-out set shared by
every row of a run once per run. This module registers all of them.

Numbers from these metrics are comparable only with numbers made with the same classifier
weights (``ganbench/assets/digit_classifier.json`` records their SHA-256), at the same image
size and (for FID) at similar sample counts: FID is biased upward at small N (Binkowski et
al. 2018, "Demystifying MMD GANs"; KID is not), and resizing alone moves it (the classifier
sees 28x28, so 32x32 and 64x64 digits reach it through different resampling).
:func:`ganbench.quality.evaluate.evaluate` tags every row with ``metric_n`` and
``metric_image_size`` for that reason. Compare against the "real data" row
(:func:`ganbench.quality.evaluate.real_reference_row`), scored the same way at the same N.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

from ganbench.hookspecs import hookimpl
from ganbench.plugins.kid import KidDigits
from ganbench.plugins.memorisation import Memorisation
from ganbench.quality.evaluate import TooFewSamplesError
from ganbench.quality.features import (ClassifierOutputs, classifier_outputs,  # noqa: F401
                                       classifier_unavailable)
from ganbench.specs import Metric, MetricContext, MetricSpec

NUM_CLASSES = 10


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
        raise TooFewSamplesError(f"a covariance (fid-digits) needs at least 2 samples, got "
                                 f"{len(x)}")
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
        raise TooFewSamplesError(f"k-nearest neighbours with k={k} (prdc) need more than {k} "
                                 f"samples, got {len(x)}")
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
    # Directions: "closer" marks the two-sided metrics, judged by their distance to the real
    # row (results/quality-metric-check: one real digit repeated keeps precision 1.00 and
    # density 1.00 against the real row's 0.90 and 0.98; ten digits for a 7s-and-8s run give
    # a higher IS than the real 2.15). Recall, coverage and modes_covered cannot overshoot
    # the real data in a useful way, so higher stays better for them.
    register(MetricSpec(name="fid-digits", factory=FidDigits,
                        summary="Frechet distance on digit-classifier features (not Inception FID)",
                        why_unavailable=classifier_unavailable,
                        directions={"fid_digits": "lower"},
                        columns={"fid_digits": {"format": "sig4"}},
                        primary="fid_digits"))
    register(MetricSpec(name="kid-digits", factory=KidDigits,
                        summary="Kernel (MMD^2) distance on digit-classifier features, unbiased "
                        "at any N, with its SD",
                        why_unavailable=classifier_unavailable,
                        # kid_digits_sd is the number's uncertainty: no better direction.
                        directions={"kid_digits": "lower"},
                        columns={"kid_digits": {"label": "KID", "format": "sig3"},
                                 "kid_digits_sd": {"label": "KID sd", "format": "sig2",
                                                   "visible": False}}))
    register(MetricSpec(name="is-digits", factory=IsDigits,
                        summary="Inception-Score analogue from the digit classifier's softmax",
                        why_unavailable=classifier_unavailable,
                        # above the real data's value means samples of unselected digits
                        directions={"is_digits": "closer"},
                        columns={"is_digits": {"format": "sig3"}}))
    register(MetricSpec(name="prdc", factory=Prdc,
                        summary="Precision/recall (k=3) and density/coverage (k=5) on "
                        "classifier features", why_unavailable=classifier_unavailable,
                        directions={"prdc_precision": "closer", "prdc_density": "closer",
                                    "prdc_recall": "higher", "prdc_coverage": "higher"},
                        columns={"prdc_*": {"label": "{0}", "format": "sig3"},
                                 "prdc_density": {"visible": False},
                                 "prdc_coverage": {"visible": False}}))
    register(MetricSpec(name="modes", factory=Modes,
                        summary="Digit classes produced, class shares and KL to the real shares",
                        why_unavailable=classifier_unavailable,
                        # a class share is read against the real share: closer is better
                        directions={"modes_covered": "higher", "modes_kl": "lower",
                                    "modes_share_*": "closer", "modes_frac_*": "closer"},
                        columns={"modes_covered": {"label": "modes", "format": "int"},
                                 "modes_kl": {"format": "sig3", "visible": False},
                                 "modes_total": {"format": "int", "visible": False},
                                 # confident share of samples read as digit {0}
                                 "modes_share_*": {"label": "{0}s share", "format": "fixed2"},
                                 # share whose likeliest class is {0}; the table shows the
                                 # confident shares instead
                                 "modes_frac_*": {"label": "{0}s argmax", "format": "fixed2",
                                                  "visible": False}}))
    register(MetricSpec(name="memorisation", factory=Memorisation,
                        summary="Near-copies of training digits (2-px shifts allowed, per-class "
                        "thresholds from held-out digits)",
                        why_unavailable=classifier_unavailable,
                        # memo_nn_ratio is about 1 for new digits (the real row's value), 0 for
                        # copies and above 1 for samples far from every digit: closer is better.
                        directions={"memo_copy_share": "lower", "memo_nn_ratio": "closer"},
                        columns={"memo_copy_share": {"label": "copied", "format": "fixed3"},
                                 "memo_nn_ratio": {"label": "nn ratio", "format": "sig3",
                                                   "visible": False}}))
    register(MetricSpec(name="fid-inception", factory=FidInception,
                        summary="Inception FID via torch-fidelity, from local weights only",
                        why_unavailable=_inception_unavailable,
                        directions={"fid_inception": "lower"},
                        columns={"fid_inception": {"format": "sig4"}}))
