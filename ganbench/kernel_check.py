"""The attention-kernel contract, checked on a kernel's first real call in a run.

``attend(q, k, v) -> o`` with q, k (B, N, Dqk), v (B, N, Dv) must return o of shape (B, N, Dv),
in v's dtype (or the autocast dtype), with finite values when its inputs are finite. A kernel
that returns (B, Dv, N) would otherwise train "fine" with a silently wrong model, so the first
call is checked and a breach is one line naming the plugin. Later calls go straight through:
the check costs one host sync, once.
"""

from __future__ import annotations

from typing import Callable

from ganbench.errors import UserError


class KernelContractError(UserError):
    """An attention kernel returned something the contract does not allow."""


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


def checked_attend(attend: Callable, name: str) -> Callable:
    """``attend`` with its first eager call checked by :func:`check_output`.

    Calls traced by ``--compile`` (torch.compile of the whole G) pass through unchecked: a
    data-dependent check there would break the graph. A kernel that compiles itself
    (compile-attn) is still checked, since its caller runs eagerly.
    """
    import functools

    state = {"checked": False}

    def call(q, k, v):
        o = attend(q, k, v)
        if not state["checked"]:
            import torch

            if not torch.compiler.is_compiling():
                check_output(name, q, k, v, o.detach() if hasattr(o, "detach") else o)
                state["checked"] = True
        return o

    functools.update_wrapper(call, attend)  # keeps optional attributes (backend_used)
    return call
