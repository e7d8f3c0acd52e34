"""scripts/metric_check.py: the pass bands, the flag rule and the shift, on hand-made numbers."""

import importlib.util
import math
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "metric_check.py"
spec = importlib.util.spec_from_file_location("metric_check", SCRIPT)
metric_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metric_check)

COLUMNS = [c for c, _ in metric_check.RULES]


def _row(**values):
    row = {c: 1.0 for c in COLUMNS}
    row.update(modes_covered=2, modes_total=2)
    row.update(values)
    return row


def test_bands_are_mean_plus_minus_z_sd_on_the_bad_side_only():
    resplits = [_row(fid_digits=3.0, prdc_precision=0.9, is_digits=2.0),
                _row(fid_digits=5.0, prdc_precision=0.7, is_digits=2.2)]
    bands = metric_check.pass_bands(resplits, z=2.0)
    sd = math.sqrt(2.0)  # sample sd of (3, 5)
    assert bands["fid_digits"] == (-math.inf, 4.0 + 2 * sd, 4.0, sd)      # higher is worse
    low, high, mean, sd_p = bands["prdc_precision"]                      # lower is worse
    assert (high, mean) == (math.inf, 0.8) and math.isclose(low, 0.8 - 2 * sd_p)
    low, high, _, sd_i = bands["is_digits"]                               # both sides
    assert math.isclose(low, 2.1 - 2 * sd_i) and math.isclose(high, 2.1 + 2 * sd_i)


def test_flags_name_every_rule_that_fails():
    bands = metric_check.pass_bands([_row(), _row(fid_digits=1.2, prdc_precision=0.8)], z=5.0)
    assert metric_check.flags(_row(), bands) == []
    bad = _row(fid_digits=100.0, prdc_precision=0.0, modes_covered=1)
    assert metric_check.flags(bad, bands) == ["fid_digits", "prdc_precision", "modes_covered"]


def test_shifted_moves_right_and_fills_with_background():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = metric_check.shifted(x, 1)
    assert out.shape == x.shape
    assert out[0, 0, 0].tolist() == [-1.0, 0.0, 1.0, 2.0]
