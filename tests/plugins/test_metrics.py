"""The digit-quality metrics: the math against closed forms and brute force, then the metrics on
real digits, noise and a mode-collapsed "generator" (real 7s scored against 7s and 8s)."""

import functools
import json
import math

import pytest
import torch

import ganbench.plugins.metrics as M
from ganbench import data
from ganbench.errors import UserError
from ganbench.quality import evaluate as quality
from ganbench.quality.evaluate import TooFewSamplesError
from ganbench.registry import Registry
from ganbench.specs import MetricContext


def _registry() -> Registry:
    """A registry holding only this plugin's metrics (independent of the other built-ins)."""
    registry = Registry()
    M.ganbench_register_metrics(lambda spec: registry.add("metric", spec, "built-in"))
    return registry


@functools.lru_cache(maxsize=None)
def _test_digits(size: int = 32):
    """The 10k MNIST test digits at ``size`` (prepared as a GAN's real data would be)."""
    mnist = data.load_embedded()
    return data.prepare(mnist.test_images, size), torch.from_numpy(mnist.test_labels)


def _random_spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


# ------------------------------------------------------------------------------ Frechet distance
def test_frechet_distance_of_identical_gaussians_is_zero():
    mu, sigma = torch.randn(16, dtype=torch.float64), _random_spd(16, seed=0)
    assert abs(M.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * float(sigma.trace())


def test_frechet_distance_matches_the_2x2_closed_form():
    """Non-commuting covariances. For 2x2 M with eigenvalues l1, l2 >= 0,
    tr(M^1/2) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)); here M = S1 S2 with
    S1 = [[2,1],[1,2]], S2 = diag(1,3): tr M = 2 + 6 = 8, det M = 3 * 3 = 9, so
    tr(M^1/2) = sqrt(14) and d^2 = |(1,2)|^2 + tr S1 + tr S2 - 2 sqrt(14) = 13 - 2 sqrt(14)."""
    s1 = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    s2 = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    mu1, mu2 = torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(13 - 2 * math.sqrt(14), abs=1e-12)
    assert M.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(13 - 2 * math.sqrt(14), abs=1e-12)


def test_frechet_distance_of_singular_covariances():
    """Rank-deficient covariances (as real features often are): diag(1,0) vs diag(0,1) have
    S1 S2 = 0, so d^2 = 1 + 1 - 0 = 2; clamping round-off eigenvalues must not produce NaN."""
    s1 = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    s2 = torch.diag(torch.tensor([0.0, 1.0], dtype=torch.float64))
    zero = torch.zeros(2, dtype=torch.float64)
    assert M.frechet_distance(zero, s1, zero, s2) == pytest.approx(2.0, abs=1e-12)


def test_frechet_distance_of_sampled_features_approaches_the_formula():
    """Isotropic Gaussians N(0, I) and N(m, 4I) in 8-d: d^2 = |m|^2 + 8 (1 - 2)^2 = |m|^2 + 8."""
    g = torch.Generator().manual_seed(1)
    m = torch.full((8,), 0.5, dtype=torch.float64)
    a = torch.randn(20000, 8, generator=g, dtype=torch.float64)
    b = m + 2 * torch.randn(20000, 8, generator=g, dtype=torch.float64)
    assert M.frechet_distance_of_features(a, b) == pytest.approx(float(m @ m) + 8, rel=0.05)


# ------------------------------------------------------------------------------ Inception Score
def test_inception_score_bounds():
    one_hot = torch.eye(4).repeat(25, 1)  # 100 confident samples spread evenly over 4 classes
    assert M.inception_score(torch.log(one_hot.clamp(min=1e-30))) == pytest.approx(4.0, rel=1e-6)
    same = torch.log_softmax(torch.randn(1, 10).repeat(50, 1), dim=1)  # one distribution for all
    assert M.inception_score(same) == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------------------ PRDC
def _prdc_brute_force(real, fake, pr_k, dc_k):
    """The definitions, written out with full distance matrices (no chunks, no shortcuts)."""
    dist = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1).sqrt()  # noqa: E731
    d_rr, d_ff, d_fr = dist(real, real), dist(fake, fake), dist(fake, real)
    radius = lambda d, k: d.sort(dim=1).values[:, k]  # noqa: E731  (column 0 is the point itself)
    r_pr, r_dc, f_pr = radius(d_rr, pr_k), radius(d_rr, dc_k), radius(d_ff, pr_k)
    precision = sum(any(d_fr[i, j] <= r_pr[j] for j in range(len(real)))
                    for i in range(len(fake))) / len(fake)
    recall = sum(any(d_fr[i, j] <= f_pr[i] for i in range(len(fake)))
                 for j in range(len(real))) / len(real)
    density = sum(int(d_fr[i, j] <= r_dc[j]) for i in range(len(fake))
                  for j in range(len(real))) / (dc_k * len(fake))
    coverage = sum(bool(d_fr[:, j].min() <= r_dc[j]) for j in range(len(real))) / len(real)
    return {"prdc_precision": precision, "prdc_recall": recall, "prdc_density": density,
            "prdc_coverage": coverage}


def test_prdc_matches_brute_force_and_chunking_changes_nothing():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(60, 5, generator=g, dtype=torch.float64)
    fake = 0.7 * torch.randn(45, 5, generator=g, dtype=torch.float64) + 0.5
    expected = _prdc_brute_force(real, fake, M.PR_K, M.DC_K)
    for chunk in (7, 1024):
        got = M.prdc(real, fake, chunk=chunk)
        assert got == pytest.approx(expected, abs=1e-12), chunk


def test_prdc_of_a_set_against_itself():
    """Each point lies in its own ball and its k neighbours' balls: density is (k + 1) / k."""
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = M.prdc(x, x)
    assert got["prdc_precision"] == got["prdc_recall"] == got["prdc_coverage"] == 1.0
    assert got["prdc_density"] == pytest.approx((M.DC_K + 1) / M.DC_K)


def test_prdc_of_far_apart_sets_is_zero():
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(4))
    assert set(M.prdc(x, x + 100).values()) == {0.0}


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(TooFewSamplesError, match=r"more than 5 samples.*got 5"):
        M.prdc(torch.randn(5, 3), torch.randn(10, 3))
    with pytest.raises(UserError, match="fid-digits"):  # a user error: one line, exit 2
        M.frechet_distance_of_features(torch.randn(1, 3), torch.randn(10, 3))


# ------------------------------------------------------------------------------ modes
def _confident(labels: list[int]) -> torch.Tensor:
    """Log-probabilities (N, 10) putting 0.99 on each given label."""
    logp = torch.full((len(labels), 10), math.log(0.01 / 9))
    logp[torch.arange(len(labels)), torch.tensor(labels)] = math.log(0.99)
    return logp


def test_mode_stats_counts_only_confident_classes_above_the_threshold():
    n = 1000
    logp = _confident([7] * 950 + [8] * 40 + [3] * 10)  # 8: 4% < half of the real 50%
    real = _confident([7, 8] * (n // 2))
    row = M.mode_stats(logp, real, (7, 8))
    assert (row["modes_covered"], row["modes_total"]) == (1, 2)
    assert (row["modes_share_7"], row["modes_share_8"]) == (0.95, 0.04)
    assert "modes_share_3" not in row  # shares are reported for the selected digits only
    assert row["modes_frac_7"] == 0.95 and row["modes_frac_3"] == 0.01
    assert sum(row[f"modes_frac_{c}"] for c in range(10)) == pytest.approx(1.0)
    assert row["modes_kl"] > 0.5  # ~ 0.95 log(0.95 / 0.5): most mass where real has half
    unsure = torch.log_softmax(torch.zeros(n, 10), dim=1)  # every class at 0.1: no confidence
    assert M.mode_stats(unsure, real, ())["modes_covered"] == 0


def test_a_class_is_covered_from_half_its_real_share():
    """COVERED_SHARE_OF_REAL = 0.5: with 60% real 7s and 40% real 8s, 8s count from a 20% share,
    7s from 30%. The old rule (5% for two digits) counted 6% 8s as covered."""
    real = _confident([7] * 600 + [8] * 400)
    at = M.mode_stats(_confident([7] * 800 + [8] * 200), real, (7, 8))
    below = M.mode_stats(_confident([7] * 801 + [8] * 199), real, (7, 8))
    assert (at["modes_covered"], below["modes_covered"]) == (2, 1)
    sevens_short = M.mode_stats(_confident([7] * 299 + [8] * 701), real, (7, 8))
    assert sevens_short["modes_covered"] == 1
    assert M.mode_stats(_confident([7] * 940 + [8] * 60), real, (7, 8))["modes_covered"] == 1
    # Unsure samples do not count toward a share, even when their argmax is the class.
    unsure8 = torch.log_softmax(torch.zeros(300, 10), dim=1)
    unsure8[:, 8] += 1.0  # argmax 8, but p(8) = e / (e + 9) = 0.23 < 0.5
    mixed = torch.cat([_confident([7] * 700), unsure8])
    row = M.mode_stats(mixed, real, (7, 8))
    assert row["modes_frac_8"] == 0.3 and row["modes_share_8"] == 0.0
    assert row["modes_covered"] == 1
    # A class the real set lacks still needs at least one confident sample.
    assert M.mode_stats(_confident([7] * 10), _confident([7] * 10), (7, 8))["modes_covered"] == 1


# ------------------------------------------------------------------------------ on digits
N = 500


def _context(digits=()):
    return MetricContext(digits=tuple(digits), image_size=32, device="cpu")


@pytest.fixture(scope="module")
def real_row():
    images, labels = _test_digits()
    row, n = quality.real_reference_row(images, labels, N, _context(), _registry())
    assert n == N
    return row


@pytest.fixture(scope="module")
def noise_row():
    images, _ = _test_digits()
    noise = torch.rand(N, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    return quality.evaluate(quality.DEFAULT_METRICS, noise, images[:N], _context(), _registry())


def test_real_vs_real_is_near_the_floor(real_row, noise_row):
    assert (real_row["metric_n"], real_row["metric_image_size"]) == (N, 32)
    assert all(0.07 < real_row[f"modes_share_{d}"] < 0.13 for d in range(10))
    # Finite-sample FID is not 0 (about 8 at N=500 here) but tiny next to noise (about 1000).
    assert real_row["fid_digits"] < 0.05 * noise_row["fid_digits"]
    for column in ("prdc_precision", "prdc_recall", "prdc_coverage"):
        assert real_row[column] > 0.8, column
    assert 0.8 < real_row["prdc_density"] < 1.2
    assert (real_row["modes_covered"], real_row["modes_total"]) == (10, 10)
    assert real_row["modes_kl"] < 0.05
    assert real_row["is_digits"] > 9  # ten confident, evenly spread classes: close to 10


def test_noise_scores_badly(noise_row):
    assert noise_row["fid_digits"] > 100
    assert noise_row["prdc_precision"] < 0.05
    assert noise_row["prdc_coverage"] < 0.05
    assert noise_row["modes_covered"] == 0
    assert noise_row["is_digits"] < 2


def test_only_sevens_covers_one_mode_of_two(real_row):
    images, labels = _test_digits()
    sevens_eights = (labels == 7) | (labels == 8)
    heldout, heldout_labels = images[sevens_eights], labels[sevens_eights]
    context = _context((7, 8))
    real78, _ = quality.real_reference_row(heldout, heldout_labels, N, context, _registry())
    fake = images[labels == 7][-N:]  # real 7s: perfect fidelity, half the modes
    row = quality.evaluate(quality.DEFAULT_METRICS, fake, heldout[:N], context, _registry())
    assert (row["modes_covered"], row["modes_total"]) == (1, 2)
    assert (real78["modes_covered"], real78["modes_total"]) == (2, 2)
    assert row["prdc_recall"] < real78["prdc_recall"] - 0.2
    assert row["prdc_coverage"] < real78["prdc_coverage"] - 0.2
    assert row["modes_kl"] > 0.5 > real78["modes_kl"]  # ~log 2 for all 7s against half 7s
    assert row["fid_digits"] > 10 * real78["fid_digits"]


# ------------------------------------------------------------------------------ bad sets
@pytest.fixture(scope="module")
def bad_sets():
    """Real test digits and sets a metric must not mistake for them (N each, 32x32)."""
    images, _ = _test_digits()
    stand_in, real = images[:N], images[N:2 * N]
    gen = torch.Generator().manual_seed(11)
    return real, {
        "real": stand_in,
        "blank": torch.full_like(stand_in, -1.0),                      # black background only
        "constant grey": torch.zeros_like(stand_in),                    # every pixel mid-grey
        "uniform noise": torch.rand(stand_in.shape, generator=gen) * 2 - 1,
        "one digit": stand_in[:1].repeat(N, 1, 1, 1),                   # a real digit, N times
    }


def test_prdc_precision_punishes_blank_constant_and_noise(bad_sets):
    real, sets = bad_sets
    context = _context()
    rows = {name: quality.evaluate(["prdc"], x, real, context, _registry())
            for name, x in sets.items()}
    assert rows["real"]["prdc_precision"] > 0.8
    for name in ("blank", "constant grey", "uniform noise"):
        assert rows[name]["prdc_precision"] < 0.05, name
        assert rows[name]["prdc_density"] < 0.05, name
    # One real digit repeated is faithful (precision stays high, as it should: it IS a real
    # digit), but it has no diversity: recall and coverage collapse.
    one = rows["one digit"]
    assert one["prdc_recall"] < 0.05 and one["prdc_coverage"] < 0.05
    # Why not the post-ReLU features: there blank images and noise sit inside real digits'
    # k-NN balls. And why standardised: raw pre-activations let some noise in (0.14 measured).
    post, raw = ({name: M.prdc(view(real), view(sets[name]))["prdc_precision"]
                  for name in ("blank", "uniform noise")}
                 for view in (lambda x: M.classifier_outputs(x).features,
                              lambda x: M.classifier_outputs(x).pre_activations))
    assert post["uniform noise"] > 0.9   # (blank gets 0.00 here, 1.00 on 7s and 8s alone)
    assert raw["blank"] < 0.05 and raw["uniform noise"] > 0.05


def test_the_shipped_scale_is_the_training_digits_scale():
    """The recorded per-unit mean and std are what the shipped weights give on the embedded
    training digits (recomputed here), and belong to exactly those weights."""
    from ganbench.quality import classifier

    mean, std = classifier.pre_activation_scale()
    record = json.loads(classifier.SCALE_PATH.read_text())
    assert record["weights_sha256"] == classifier.sha256_of(classifier.WEIGHTS_PATH)
    fresh_mean, fresh_std = classifier.scale_of(classifier.load_classifier(),
                                                classifier._scale_digits())
    torch.testing.assert_close(mean, fresh_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, fresh_std, atol=1e-5, rtol=1e-5)
    assert (std > 0.1).all()  # no dead unit before the ReLU: every one can be standardised


def test_directions_declare_two_sided_columns_closer():
    """Precision, density, IS and class shares can be wrong both ways: closer to real is
    better. Recall and coverage only fall short; KID and FID only grow."""
    ways = {pattern: way for spec in _registry().metrics.values()
            for pattern, way in spec.directions}
    assert {ways[c] for c in ("prdc_precision", "prdc_density", "is_digits",
                              "modes_share_*")} == {"closer"}
    assert ways["prdc_recall"] == ways["prdc_coverage"] == ways["modes_covered"] == "higher"
    assert ways["kid_digits"] == ways["fid_digits"] == ways["memo_copy_share"] == "lower"
    assert "kid_digits_sd" not in ways and ways["memo_nn_ratio"] == "closer"


def test_features_are_cached_per_tensor_until_modified():
    x = _test_digits()[0][:64].clone()
    first = M.classifier_outputs(x)
    assert M.classifier_outputs(x) is first
    x.mul_(-1)  # in place: the version counter changes, so the cache must not answer
    assert M.classifier_outputs(x) is not first


# ------------------------------------------------------------------------------ fid-inception
def test_fid_inception_never_pretends(monkeypatch, tmp_path):
    spec = _registry().metrics["fid-inception"]
    monkeypatch.delenv(M.INCEPTION_ENV, raising=False)
    assert isinstance(spec.why_unavailable("cpu"), str)
    monkeypatch.setenv(M.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    assert isinstance(spec.why_unavailable("cpu"), str)
