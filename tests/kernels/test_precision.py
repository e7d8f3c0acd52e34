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
    out = capsys.readouterr().out
    assert "verdict: ieee" in out
    # then each variant's fp32 forward and gradients, graded by error size
    assert out.count("-> within the fp32 tolerance (2e-5)") == 4, out


def test_error_sizes_name_their_likely_cause():
    """The magnitudes precision.py's docstring explains: ~1e-3 TF32, 1e-5..1e-4 approximate
    exp/log against a 2e-5 tolerance, order 1 a code-generation fault."""
    from ganbench.kernels.attention.precision import classify

    assert classify(3e-6).startswith("within")
    assert classify(6e-5).startswith("tolerance")
    assert classify(1e-3).startswith("TF32")
    assert classify(0.4).startswith("fault")


def test_gradient_errors_of_an_exact_kernel_are_fp32_sized():
    from ganbench.kernels.attention.precision import gradient_errors

    errors = gradient_errors(attend_eager, "cpu", N=20)
    assert set(errors) == {"o", "dq", "dk", "dv"} and max(errors.values()) < 1e-5


def test_host_cost_refuses_to_run_under_the_interpreter(monkeypatch, capsys):
    from ganbench.kernels.attention import host_cost

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert host_cost.main([]) == 2
    err = capsys.readouterr().err
    assert "unset TRITON_INTERPRET" in err and err.count("\n") == 1
