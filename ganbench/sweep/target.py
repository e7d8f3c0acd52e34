"""``--target-fid X``: when each trial's quality first passes X (time-to-target).

The core names no metric: the target column is the ``primary`` column of the first metric of
the run that declares one (:class:`ganbench.specs.MetricSpec`; the built-in ``fid-digits``
declares ``fid_digits``), and that column's declared direction says what "passes" means:
below X for a "lower" column, above X for a "higher" one.

Checked at every ``--eval-every`` evaluation and at the final evaluation, in that order; the
first that passes gives ``time_to_target_s`` (the training wall time at that evaluation, as in
the curve's ``wall_s``) and ``steps_to_target``. A trial that never passes keeps both blank and
says so in ``target_note`` ("not reached ...") instead of getting a number.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Optional

from ganbench.errors import UserError


@dataclass(frozen=True)
class Target:
    column: str
    direction: str  # "lower" or "higher": which side of ``value`` counts as reached
    value: float

    def passed(self, x) -> bool:
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            return False
        return x < self.value if self.direction == "lower" else x > self.value

    @property
    def text(self) -> str:
        return f"{self.column} {'<' if self.direction == 'lower' else '>'} {self.value:g}"


def resolve_target(target_value: Optional[float], metric_names: list[str],
                   registry) -> Optional[Target]:
    """The run's Target, or None without ``--target-fid``; UserError (at planning) when no
    metric of the run declares a primary column."""
    if target_value is None:
        return None
    for name in metric_names:
        spec = registry.metrics[name]
        column = getattr(spec, "primary", None)
        if column:
            return Target(column, direction_of(spec, column), float(target_value))
    ran = ", ".join(metric_names) or "none"
    having = [name for name, spec in registry.metrics.items() if getattr(spec, "primary", None)]
    hint = f"add one with --metrics: {', '.join(having)}" if having else \
        "no installed metric declares one"
    raise UserError(f"--target-fid needs a metric that declares a target column; this run's "
                    f"metrics: {ran}; {hint}")


def direction_of(spec, column: str) -> str:
    """The direction ``spec`` declares for ``column`` (first matching pattern)."""
    for pattern, way in spec.directions:
        if fnmatch.fnmatchcase(column, pattern):
            return way
    raise UserError(f"metric {spec.name} declares {column} as its primary column but no "
                    "direction for it (lower or higher is better)")


def time_to_target(points: list[dict], target: Target, steps_run: int) -> dict:
    """The target columns of a row from its evaluations in order (each a dict with ``step``,
    ``wall_s`` and the target column; the last is the final evaluation, when there was one).

    ``steps_run``: steps the trial trained, for the "not reached" note.
    """
    row = {"target_metric": target.column, "target_value": target.value}
    for point in points:
        if target.passed(point.get(target.column)):
            row.update(target_reached=True, time_to_target_s=float(point["wall_s"]),
                       steps_to_target=int(point["step"]), target_note=None)
            return row
    scored = [p[target.column] for p in points
              if isinstance(p.get(target.column), (int, float))
              and math.isfinite(p[target.column])]
    best = (min if target.direction == "lower" else max)(scored) if scored else None
    note = f"not reached in {steps_run} steps"
    note += f" (best {target.column} {best:.4g})" if best is not None else \
        " (no evaluation scored it)"
    row.update(target_reached=False, time_to_target_s=float("nan"),
               steps_to_target=None, target_note=note)
    return row
