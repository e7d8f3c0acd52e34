"""--target-fid: the target column comes from the metric plugins; time-to-target per trial."""

import math

import pytest

from ganbench.errors import UserError
from ganbench.registry import get_registry
from ganbench.specs import Metric, MetricSpec
from ganbench.sweep.target import Target, resolve_target, time_to_target

POINTS = [{"step": 100, "wall_s": 10.0, "fid_digits": 300.0},
          {"step": 200, "wall_s": 21.5, "fid_digits": 149.0},
          {"step": 300, "wall_s": 33.0, "fid_digits": 120.0}]


def test_the_first_evaluation_past_the_target_gives_time_and_step():
    row = time_to_target(POINTS, Target("fid_digits", "lower", 150.0), 300)
    assert row == {"target_metric": "fid_digits", "target_value": 150.0, "target_reached": True,
                   "time_to_target_s": 21.5, "steps_to_target": 200, "target_note": None}
    # Strictly past it: equal is not reached yet.
    assert time_to_target(POINTS, Target("fid_digits", "lower", 149.0), 300)[
        "steps_to_target"] == 300


def test_a_trial_that_never_reaches_the_target_says_so_without_a_number():
    row = time_to_target(POINTS, Target("fid_digits", "lower", 100.0), 300)
    assert row["target_reached"] is False and math.isnan(row["time_to_target_s"])
    assert row["steps_to_target"] is None
    assert row["target_note"] == "not reached in 300 steps (best fid_digits 120)"
    diverged = time_to_target([{"step": 40, "wall_s": 1.0}], Target("fid_digits", "lower", 9.0),
                              40)
    assert diverged["target_note"] == "not reached in 40 steps (no evaluation scored it)"


def test_a_higher_is_better_column_is_reached_from_below():
    target = Target("is_digits", "higher", 2.0)
    points = [{"step": 1, "wall_s": 1.0, "is_digits": 1.5},
              {"step": 2, "wall_s": 2.0, "is_digits": float("nan")},
              {"step": 3, "wall_s": 3.0, "is_digits": 2.1}]
    assert time_to_target(points, target, 3)["steps_to_target"] == 3
    assert target.text == "is_digits > 2"


def test_the_target_column_is_the_first_declared_primary_of_the_run():
    registry = get_registry()
    target = resolve_target(150.0, ["is-digits", "fid-digits", "prdc"], registry)
    assert target == Target("fid_digits", "lower", 150.0)
    assert resolve_target(None, ["fid-digits"], registry) is None
    with pytest.raises(UserError, match="--target-fid needs a metric.*this run's metrics: "
                                        "is-digits, prdc; add one with --metrics: fid-digits"):
        resolve_target(150.0, ["is-digits", "prdc"], registry)


def test_a_primary_column_needs_a_direction():
    MetricSpec(name="m", summary="s", factory=Metric, directions={"m_*": "higher"},
               primary="m_score")
    with pytest.raises(ValueError, match="primary column 'm_score' needs a 'lower' or 'higher' direction"):
        MetricSpec(name="m", summary="s", factory=Metric, directions={"other": "lower"},
                   primary="m_score")
