"""The memorisation metric: near-copies of training digits, small translations included.

Registered by :mod:`ganbench.plugins.metrics` (``memorisation``). Two things make it hard to
fool, both measured on the embedded 7s and 8s at 32x32 (N = 1001; results/metric-adversarial-sets):

* **Translations.** The distance from a sample to a training image is the smallest Euclidean
  pixel distance over every whole-pixel shift of the sample by up to SHIFT_PX = 2 pixels in each
  direction (25 shifts; what leaves the frame is dropped, background fills in). A plain pixel
  distance let training digits moved by one pixel pass as new: it moves a digit further from its
  source than the held-out digits' 1st-percentile threshold (copy share 0.002 for a fully
  shifted training set, issue 20).
* **Class mix.** Thresholds are per class: a sample of class c (the shipped classifier's most
  likely digit) is a near-copy when it is closer to a training image than all but 1% of the
  held-out digits *of class c* are. A pooled threshold is set by the class whose digits lie
  closest to their training neighbours: held-out 7s alone scored 0.040 under the pooled
  7s-and-8s threshold, 8s alone 0.000, so a generator making only 7s looked like a copier
  (per class: 0.014 and 0.008).

Cost: 25 shifts make an exhaustive search 25 times a plain nearest-neighbour search. It is done
in two steps. A screen scores every (shift, training image) pair in one matrix product (bf16
where the CPU has it natively, else float32) on f x f block means (16 x 16 blocks; f = 2 at
32x32, so a quarter of the pixels), and keeps each sample's CANDIDATES = 16 training images
whose best shift screens best. Those are then measured exactly over all 25 shifts, the best
pair's distance as a float64 sum of squared pixel differences. The screen only chooses whom to measure: every distance reported is exact for
some (shift, training image) pair, so never below the true minimum, and it is the minimum
whenever the nearest training image survives the screen. On the 1001 held-out 7s and 8s at
32x32 against all 2000 training 7s and 8s it did for every digit (largest difference to a
float64 search of all 50 million pairs: 1.3e-13); tests/plugins/test_memorisation.py checks
the same on a smaller set. Time: see :data:`MAX_CHUNK` and results/metric-adversarial-sets.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F

from ganbench.specs import Metric, MetricContext

SHIFT_PX = 2         # whole-pixel shifts tried in each direction: (2 * 2 + 1)^2 = 25 of them
CANDIDATES = 16      # (shift, training image) pairs per sample measured exactly
# Samples screened at a time: as many as keep the screen's (samples * 25) x M block of scores
# near 2^24 entries (64 MB of float32), at most 256 (fewer, larger products ran faster: 0.6 s of CPU
# time at 256 against 1.2 s at 64, N = 1001 against 2000 training images, loaded VM).
SCREEN_ENTRIES = 1 << 24
MAX_CHUNK = 256
# A sample counts as a near-copy when its nearest training image is closer than all but 1% of
# the held-out digits of its class get to theirs. The 1st percentile rather than the minimum:
# the minimum of N held-out distances is one outlier (on the embedded 7s and 8s at 32x32, plain
# pixel distance: minimum 4.0, 1st percentile 5.1, median 9.3 in [-1, 1] pixel units), and a
# generator that copies lands at 0, far below either.
MEMO_QUANTILE = 0.01
# A class needs this many held-out digits for its own threshold; with fewer (a class outside the
# selection, or N = 500 over ten digits) the pooled threshold of all held-out digits is used.
# At 50 the 1st percentile interpolates between the two smallest distances, so a new digit of
# that class falls under it about 1.5 / 51 = 3% of the time; with fewer it is the minimum alone.
MIN_CLASS_HELDOUT = 50


def _screen_dtype() -> torch.dtype:
    """bfloat16 for the screen's product where the CPU has native bf16 (the screen only ranks
    candidates; on the 1001 held-out 7s and 8s and 400 digits of all ten classes it chose the
    same nearest digits as float32, in 0.8-1.0 s of CPU time against 0.9-1.5 s, loaded VM);
    float32 elsewhere, where oneDNN emulates bf16 more slowly than float32."""
    from ganbench.config import native_bf16_cpu

    return torch.bfloat16 if native_bf16_cpu() else torch.float32


def _shift_windows(ink: torch.Tensor, shift: int) -> torch.Tensor:
    """(N, 2s+1, 2s+1, S, S) view of ink (N, S, S): [:, i, j] is the image moved by
    (shift - i, shift - j) pixels (down, right); what leaves the frame is dropped and 0
    (background ink) fills in."""
    side = ink.shape[-1]
    padded = F.pad(ink, (shift, shift, shift, shift))
    return padded.unfold(1, side, 1).unfold(2, side, 1)


def shifted_views(x: torch.Tensor, shift: int = SHIFT_PX) -> torch.Tensor:
    """(N, V, S*S): the ink (x + 1, background 0) of images x (N, 1, S, S) moved by every
    (dy, dx) in [-shift, shift]^2, V = (2 shift + 1)^2 (index i * (2s+1) + j: moved by
    (shift - i, shift - j))."""
    n, _, side, _ = x.shape
    return _shift_windows(x[:, 0] + 1, shift).reshape(n, (2 * shift + 1) ** 2, side * side)


def screen_factor(side: int) -> int:
    """The screen's block size f: it compares f x f block means, S / f = 16 blocks a side (at
    least 1). f * |pool_f(a) - pool_f(b)| <= |a - b| (a block mean's square is at most the mean
    of the squares), so the screen sees a shrunken but faithful picture at 1 / f^2 the cost."""
    return max(1, side // 16)


def nearest_distances(x: torch.Tensor, pool: torch.Tensor, shift: int = SHIFT_PX,
                      candidates: int = CANDIDATES, chunk: int | None = None) -> torch.Tensor:
    """Distance (N,) float64 from each image of x (N, 1, S, S) to its nearest image in ``pool``
    (M, 1, S, S), minimised over shifts of the x image by up to ``shift`` pixels:

        d(x) = min over p in pool, over (dy, dx) in [-shift, shift]^2 of |move(x, dy, dx) - p|

    in [-1, 1] pixel units; an exact copy, or a copy moved by whole pixels within range with
    nothing pushed out of the frame, gives exactly 0. ``shift=0`` is the plain pixel
    nearest-neighbour distance. Every value returned is the distance of one (shift, pool image)
    pair, so never below the true minimum; it is the minimum (up to float32 round-off between
    near-ties, about 1e-5) whenever the nearest pool image is among the ``candidates`` the
    screen ranks first (see the module docstring).
    """
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[1:] != pool.shape[1:]:
        raise ValueError(f"nearest_distances needs images of one shape (N, 1, S, S); got "
                         f"{tuple(x.shape)} and {tuple(pool.shape)}")
    if len(pool) == 0:
        raise ValueError("nearest_distances needs at least one pool image")
    n, _, side, _ = x.shape
    f, width = screen_factor(side), 2 * shift + 1
    blocks = side // f
    # Ink (background 0) as float32, made the same way on both sides, so a copy's ink is
    # bit-identical to its source's and their difference exactly 0.
    ink = pool[:, 0].float() + 1                                        # (M, S, S)
    screened_pool = F.avg_pool2d(ink[:, None], f).flatten(1) * f        # (M, B) block means
    # |v - p|^2 = |v|^2 - 2 v.p + |p|^2 for every (shift, pool image) pair in one product:
    # [v, |v|^2] @ [-2 p, 1]^T, plus |p|^2 as addmm's bias.
    dtype = _screen_dtype()
    pool_t = torch.cat([-2 * screened_pool, torch.ones(len(ink), 1)], 1).T.contiguous().to(dtype)
    bias = screened_pool.square().sum(1).to(dtype)
    ink = ink.flatten(1)
    ink_norm = ink.square().sum(1)                                      # (M,)
    k = min(candidates, len(pool))
    chunk = chunk or max(1, min(MAX_CHUNK, SCREEN_ENTRIES // (width * width * max(len(pool), 1))))
    # For all samples at once: the padded ink; |v|^2 of every moved copy (a sliding sum of the
    # squared ink, S x S wide); the f x f block means at every offset (those of the image moved
    # by (shift - i, shift - j) start at (i, j) and step f).
    padded = F.pad(x[:, 0].float() + 1, (shift, shift, shift, shift))[:, None]
    view_norm = (F.avg_pool2d(padded.square(), side, stride=1) * side * side).view(n, -1)
    means = (F.avg_pool2d(padded, f, stride=1) * f)[:, 0].contiguous()
    sn, sh, sw = means.stride()
    out = []
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        block_views = means[start:].as_strided((c, width, width, blocks, blocks),
                                               (sn, sh, sw, f * sh, f * sw))
        screen_in = torch.empty(c, width * width, blocks * blocks + 1, dtype=dtype)
        screen_in[..., :-1].view(block_views.shape).copy_(block_views)
        screen_in[..., -1] = block_views.square().sum((-2, -1)).reshape(c, -1)
        screened = torch.addmm(bias, screen_in.view(c * width * width, -1), pool_t)
        # The k pool images whose best screened shift scores best go on to the exact step.
        score = screened.view(c, width * width, -1).amin(1)                  # (c, M)
        pool_index = score.float().topk(k, dim=1, largest=False).indices      # (c, k)
        # Exact, every shift of each sample against its k images: float32 products pick the
        # best pair, then that pair's distance is taken as a float64 sum of squared differences.
        views = (padded[start:start + c, 0].unfold(1, side, 1).unfold(2, side, 1)
                 .reshape(c, width * width, -1))                              # (c, V, D)
        chosen = ink[pool_index]                                              # (c, k, D)
        d2 = (view_norm[start:start + c, :, None] + ink_norm[pool_index][:, None, :]
              - 2 * torch.bmm(views, chosen.transpose(1, 2)))                 # (c, V, k)
        pair = d2.view(c, -1).argmin(1)
        rows = torch.arange(c)
        diff = views[rows, pair // k].double() - chosen[rows, pair % k].double()
        out.append(diff.square().sum(-1).sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


_HELD_CACHE: list = []  # [(ref to real, real._version, ref to train, train._version, distances)]


def _heldout_to_train(real: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """nearest_distances(real, train), cached by identity: the same held-out half and training
    set serve every row of a run."""
    for ref_r, v_r, ref_t, v_t, out in _HELD_CACHE:
        if ref_r() is real and ref_t() is train and real._version == v_r and train._version == v_t:
            return out
    out = nearest_distances(real, train)
    _HELD_CACHE.append((weakref.ref(real), real._version, weakref.ref(train), train._version, out))
    del _HELD_CACHE[:-2]
    return out


def class_levels(held: torch.Tensor, held_classes: torch.Tensor, q: float,
                 min_count: int = MIN_CLASS_HELDOUT) -> tuple[dict[int, float], float]:
    """({class: q-quantile of ``held`` over that class's held-out digits}, pooled q-quantile).

    Only classes with at least ``min_count`` held-out digits get their own level; callers use
    the pooled one for every other class."""
    pooled = float(torch.quantile(held, q))
    levels = {}
    for c in held_classes.unique().tolist():
        mine = held[held_classes == c]
        if len(mine) >= min_count:
            levels[int(c)] = float(torch.quantile(mine, q))
    return levels, pooled


def memorisation(fake: torch.Tensor, real: torch.Tensor, train: torch.Tensor,
                 fake_classes: torch.Tensor, real_classes: torch.Tensor,
                 held: torch.Tensor | None = None) -> dict[str, float]:
    """Near-copies of the training images among ``fake``, judged against held-out ``real``.

    Images (N, 1, S, S) at one S; ``*_classes`` (N,) the digit each image is taken to show (the
    classifier's most likely class, for both sets alike). With d the shift-tolerant distance of
    :func:`nearest_distances` to the nearest training image, and for each class c, t_c the
    MEMO_QUANTILE (1st percentile) and m_c the median of d over the held-out digits of class c
    (pooled over all held-out digits for a class with fewer than MIN_CLASS_HELDOUT):
      ``memo_copy_share``: share of fakes with d(fake) < t_class(fake). New digits score about
      0.01 whatever their class mix; a copy of the training set, shifted or not, scores 1.
      ``memo_nn_ratio``: median over fakes of d(fake) / m_class(fake). About 1 for new digits,
      0 for copies; well above 1 means the samples are far from every training digit (a
      fidelity problem that the other metrics measure better).
    ``held``: d over ``real``, when already known.
    """
    if not (fake.shape[1:] == real.shape[1:] == train.shape[1:]):
        raise ValueError(f"memorisation needs images of one shape; got fake {tuple(fake.shape)}, "
                         f"real {tuple(real.shape)}, train {tuple(train.shape)}")
    if held is None:
        held = nearest_distances(real, train)
    thresholds, pooled_t = class_levels(held, real_classes, MEMO_QUANTILE)
    medians, pooled_m = class_levels(held, real_classes, 0.5)
    d = nearest_distances(fake, train)
    classes = fake_classes.tolist()
    t = torch.tensor([thresholds.get(c, pooled_t) for c in classes], dtype=torch.float64)
    m = torch.tensor([medians.get(c, pooled_m) for c in classes], dtype=torch.float64)
    # quantile(0.5), not median(): torch's median is the lower middle value of an even count.
    ratio = float(torch.quantile(d / m, 0.5)) if len(d) and (m > 0).all() else math.nan
    return {"memo_copy_share": float((d < t).double().mean()), "memo_nn_ratio": ratio}


class Memorisation(Metric):
    """Near-copies of training images (``memo_copy_share``, ``memo_nn_ratio``): see
    :func:`memorisation`. Needs ``context.train`` (the run's training images at the run's image
    size); without it both columns are NaN, never a guess. Classes come from the shipped
    classifier (:func:`ganbench.quality.features.predicted_classes`), shared with the other
    classifier metrics' cache."""

    def compute(self, fake, real, context: MetricContext):
        from ganbench.quality.features import predicted_classes

        if context.train is None:
            return {"memo_copy_share": math.nan, "memo_nn_ratio": math.nan}
        train = context.train
        if train.device.type != "cpu" or train.requires_grad:  # else keep the object: cache key
            train = train.detach().cpu()
        return memorisation(fake, real, train, predicted_classes(fake), predicted_classes(real),
                            held=_heldout_to_train(real, train))
