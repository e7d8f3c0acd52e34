"""The fp32-arithmetic diagnosis: TF32 rounding by hand, and verdicts on kernels of known kind."""

import pytest
import torch

from ganbench.kernels.attention.precision import diagnose, main, round_to_tf32
from ganbench.plugins.attention import attend_eager

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def test_round_to_tf32_by_hand():
    # TF32 keeps 10 mantissa bits: near 1 its spacing is 2^-10, in [0.5, 1) it is 2^-11.
    x = torch.tensor([1 + 2**-11, 1 + 2**-12, -(1 + 2**-11), 1 + 3 * 2**-11, 3.0, 1 - 2**-24])
    nearest = [1 + 2**-10, 1.0, -(1 + 2**-10), 1 + 2**-9, 3.0, 1.0]  # ties away from zero
    toward_zero = [1.0, 1.0, -1.0, 1 + 2**-10, 3.0, 1 - 2**-11]
    assert round_to_tf32(x, "rn").tolist() == nearest
    assert round_to_tf32(x, "rz").tolist() == toward_zero
    with pytest.raises(TypeError):
        round_to_tf32(x.double())
    with pytest.raises(ValueError):
        round_to_tf32(x, "up")


def test_diagnosis_names_the_arithmetic_of_known_kernels():
    assert diagnose(attend_eager, "cpu")[0]["hypothesis"] == "ieee"
    tf32_scores = lambda q, k, v: attend_eager(round_to_tf32(q), round_to_tf32(k), v)  # noqa: E731
    rows = diagnose(tf32_scores, "cpu")
    assert rows[0]["hypothesis"] == "tf32-qk-rn" and rows[0]["rel_err"] < 1e-6
    # the verdict is clear-cut: the next hypothesis is >100x further away
    assert rows[1]["rel_err"] > 100 * rows[0]["rel_err"]


@pytest.mark.parametrize("device", DEVICES)
def test_triton_fp32_is_ieee(device, skip_unless_runnable, capsys):
    """What the H100's failing fp32 tests are checked against (see the module docstring)."""
    skip_unless_runnable(device)
    assert main(["--device", device]) == 0
    assert capsys.readouterr().out.strip().endswith("verdict: ieee")
