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


# ------------------------------------------------------------------------------------------
# Issue 22, item 5: every call is checked, not only the first
# ------------------------------------------------------------------------------------------
class Turns:
    """Correct for ``good`` calls, then ``bad(o)`` from the next call on."""

    def __init__(self, bad, good=1):
        self.bad, self.good, self.calls = bad, good, 0

    def __call__(self, q, k, v):
        self.calls += 1
        o = attend_reference(q, k, v)
        return o if self.calls <= self.good else self.bad(o)


def transposed(o):
    return o.transpose(1, 2).contiguous()  # (B, Dv, N)


def test_a_kernel_that_turns_to_the_wrong_shape_on_its_second_call_is_caught_there():
    wrapped = checked_attend(Turns(transposed), "turncoat")
    wrapped(*qkv())
    with pytest.raises(KernelContractError, match=r"turncoat returned shape \(2, 4, 5\); the "
                                                  r"contract is \(B, N, Dv\) = \(2, 5, 4\)"):
        wrapped(*qkv())


def test_a_wrong_dtype_on_a_later_call_is_caught_on_that_call():
    wrapped = checked_attend(Turns(lambda o: o.double(), good=4), "drifter")
    for _ in range(4):
        wrapped(*qkv())
    with pytest.raises(KernelContractError, match="drifter returned dtype torch.float64"):
        wrapped(*qkv())


def test_nan_from_a_later_call_is_caught_at_the_next_periodic_check():
    from ganbench.sweep.kernel_check import FINITE_EVERY

    wrapped = checked_attend(Turns(lambda o: o * float("nan")), "nanny")
    for _ in range(FINITE_EVERY - 1):  # calls 1..15: the first is checked and fine
        wrapped(*qkv())
    with pytest.raises(KernelContractError, match="nanny returned NaN or inf for finite"):
        wrapped(*qkv())  # call 16


def test_a_later_block_of_the_wrong_shape_is_caught_on_that_call():
    wrapped = checked_attend(Kernel(), "blocky")
    x = torch.randn(2, 8, 4, 4)
    wrapped.block(x)
    wrapped._attend.block_out = lambda x: x.flatten(2)
    with pytest.raises(KernelContractError, match="attention block of blocky returned"):
        wrapped.block(x)


class Model(torch.nn.Module):
    def __init__(self, attend):
        super().__init__()
        self.attend, self.lin = attend, torch.nn.Linear(4, 4)

    def forward(self, x):
        q = self.lin(x)
        return self.attend(q, q, q).sum()


@pytest.mark.slow  # ~15 s of torch.compile on the shared 2-core machine
def test_under_compile_shape_is_checked_on_retrace_and_nan_by_verify():
    x = torch.randn(2, 5, 4)

    fine = checked_attend(attend_reference, "fine", device="cpu")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = torch.compile(Model(fine))
    for _ in range(3):
        model(x).backward()
    fine.verify()  # nothing to report
    assert not torch._dynamo.utils.counters["graph_break"]  # the checks break no graph

    turncoat = checked_attend(Turns(transposed), "turncoat", device="cpu")
    torch._dynamo.reset()
    model = torch.compile(Model(turncoat))
    model(x).backward()
    with pytest.raises(KernelContractError, match="turncoat returned shape"):
        model(x)  # the kernel's state changed: traced again, checked again

    nanny = checked_attend(Turns(lambda o: o * float("nan"), good=0), "nanny", device="cpu")
    torch._dynamo.reset()
    model = torch.compile(Model(nanny))
    model(x).backward()  # no sync inside the graph: the flag is read by verify()
    with pytest.raises(KernelContractError, match="nanny returned NaN or inf for finite "
                                                  r"inputs \(found in a compiled call\)"):
        nanny.verify()
    nanny.verify()  # reported once, then cleared
    torch._dynamo.reset()
