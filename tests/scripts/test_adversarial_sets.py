"""scripts/adversarial_sets.py: the verdict it reports is `ganbench compare`'s own.

Hand-made rows against a real row, judged through the script's compare_verdicts (compare's
reader and rule, one row a side): what compare's single-row rule says is worked out by hand
from its documented contract (closer: the distance to the real row; noise: the 1% band on the
value when neither side has seeds or a spread; another metric_n: not comparable).
"""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "adversarial_sets.py"


@pytest.fixture(scope="module")
def adversarial():
    spec = importlib.util.spec_from_file_location("adversarial_sets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The real row of results/metric-adversarial-sets (rounded); only the closer columns matter.
REAL = {"n": 1001, "is_digits": 2.15, "prdc_precision": 0.895, "prdc_density": 0.979,
        "modes_share_7": 0.496, "modes_share_8": 0.49, "memo_nn_ratio": 0.988}


def test_the_two_sided_columns_are_the_closer_ones_of_compares_registry(adversarial):
    assert adversarial.closer_columns() == ["is_digits", "prdc_precision", "prdc_density",
                                            "modes_share_7", "modes_share_8", "memo_nn_ratio"]


def test_compare_verdicts_against_the_real_row(adversarial):
    closer = adversarial.closer_columns()
    row = dict(REAL)
    row.update(is_digits=1.0,           # below the real row: farther, so worse (two-sided)
               prdc_precision=0.91,     # above it by 1.7%: farther, past the 1% band: worse
               prdc_density=0.985,      # +0.6%: inside compare's 1% band: within noise
               modes_share_7=0.496)     # equal: unchanged
    verdicts = adversarial.compare_verdicts(row, REAL, closer)
    assert verdicts["is_digits"] == "worse"
    assert verdicts["prdc_precision"] == "worse"
    assert verdicts["prdc_density"] == "within noise"
    assert verdicts["modes_share_7"] == "unchanged"
    assert adversarial.is_worse(verdicts["is_digits"])
    assert not adversarial.is_worse(verdicts["prdc_density"])


def test_a_set_of_another_n_is_not_comparable(adversarial):
    closer = adversarial.closer_columns()
    row = {**REAL, "n": 497, "is_digits": 1.05}
    verdicts = adversarial.compare_verdicts(row, REAL, closer)
    assert set(verdicts) == set(closer)
    assert all(v == "not comparable: metric_n 1001 in old, 497 in new"
               for v in verdicts.values()), verdicts
