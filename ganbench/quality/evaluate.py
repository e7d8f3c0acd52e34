"""Running the sample-quality metrics: one merged row of columns, and the real-data floor row.

A quality number means little alone: FID-like distances are biased by the sample count and
depend on the feature extractor. So every results table carries a "real data" row, made by
:func:`real_reference_row`: two disjoint halves of the held-out real digits scored against each
other with the same metrics at the same N. It is the best a generator can do at that N (about 0
for fid_digits, about 1 for precision/recall/coverage, all selected modes covered).

Every row :func:`evaluate` returns is tagged with what its numbers depend on: ``metric_n`` (the
number of generated samples scored; the real set has the same N in every row ganbench writes)
and ``metric_image_size`` (the side S of the images scored). fid_digits changes by tens when only
the image size changes (the classifier sees every image resized to 28x28), and FID-like
distances are biased by N, so numbers with different tags must not be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable, Optional

from ganbench.errors import ConfigError, DataError
from ganbench.specs import MetricContext

if TYPE_CHECKING:
    import torch

    from ganbench.registry import Registry

DEFAULT_EVAL_N = 2000  # samples scored when --eval-n is not given, if the held-out set allows
TAG_COLUMNS = ("metric_n", "metric_image_size")  # what every evaluate() row is tagged with


def default_metrics(registry: Optional["Registry"] = None, device: str = "cpu") -> tuple[str, ...]:
    """The metrics scored when ``--metrics`` is not given: every registered metric whose
    MetricSpec says ``default=True`` (the default) and that can run on ``device``, in
    registration order (built-ins first). The core names none of them."""
    from ganbench.registry import get_registry, why_unavailable

    registry = registry or get_registry()
    return tuple(name for name, spec in registry.metrics.items()
                 if getattr(spec, "default", True) and not why_unavailable(spec, device))


def __getattr__(name: str):
    """``DEFAULT_METRICS``: :func:`default_metrics` of the process's registry on the CPU (a
    module attribute computed when read, for callers from before the column registry)."""
    if name == "DEFAULT_METRICS":
        return default_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TooFewSamplesError(DataError, ValueError):
    """A metric cannot score sets this small; the message names the metric and its minimum.

    A user error (exit 2 on the command line: ``ganbench score`` of a handful of images) and a
    ValueError (what the metric's arithmetic raised before it had a name of its own)."""


def _on_cpu(x: "torch.Tensor") -> "torch.Tensor":
    """x itself when already a plain CPU tensor: metrics cache features by tensor identity, so
    the held-out set passed for every row must stay the same object."""
    return x if x.device.type == "cpu" and not x.requires_grad else x.detach().cpu()


def evaluate(metric_names: Iterable[str], fake: "torch.Tensor", real: "torch.Tensor",
             context: MetricContext, registry: "Registry") -> dict[str, float]:
    """Run the named metrics on (fake, real) and merge their columns into one dict.

    Contract: ``fake`` and ``real`` are (N, 1, S, S) in [-1, 1] (moved to the CPU here). Metrics
    run in the order given. The row starts with the tags ``metric_n`` = len(fake) and
    ``metric_image_size`` = S (see the module docstring). An unknown name raises
    UnknownPluginError (with close matches); a metric unavailable on ``context.device`` raises
    ConfigError with its reason (drop it from the list to run without it); two metrics writing
    the same column (or a metric writing a tag column) raise ValueError.
    """
    fake, real = _on_cpu(fake), _on_cpu(real)
    row: dict[str, float] = {"metric_n": len(fake), "metric_image_size": int(fake.shape[-1])}
    for name in metric_names:
        spec = registry.lookup(name, kinds=("metric",)).spec
        reason = spec.why_unavailable(context.device)
        if reason:
            raise ConfigError(f"metric {name!r} is unavailable here: {reason}")
        columns = dict(spec.factory().compute(fake, real, context))
        clash = sorted(set(columns) & set(row))
        if clash:
            raise ValueError(f"metric {name!r} writes column(s) {', '.join(clash)} that an "
                             "earlier metric (or the tags) already wrote")
        row.update(columns)
    return row


@dataclass(frozen=True)
class EvalSets:
    """The held-out digits of one run, cut once so every row is scored the same way.

    ``real`` (n images, with ``real_labels``) is what every generator row and the reference row
    are scored against; ``stand_in`` (another n, disjoint) plays the generator in the "real
    data" row. Generator rows draw exactly ``n`` samples, so the floor and the rows share N:
    FID-like distances are biased by N, and only equal N compare.
    """

    real: "torch.Tensor"
    real_labels: Optional["torch.Tensor"]
    stand_in: "torch.Tensor"
    n: int
    stand_in_labels: Optional["torch.Tensor"] = None  # labels of ``stand_in``, where known


def max_eval_n(heldout_count: int) -> int:
    """The largest N that two disjoint halves of ``heldout_count`` held-out images allow."""
    return int(heldout_count) // 2


def check_eval_n(n: Optional[int], heldout_count: int) -> int:
    """The N to score at: ``n`` itself if the held-out set allows it, else a ConfigError.

    ``n`` None means "not given": DEFAULT_EVAL_N, or the maximum when fewer exist (the
    default never fails). An explicit ``n`` above the maximum (``heldout_count // 2``: the
    samples are scored against one half of the held-out images and the "real data" row uses
    the other half, and N must be equal on both sides) is an error naming that maximum, never
    a silent cap: a number computed at another N than asked is not comparable. ``n`` < 2 is an
    error too (no covariance, no nearest neighbour).
    """
    most = max_eval_n(heldout_count)
    if n is None:
        return min(DEFAULT_EVAL_N, most)
    if n < 2:
        raise ConfigError(f"--eval-n must be at least 2, got {n}")
    if n > most:
        raise ConfigError(f"--eval-n {n} is more than the {heldout_count} held-out images allow: "
                        f"the maximum is {most} (half of them, so the real-data row gets the "
                        f"other half)")
    return int(n)


def eval_sets(heldout: "torch.Tensor", heldout_labels: Optional["torch.Tensor"], n: int,
              seed: int = 0) -> EvalSets:
    """Shuffle the held-out set with ``seed`` and cut two disjoint halves of ``n`` images.

    Callers validate ``n`` first with :func:`check_eval_n` (a user's N above the maximum is an
    error there). Here ``n`` is still capped at ``max_eval_n(len(heldout))``, and the result
    says which N was used: a last guard, not a feature.
    """
    import torch

    n_used = min(int(n), max_eval_n(len(heldout)))
    if n_used < 2:
        raise ValueError(f"need at least 4 held-out images for a real-vs-real row, "
                         f"got {len(heldout)}")
    order = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(seed))
    first, second = order[:n_used], order[n_used:2 * n_used]
    labels = heldout_labels[second] if heldout_labels is not None else None
    stand_in_labels = heldout_labels[first] if heldout_labels is not None else None
    return EvalSets(real=heldout[second], real_labels=labels, stand_in=heldout[first], n=n_used,
                    stand_in_labels=stand_in_labels)


def real_reference_row(heldout: "torch.Tensor", heldout_labels: Optional["torch.Tensor"],
                       n: int, context: MetricContext, registry: "Registry",
                       metric_names: Optional[Iterable[str]] = None,
                       seed: int = 0) -> tuple[dict[str, float], int]:
    """Score one half of the held-out real digits against the other: the "real data" row.

    The halves are those of :func:`eval_sets` (same ``seed``, same ``n``), so the row is the
    floor for generator rows scored against ``eval_sets(...).real``. Returns ``(row, n_used)``.
    ``context.real_labels`` is set to the labels of the "real" half (where labels are given).
    ``metric_names`` None: :func:`default_metrics`.
    """
    sets = eval_sets(heldout, heldout_labels, n, seed)
    if metric_names is None:
        metric_names = default_metrics(registry, context.device)
    row = evaluate(metric_names, sets.stand_in, sets.real,
                   replace(context, real_labels=sets.real_labels), registry)
    return row, sets.n
