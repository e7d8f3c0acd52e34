"""Trials (combination x seed), their names and order; --seeds and --budget parsing."""

import math

import pytest

from ganbench.config import RunConfig, parse_budget, parse_seeds, resolve
from ganbench.errors import ConfigError
from ganbench.sweep.matrix import Combination
from ganbench.sweep.trials import in_plan_order, make_trials, row_key

DCGAN = Combination("dcgan", "bce", None)
SAGAN = Combination("sagan", "hinge", "eager-attn")


def test_trials_go_combination_by_combination_and_name_files_per_seed():
    trials = make_trials([DCGAN, SAGAN], (3, 7))
    assert [(t.name, t.seed) for t in trials] == [("dcgan+bce", 3), ("dcgan+bce", 7),
                                                  ("sagan+hinge+eager-attn", 3),
                                                  ("sagan+hinge+eager-attn", 7)]
    assert [t.stem for t in trials[:2]] == ["dcgan+bce.seed3", "dcgan+bce.seed7"]
    assert trials[2].identity() == {"combo": "sagan+hinge+eager-attn", "architecture": "sagan",
                                    "loss": "hinge", "attention": "eager-attn", "seed": 3}
    # One seed: the names every run had before --seeds.
    [one] = make_trials([DCGAN], (5,))
    assert (one.stem, one.seed) == ("dcgan+bce", 5)


def test_rows_go_back_in_plan_order_with_the_reference_last():
    trials = make_trials([DCGAN, SAGAN], (0, 1))
    rows = [{"combo": "real data"}, {"combo": "sagan+hinge+eager-attn", "seed": 0},
            {"combo": "dcgan+bce", "seed": 1}, {"combo": "dcgan+bce", "seed": 0}]
    assert [(r["combo"], r.get("seed")) for r in in_plan_order(rows, trials, 0)] == \
        [("dcgan+bce", 0), ("dcgan+bce", 1), ("sagan+hinge+eager-attn", 0), ("real data", None)]
    assert row_key({"combo": "dcgan+bce"}, 4) == ("dcgan+bce", 4)  # a row from before --seeds


def test_parse_seeds_counts_from_seed_or_takes_the_list():
    assert parse_seeds("3", 0) == (0, 1, 2)
    assert parse_seeds(" 2 ", 10) == (10, 11)
    assert parse_seeds("0,3,7", 10) == (0, 3, 7)
    assert parse_seeds("7,", 0) == (7,)
    with pytest.raises(ConfigError, match=r"passes 2\*\*62"):
        parse_seeds("3", 2**62 - 2)
    for bad, fragment in (("0", "at least 1"), ("-1", "at least 1"), ("a,b", "a count K"),
                          ("x", "a count K"), (",", "a count K"), ("1,1", "seed 1 twice"),
                          ("2,-5", "integers from 0"), ("1001", "more than 1000"),
                          (str(2**62), "more than 1000")):
        with pytest.raises(ConfigError, match=fragment):
            parse_seeds(bad, 0)


def test_parse_budget_reads_seconds_and_minutes():
    assert parse_budget("90s") == 90.0
    assert parse_budget("1.5m") == 90.0
    assert parse_budget("90") == 90.0
    assert parse_budget(" 2M ") == 120.0
    assert parse_budget(".5s") == 0.5
    for bad in ("-3s", "xyz", "0s", "0m", "", "5h", "1e3", "3 s s", "nan", "inf"):
        with pytest.raises(ConfigError, match="--budget takes a positive wall time"):
            parse_budget(bad)


def test_config_keeps_seeds_and_budget_and_resolves_a_budget_run():
    cfg = RunConfig(plugins=("dcgan",), seeds=(0, 3), budget_s=90.0, device="cpu")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.training_seeds == (0, 3)
    assert RunConfig(plugins=("dcgan",), seed=4).training_seeds == (4,)
    done = resolve(cfg)
    assert done.steps is None and done.warmup == 10 and done.budget_s == 90.0
    old = cfg.to_dict()
    del old["seeds"], old["budget_s"]  # a config.json written before these existed
    assert RunConfig.from_dict(old).training_seeds == (0,)
    for kwargs, fragment in (({"seeds": (1, 1)}, "twice"), ({"budget_s": -1.0}, "positive"),
                             ({"budget_s": math.inf}, "positive"),
                             ({"budget_s": 5.0, "steps": 10}, "--budget and --steps")):
        with pytest.raises(ConfigError, match=fragment):
            RunConfig(plugins=("dcgan",), **kwargs)
