"""Kernel tests run on CUDA when present, else on the CPU under the Triton interpreter.

Triton reads TRITON_INTERPRET when ``@triton.jit`` decorates, i.e. when the kernel module is
first imported, so it is set here, before any test module imports it. Only when no CUDA device
exists: on a GPU machine the kernels must be compiled for real. ``torch.cuda.is_available()``
needs no driver on a CPU build (it returns False).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _skip_unless_runnable(device: str) -> None:
    """Skip when the device is absent or the kernel cannot run there (with the reason)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from ganbench.kernels.attention.triton_common import why_triton_unavailable

    reason = why_triton_unavailable(device)
    if reason is not None:
        pytest.skip(reason)


def _make_inputs(B, N, Dqk, Dv, dtype, device, seed=0, score_scale=1.0):
    """q, k (B, N, Dqk), v and the upstream gradient dO (B, N, Dv), all leaves in ``dtype``.

    q and k are drawn with std Dqk**-0.25 so the scores q.k have unit variance at every Dqk:
    the softmax is then neither one-hot nor uniform and every term of every gradient matters
    (SAGAN's raw scores at Dqk=64 would have std 8; ``score_scale`` multiplies q to test that).
    """
    g = torch.Generator().manual_seed(seed)
    s = Dqk ** -0.25
    q = torch.randn(B, N, Dqk, generator=g) * s * score_scale
    k = torch.randn(B, N, Dqk, generator=g) * s
    v = torch.randn(B, N, Dv, generator=g)
    do = torch.randn(B, N, Dv, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, do)]


def _float64_reference(q, k, v, do):
    """Output and (dq, dk, dv) of the reference op computed in float64 from the same values."""
    from ganbench.kernels.attention.reference import attend_reference

    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    o64 = attend_reference(q64, k64, v64)
    o64.backward(do.double())
    return o64.detach(), (q64.grad, k64.grad, v64.grad)


def _output_and_grads(attend, q, k, v, do):
    """Run ``attend`` forward and backward on fresh leaves; returns o and (dq, dk, dv)."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    o = attend(q, k, v)
    o.backward(do)
    return o.detach(), (q.grad, k.grad, v.grad)


# The helpers reach test modules as fixtures (importing from a conftest is fragile).
@pytest.fixture
def skip_unless_runnable():
    return _skip_unless_runnable


@pytest.fixture
def make_inputs():
    return _make_inputs


@pytest.fixture
def float64_reference():
    return _float64_reference


@pytest.fixture
def output_and_grads():
    return _output_and_grads
