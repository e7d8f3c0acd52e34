"""memorisation: the shift-tolerant distance against a brute-force search, per-class thresholds
on hand-made numbers, and on real digits: shifted copies caught, held-out single classes not
flagged."""

import functools

import numpy as np
import pytest
import torch

import ganbench.plugins.memorisation as MM
from ganbench import data


def _moved(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (N, 1, S, S) in [-1, 1] moved dy down and dx right, background (-1) filling in: written
    independently of the module (explicit slices, no unfold)."""
    out = torch.full_like(x, -1.0)
    s = x.shape[-1]
    out[..., max(dy, 0):s + min(dy, 0), max(dx, 0):s + min(dx, 0)] = \
        x[..., max(-dy, 0):s + min(-dy, 0), max(-dx, 0):s + min(-dx, 0)]
    return out


def _brute_force(x, pool, shift=MM.SHIFT_PX):
    """min over all pool images and all shifts of the sample, each distance a direct float64
    sum of squared differences."""
    best = torch.full((len(x),), float("inf"), dtype=torch.float64)
    flat_pool = pool.flatten(1).double()
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            moved = _moved(x, dy, dx).flatten(1).double()
            d = torch.cdist(moved, flat_pool, compute_mode="donot_use_mm_for_euclid_dist")
            best = torch.minimum(best, d.min(1).values)
    return best


@functools.lru_cache(maxsize=None)
def _sevens_and_eights(size: int = 32):
    """(train, train_labels, heldout, heldout_labels) of the embedded 7s and 8s."""
    mnist = data.load_embedded()
    tr = np.isin(mnist.train_labels, (7, 8))
    te = np.isin(mnist.test_labels, (7, 8))
    return (data.prepare(mnist.train_images[tr], size), torch.from_numpy(mnist.train_labels[tr]),
            data.prepare(mnist.test_images[te], size), torch.from_numpy(mnist.test_labels[te]))


def test_exhaustive_search_matches_brute_force_on_random_images():
    """candidates = M: every pool image is measured at every shift, so the result is exactly
    the brute-force minimum, screen or no screen (random images, where a screen is weakest)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 16, 16, generator=g) * 2 - 1
    pool = torch.rand(9, 1, 16, 16, generator=g) * 2 - 1
    got = MM.nearest_distances(x, pool, candidates=len(pool))
    torch.testing.assert_close(got, _brute_force(x, pool), rtol=1e-6, atol=1e-6)
    plain = torch.cdist(x.flatten(1).double(), pool.flatten(1).double()).min(1).values
    torch.testing.assert_close(MM.nearest_distances(x, pool, shift=0, candidates=9), plain,
                               rtol=1e-6, atol=1e-6)


def test_the_screen_finds_the_true_nearest_digit():
    """The default search (screen at 16 x 16 block means, 16 candidates) returns the
    brute-force minimum for real held-out digits against 300 training digits at 32 x 32."""
    train, _, heldout, _ = _sevens_and_eights()
    x, pool = heldout[:30], train[:300]
    torch.testing.assert_close(MM.nearest_distances(x, pool), _brute_force(x, pool),
                               rtol=1e-6, atol=1e-6)


def test_whole_pixel_shifts_within_range_are_exact_copies():
    """Digits with no ink in their outer 3 pixels (so nothing leaves the frame) moved by up to
    2 px are at distance exactly 0 from their source; moved by 3 px they are not."""
    train, _, _, _ = _sevens_and_eights()
    pool = train[:200]
    ink = pool[:, 0] + 1
    inner = torch.zeros_like(ink, dtype=torch.bool)
    inner[:, 3:-3, 3:-3] = True
    framed = pool[(ink * ~inner).sum((1, 2)) == 0][:30]
    assert len(framed) == 30
    for dy, dx in [(1, 0), (0, -1), (-2, 2), (2, -1)]:
        assert MM.nearest_distances(_moved(framed, dy, dx), pool).max() == 0.0, (dy, dx)
    assert MM.nearest_distances(_moved(framed, 3, 0), pool).min() > 1.0


def test_class_thresholds_and_nn_ratio_by_hand(monkeypatch):
    """Held-out distances: class 7 at 1..100, class 8 at 101..200 (100 each), class 3 with ten
    digits at 150 (fewer than MIN_CLASS_HELDOUT: it uses the pooled levels). 1st percentiles by
    linear interpolation: 7 -> 1 + 0.99 = 1.99, 8 -> 101.99; pooled over all 210 sorted values
    (1..149, then 150 eleven times, 151..200): position 0.01 * 209 = 2.09 -> 3.09. Medians:
    7 -> 50.5, 8 -> 150.5, pooled: position 104.5 -> (105 + 106) / 2 = 105.5."""
    held = torch.cat([torch.arange(1.0, 101.0), torch.arange(101.0, 201.0),
                      torch.full((10,), 150.0)]).double()
    held_classes = torch.tensor([7] * 100 + [8] * 100 + [3] * 10)
    levels, pooled = MM.class_levels(held, held_classes, MM.MEMO_QUANTILE)
    assert levels == pytest.approx({7: 1.99, 8: 101.99}) and 3 not in levels
    assert pooled == pytest.approx(3.09)
    medians, pooled_median = MM.class_levels(held, held_classes, 0.5)
    assert medians == pytest.approx({7: 50.5, 8: 150.5}) and pooled_median == 105.5
    # Fakes: a 7 at 1.5 (under 1.99: a copy), a 7 at 5 (not), an 8 at 50 (under 101.99: a
    # copy, though the pooled 3.09 would pass it), a 3 at 2.5 (under the pooled 3.09: a copy)
    # and a 3 at 4 (not).
    fake_d = torch.tensor([1.5, 5.0, 50.0, 2.5, 4.0], dtype=torch.float64)
    monkeypatch.setattr(MM, "nearest_distances", lambda x, pool: fake_d)
    dummy = torch.zeros(5, 1, 2, 2)
    row = MM.memorisation(dummy, torch.zeros(210, 1, 2, 2), dummy,
                          torch.tensor([7, 7, 8, 3, 3]), held_classes, held=held)
    assert row["memo_copy_share"] == pytest.approx(3 / 5)
    # Each d over its class's median; the median of five ratios is the third smallest:
    # 1.5/50.5 = 0.0297, 2.5/105.5 = 0.0237, 4/105.5 = 0.0379, 5/50.5 = 0.099, 50/150.5 = 0.332.
    assert row["memo_nn_ratio"] == pytest.approx(4 / 105.5)


def test_memorisation_needs_one_image_shape():
    with pytest.raises(ValueError, match="one shape"):
        MM.memorisation(torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 5, 5), torch.zeros(3, 1, 4, 4),
                        torch.zeros(3), torch.zeros(3))


def _score(fake, real, train, held):
    from ganbench.quality.features import predicted_classes

    return MM.memorisation(fake, real, train, predicted_classes(fake), predicted_classes(real),
                           held=held)


def test_shifted_copies_are_caught_and_held_out_single_classes_are_not():
    """Training 7s and 8s moved by 1 px, half of a set: about half flagged (the issue's plain
    pixel distance flagged 1.3%). Held-out 7s alone, and 8s alone, never trained on: about 1%
    each (per-class thresholds; the pooled one flagged 4% of 7s)."""
    train, _, heldout, heldout_labels = _sevens_and_eights()
    real = heldout[:400]                               # about 200 of each class: own thresholds
    fresh, fresh_labels = heldout[400:], heldout_labels[400:]
    held = MM.nearest_distances(real, train)
    half = torch.cat([_moved(train[:100], 0, 1), fresh[:100]])
    assert 0.45 <= _score(half, real, train, held)["memo_copy_share"] <= 0.57
    moved = _score(_moved(train[200:300], 1, 0), real, train, held)
    assert moved["memo_copy_share"] == 1.0 and moved["memo_nn_ratio"] == 0.0
    for digit in (7, 8):
        alone = fresh[fresh_labels == digit][:200]
        row = _score(alone, real, train, held)
        assert row["memo_copy_share"] <= 0.03, digit
        assert 0.85 < row["memo_nn_ratio"] < 1.15, digit
