"""The options and the plan per shape (kernels/attention/plan.py): host code only, no kernel runs.

What the interpreter does not check is checked here: bad options are refused with one line,
``auto`` picks what NOTES.md section 4 says, and every tile obeys the GPU's constraints.
"""

import pytest

from ganbench.kernels.attention.plan import (SMALL_N_MAX, check_options, check_tiles, plan,
                                             small_n_config, tiled_config)


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="small"), "variant must be one of auto, small-n, tiled; got 'small'"),
    (dict(backward="one_launch"),
     "backward must be one of auto, one-launch, two-kernel, atomic; got 'one_launch'"),
    (dict(variant="small-n", backward="atomic"), "variant='small-n' has its own one-launch"),
    (dict(exp2="yes"), "exp2 must be true or false; got 'yes'"),
    (dict(prebind=1), "prebind must be true or false; got 1"),
    (dict(tiles={"block_n": 48}), "block_n must be one of"),
])
def test_bad_options_are_rejected_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        check_options(**kwargs)
    assert "\n" not in str(info.value)


def test_auto_picks_small_n_up_to_256_then_tiled_with_the_one_launch_backward():
    assert [plan(n, 16, 128).variant for n in (1, 16, 64, 256)] == ["small-n"] * 4
    assert [plan(n, 8, 64)[:2] for n in (257, 1024, 4096)] == [("tiled", "one-launch")] * 3
    two = check_options(backward="two-kernel")
    assert plan(64, 8, 64, two).variant == "small-n"   # backward= is the tiled variant's choice
    assert plan(1024, 8, 64, two)[:2] == ("tiled", "two-kernel")
    forced = check_options(variant="tiled")
    assert plan(64, 8, 64, forced)[:2] == ("tiled", "one-launch")


def test_tile_sizes_obey_gpu_constraints():
    """What the interpreter does not enforce: power-of-two tiles, dot dims >= 16, Dv chunks."""
    shapes = [(n, dqk, dv) for n in (1, 16, 63, 64, 257, 1024, 4096)
              for dqk, dv in ((8, 64), (16, 128), (32, 256), (64, 512), (8, 24))]
    for n, dqk, dv in shapes:
        cfg = tiled_config(n, dqk, dv)
        for key in ("BLOCK_DQK", "BLOCK_DV", "BLOCK_N", "FWD_BLOCK_M", "BWD_BLOCK_M"):
            value = cfg[key]
            assert value >= 16 and value & (value - 1) == 0, (n, dqk, dv, key, value)
        assert cfg["BLOCK_DQK"] >= dqk and cfg["BLOCK_DV"] <= 128
        assert cfg["FWD_WARPS"] in (4, 8) and cfg["BWD_WARPS"] in (4, 8)
        if n > SMALL_N_MAX:
            continue
        small = small_n_config(n, dqk, dv)
        for key in ("N_PAD", "BLOCK_DQK", "BLOCK_DV", "BLOCK_N", "FWD_BLOCK_M", "BWD_BLOCK_M"):
            value = small[key]
            assert value >= 16 and value & (value - 1) == 0, (n, dqk, dv, key, value)
        assert small["N_PAD"] >= n and small["BLOCK_DV"] <= 128
        assert small["N_PAD"] * small["BLOCK_DV"] <= 16384  # the V chunk in shared memory
        # the score-sized tiles the backward keeps live stay at <= 8192 fp32 each
        assert small["BWD_BLOCK_M"] * small["N_PAD"] <= 8192 or small["N_PAD"] <= 64


@pytest.mark.parametrize("tiles, message", [
    ({"block_m": 64}, "unknown tile setting 'block_m'; known: block_n, fwd_block_m"),
    ({"block_n": 48}, "block_n must be one of 16, 32, 64, 128, 256; got 48"),
    ({"block_dv": 256}, "block_dv must be one of 16, 32, 64, 128; got 256"),
    ({"fwd_warps": True}, "fwd_warps must be one of"),
    ({"bwd_stages": "2"}, "bwd_stages must be one of"),
])
def test_bad_tiles_are_rejected(tiles, message):
    with pytest.raises(ValueError, match=message):
        check_tiles(tiles)


def test_tile_overrides_replace_only_what_they_name():
    default = tiled_config(1024, 8, 64)
    assert default["BWD_WARPS"] == 4 and default["BLOCK_N"] == 64
    tuned = tiled_config(1024, 8, 64, check_tiles({"bwd_warps": 8, "BLOCK_N": 128}))
    assert tuned == {**default, "BWD_WARPS": 8, "BLOCK_N": 128}
