"""The attention-kernel contract, checked on a kernel's first real call in a run.

``attend(q, k, v) -> o`` with q, k (B, N, Dqk), v (B, N, Dv) must return o of shape (B, N, Dv),
in v's dtype (or the autocast dtype), with finite values when its inputs are finite. A kernel
that returns (B, Dv, N) would otherwise train "fine" with a silently wrong model, so the first
call is checked and a breach is one line naming the plugin. Later calls go straight through:
the check costs one host sync, once.
"""

from __future__ import annotations

from typing import Callable

from ganbench.errors import KernelContractError


def check_output(name: str, q, k, v, o) -> None:
    """Raise KernelContractError unless ``o`` is what ``attend(q, k, v)`` must return."""
    import torch

    B, N, Dv = q.shape[0], q.shape[1], v.shape[-1]
    if not isinstance(o, torch.Tensor):
        raise KernelContractError(f"attention kernel {name} returned {type(o).__name__}, not a "
                                  "tensor")
    if tuple(o.shape) != (B, N, Dv):
        raise KernelContractError(f"attention kernel {name} returned shape {tuple(o.shape)}; "
                                  f"the contract is (B, N, Dv) = {(B, N, Dv)} for q "
                                  f"{tuple(q.shape)}, v {tuple(v.shape)}")
    allowed = {v.dtype}
    if torch.is_autocast_enabled(o.device.type):
        allowed.add(torch.get_autocast_dtype(o.device.type))
    if o.dtype not in allowed:
        raise KernelContractError(f"attention kernel {name} returned dtype {o.dtype}; expected "
                                  f"{' or '.join(sorted(map(str, allowed)))} (v's dtype)")
    inputs_finite = all(bool(torch.isfinite(t).all()) for t in (q, k, v))
    if inputs_finite and not bool(torch.isfinite(o).all()):
        raise KernelContractError(f"attention kernel {name} returned NaN or inf for finite "
                                  "inputs")


def check_block_output(name: str, x, y) -> None:
    """Raise KernelContractError unless a fused block's ``y`` is shaped like its input ``x``
    (y = x + gamma * o), in x's dtype or the autocast dtype, finite for finite x."""
    import torch

    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise KernelContractError(f"attention block of {name} returned {got}; the contract is "
                                  f"x's shape {tuple(x.shape)}")
    if bool(torch.isfinite(x).all()) and not bool(torch.isfinite(y).all()):
        raise KernelContractError(f"attention block of {name} returned NaN or inf for finite "
                                  "inputs")


class checked_attend:
    """``attend`` with its first eager call checked by :func:`check_output` (and, when the
    kernel offers a fused ``block``, that block's first call by :func:`check_block_output`).

    Every other attribute of the kernel (``prepare``, ``block``, ``backend_used``, ...) is
    reached through this wrapper unchanged, so optional attributes keep working. Calls traced
    by ``--compile`` (torch.compile of the whole G) pass through unchecked: a data-dependent
    check there would break the graph. A kernel that compiles itself (compile-attn) is still
    checked, since its caller runs eagerly.
    """

    def __init__(self, attend: Callable, name: str):
        self._attend, self._name = attend, name
        self._checked = {"attend": False, "block": False}
        self.__wrapped__ = attend
        self.__doc__ = getattr(attend, "__doc__", None)

    def _due(self, which: str) -> bool:
        if self._checked[which]:  # every call after the first: one dict lookup, nothing more
            return False
        import torch

        return not torch.compiler.is_compiling()

    def __call__(self, q, k, v):
        o = self._attend(q, k, v)
        if self._due("attend"):
            check_output(self._name, q, k, v, o.detach() if hasattr(o, "detach") else o)
            self._checked["attend"] = True
        return o

    def __getattr__(self, item: str):
        if item.startswith("_"):  # never forward private names (copy/pickle probe them early)
            raise AttributeError(item)
        value = getattr(self._attend, item)  # AttributeError when the kernel lacks it
        if item != "block":
            return value

        def block(x, *params):
            y = value(x, *params)
            if self._due("block"):
                check_block_output(self._name, x, y.detach() if hasattr(y, "detach") else y)
                self._checked["block"] = True
            return y
        return block
