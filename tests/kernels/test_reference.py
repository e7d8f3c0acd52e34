"""The specification itself: checked against hand-written math, not against another kernel."""

import doctest
import math

import pytest
import torch

from ganbench.kernels.attention import reference
from ganbench.kernels.attention.reference import (attend_reference, attention_flops,
                                                  attention_min_bytes)


def _by_the_formula(q, k, v):
    """o_i = sum_j exp(q_i.k_j) v_j / sum_j exp(q_i.k_j), one row at a time, in float64."""
    B, N, _ = q.shape
    out = torch.empty(B, N, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        for i in range(N):
            scores = [float(q[b, i].double() @ k[b, j].double()) for j in range(N)]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            out[b, i] = sum(w / total * v[b, j].double() for j, w in enumerate(weights))
    return out


def test_matches_the_formula_with_no_scale():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 7, 3, generator=g), torch.randn(2, 7, 3, generator=g), \
        torch.randn(2, 7, 5, generator=g)
    expected = _by_the_formula(q, k, v)
    torch.testing.assert_close(attend_reference(q.double(), k.double(), v.double()), expected)
    # A 1/sqrt(Dqk) scale (what SDPA does by default) gives a different answer: SAGAN has none.
    scaled = _by_the_formula(q / math.sqrt(3), k, v)
    assert (attend_reference(q.double(), k.double(), v.double()) - scaled).abs().max() > 1e-2


def test_weights_are_a_softmax_over_keys():
    """Constant V gives that constant; a one-hot score row picks the matching value row."""
    q = torch.zeros(1, 3, 2)
    k = torch.zeros(1, 3, 2)
    q[0, 0, 0], k[0, 2, 0] = 50.0, 50.0  # query 0 matches key 2 overwhelmingly (score 2500)
    v = torch.arange(12.0).reshape(1, 3, 4)
    o = attend_reference(q, k, v)
    torch.testing.assert_close(o[0, 0], v[0, 2])              # one-hot row, no overflow
    torch.testing.assert_close(o[0, 1], v[0].mean(0))         # all scores 0: uniform weights
    ones = torch.ones(1, 3, 4)
    torch.testing.assert_close(attend_reference(q, k, ones), ones)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sixteen_bit_inputs_compute_in_fp32_and_round_once(dtype):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 33, d, generator=g).to(dtype) for d in (8, 8, 24))
    o = attend_reference(q, k, v)
    assert o.dtype == dtype
    exact = attend_reference(q.double(), k.double(), v.double())
    # one rounding of an fp32-accurate value: within one unit in the last place (2 * roundoff)
    unit = {torch.float16: 2 ** -10, torch.bfloat16: 2 ** -7}[dtype]
    assert ((o.double() - exact).abs() <= unit * exact.abs().clamp_min(2 ** -6)).all()


def test_gradients_are_those_of_the_formula():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 5, d, generator=g, dtype=torch.float64, requires_grad=True)
               for d in (3, 3, 4))
    assert torch.autograd.gradcheck(attend_reference, (q, k, v))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, N, Dqk\)"):
        attend_reference(torch.zeros(1, 4, 8), torch.zeros(1, 5, 8), torch.zeros(1, 4, 2))


def test_docstring_example_runs():
    failures, _ = doctest.testmod(reference, extraglobs={"torch": torch}, verbose=False)
    assert failures == 0


def test_flops_and_bytes():
    # SAGAN G at 32x32: B=64, N=1024, Dqk=8, Dv=64 -> 2*64*1024^2*72 = 9.66 GFLOP forward.
    fwd = attention_flops(64, 1024, 8, 64)
    assert fwd == 2 * 64 * 1024 * 1024 * (8 + 64) == 9_663_676_416
    assert attention_flops(64, 1024, 8, 64, backward=True) == pytest.approx(3.5 * fwd)
    # bf16 forward: Q, K, V in and O out = 2 B * 64*1024*(8+8+64+64)
    assert attention_min_bytes(64, 1024, 8, 64, element_size=2) == 2 * 64 * 1024 * 144
    assert attention_min_bytes(64, 1024, 8, 64, 2, backward=True) == 3 * 2 * 64 * 1024 * 144
