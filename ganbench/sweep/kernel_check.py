"""The attention-kernel contract, checked on every call of a kernel in a run.

``attend(q, k, v) -> o`` with q, k (B, N, Dqk), v (B, N, Dv) must return o of shape (B, N, Dv),
in v's dtype (or the autocast dtype), with finite values when its inputs are finite. A kernel
that returns (B, Dv, N) would otherwise train "fine" with a silently wrong model, and one that
does so only from its second call on (issue 22) got past a first-call check, so:

- shape and dtype are checked on **every** eager call (Python attribute reads, no device
  work); under ``--compile`` they are checked while the call is traced, and the compiled
  graph is guarded on those shapes and on the kernel's Python state (a kernel that changes
  behaviour is traced again, and checked again);
- finiteness (a reduction over q, k, v and o, and on CUDA a host sync) on the first eager
  call and every :data:`FINITE_EVERY`-th after it; under ``--compile`` each traced call adds
  the same test to the graph, folded into one flag on the device, and :meth:`checked_attend.verify`
  reads that flag (the runner calls it at each progress report, every 10 steps, where the
  loop synchronises anyway).

A breach is one line naming the plugin (:class:`KernelContractError`).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch  # imported once here: the check runs on every attention call

from ganbench.errors import KernelContractError


# Eager calls between finiteness checks. A SAGAN training step makes 10 attention calls
# (counted by scripts/kernel_check_overhead.py), so this is about every other step. Measured
# there (32x32, batch 64, bf16, 1 thread; loaded 2-core VM, load average ~10.5): the shape and
# dtype check costs ~1 us a call, a finiteness check 1.4-3.1 ms (4 aminmax reductions); as run,
# ~126 us per call on average, 0.35% of the attention calls' own time, ~1.3 ms per step.
FINITE_EVERY = 16


def check_shape_dtype(name: str, q, k, v, o) -> None:
    """Raise KernelContractError unless ``o`` has the shape and dtype the contract allows."""
    B, N, Dv = q.shape[0], q.shape[1], v.shape[-1]
    if not isinstance(o, torch.Tensor):
        raise KernelContractError(f"attention kernel {name} returned {type(o).__name__}, not a "
                                  "tensor")
    if tuple(o.shape) != (B, N, Dv):
        raise KernelContractError(f"attention kernel {name} returned shape {tuple(o.shape)}; "
                                  f"the contract is (B, N, Dv) = {(B, N, Dv)} for q "
                                  f"{tuple(q.shape)}, v {tuple(v.shape)}")
    if o.dtype != v.dtype:
        allowed = {v.dtype}
        if torch.is_autocast_enabled(o.device.type):
            allowed.add(torch.get_autocast_dtype(o.device.type))
        if o.dtype not in allowed:
            raise KernelContractError(f"attention kernel {name} returned dtype {o.dtype}; "
                                      f"expected {' or '.join(sorted(map(str, allowed)))} "
                                      "(v's dtype)")


def _all_finite(t):
    """A 0-d bool tensor: no NaN or inf in ``t`` (no host sync). By its minimum and maximum
    (torch.aminmax propagates NaN; inf is an extreme): one pass and two numbers, where
    ``isfinite(t).all()`` builds a bool tensor the size of t, ~150x slower on the CPU (64x256x64
    fp32, 1 thread: 111 us against 19957 us; loaded 2-core VM)."""
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    low, high = torch.aminmax(t)
    return torch.isfinite(low) & torch.isfinite(high)


def _nonfinite_for_finite(inputs, out):
    """A 0-d bool tensor: every input finite and ``out`` not (no host sync)."""
    bad = ~_all_finite(out)
    for t in inputs:
        bad = bad & _all_finite(t)
    return bad


def check_output(name: str, q, k, v, o) -> None:
    """Raise KernelContractError unless ``o`` is what ``attend(q, k, v)`` must return (shape,
    dtype and finiteness; one host sync)."""
    check_shape_dtype(name, q, k, v, o)
    if bool(_nonfinite_for_finite((q, k, v), o)):
        raise KernelContractError(f"attention kernel {name} returned NaN or inf for finite "
                                  "inputs")


def check_block_shape(name: str, x, y) -> None:
    """Raise KernelContractError unless a fused block's ``y`` is shaped like its input ``x``."""
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise KernelContractError(f"attention block of {name} returned {got}; the contract is "
                                  f"x's shape {tuple(x.shape)}")


def check_block_output(name: str, x, y) -> None:
    """Raise KernelContractError unless a fused block's ``y`` is shaped like its input ``x``
    (y = x + gamma * o), finite for finite x (one host sync)."""
    check_block_shape(name, x, y)
    if bool(_nonfinite_for_finite((x,), y)):
        raise KernelContractError(f"attention block of {name} returned NaN or inf for finite "
                                  "inputs")


class checked_attend:
    """``attend`` with the contract checked on every call (module docstring); a kernel's
    fused ``block`` likewise (shape every call, finiteness periodically).

    Every other attribute of the kernel (``prepare``, ``block``, ``backend_used``, ...) is
    reached through this wrapper unchanged, so optional attributes keep working. ``device``:
    where the compiled-call flag lives; without it (tests, eager use) the flag is made at the
    first eager call, and calls traced before any eager one get the shape check only.
    """

    def __init__(self, attend: Callable, name: str, device: Optional[str] = None):
        self._attend, self._name = attend, name
        self._calls = {"attend": 0, "block": 0}
        self._flag = None
        if device is not None:
            self._flag = torch.zeros((), dtype=torch.bool, device=device)
        self.__wrapped__ = attend
        self.__doc__ = getattr(attend, "__doc__", None)

    def _finite_due(self, which: str) -> bool:
        """Count an eager call; True on the first and every FINITE_EVERY-th."""
        count = self._calls[which] = self._calls[which] + 1
        return count == 1 or count % FINITE_EVERY == 0

    def __call__(self, q, k, v):
        o = self._attend(q, k, v)
        if torch.compiler.is_compiling():
            # Traced once per graph: the shapes checked here are the graph's (it is guarded on
            # them). The finiteness test becomes part of the graph: no sync, no graph break.
            check_shape_dtype(self._name, q, k, v, o)
            if self._flag is not None and isinstance(o, torch.Tensor):
                self._flag.logical_or_(_nonfinite_for_finite(
                    (q.detach(), k.detach(), v.detach()), o.detach()))
            return o
        out = o.detach() if hasattr(o, "detach") else o
        if self._finite_due("attend"):
            check_output(self._name, q, k, v, out)
        else:
            check_shape_dtype(self._name, q, k, v, out)
        return o

    def verify(self) -> None:
        """Raise KernelContractError if a compiled call returned NaN or inf for finite inputs
        since the last call (one host read of a flag on the device)."""
        if self._flag is not None and bool(self._flag):
            self._flag.zero_()
            raise KernelContractError(f"attention kernel {self._name} returned NaN or inf for "
                                      "finite inputs (found in a compiled call)")

    def __getattr__(self, item: str):
        if item.startswith("_"):  # never forward private names (copy/pickle probe them early)
            raise AttributeError(item)
        value = getattr(self._attend, item)  # AttributeError when the kernel lacks it
        if item != "block":
            return value

        def block(x, *params):
            y = value(x, *params)
            out = y.detach() if hasattr(y, "detach") else y
            if self._finite_due("block"):
                check_block_output(self._name, x, out)
            else:
                check_block_shape(self._name, x, out)
            return y
        return block
