"""ganbench/sweep/kernel_check.py: the first call of a kernel (and of its fused block) is checked,
and the wrapper hides none of the kernel's optional attributes."""

import copy

import pytest
import torch

from ganbench.sweep.kernel_check import KernelContractError, checked_attend
from ganbench.kernels.attention.reference import attend_reference


class Kernel:
    """An attend object with the optional attributes the plugin contract allows."""

    backend_used = "math"

    def __init__(self, block_out=None):
        self.block_out = block_out
        self.prepared = None

    def __call__(self, q, k, v):
        return attend_reference(q, k, v)

    def prepare(self, shapes, dtype, device):
        self.prepared = (list(shapes), dtype, device)
        return 1.5

    def block(self, x, *params):
        return x + 0 if self.block_out is None else self.block_out(x)


def qkv(B=2, N=5, Dqk=3, Dv=4):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, N, Dqk, generator=g), torch.randn(B, N, Dqk, generator=g),
            torch.randn(B, N, Dv, generator=g))


def test_optional_attributes_reach_the_kernel():
    kernel = Kernel()
    wrapped = checked_attend(kernel, "k")
    assert wrapped.prepare([(2, 16, 8, 64)], "bf16", "cuda") == 1.5
    assert kernel.prepared == ([(2, 16, 8, 64)], "bf16", "cuda")
    assert wrapped.backend_used == "math"
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(wrapped.block(x), x)
    assert getattr(checked_attend(attend_reference, "eager"), "block", None) is None
    torch.testing.assert_close(wrapped(*qkv()), attend_reference(*qkv()))
    copy.copy(wrapped)  # private names are not forwarded: no recursion while copying


def test_a_block_with_the_wrong_shape_fails_in_one_line():
    wrapped = checked_attend(Kernel(block_out=lambda x: x.flatten(2)), "bad-block")
    with pytest.raises(KernelContractError, match="attention block of bad-block returned "
                                                  r"\(2, 8, 16\)") as info:
        wrapped.block(torch.randn(2, 8, 4, 4))
    assert "\n" not in str(info.value)


def test_a_block_returning_nan_fails_in_one_line():
    wrapped = checked_attend(Kernel(block_out=lambda x: x * float("nan")), "nan-block")
    with pytest.raises(KernelContractError, match="attention block of nan-block returned NaN"):
        wrapped.block(torch.randn(1, 2, 2, 2))
