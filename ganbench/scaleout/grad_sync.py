"""What the training loop asks of data-parallel training, with no-ops for one process.

:func:`ganbench.training.loop.train` calls these three; they only act when a module is wrapped in
DistributedDataParallel (see :mod:`ganbench.scaleout.distributed` for the whole contract). Kept
apart from ``distributed`` so that the loop depends on nothing that depends on it.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _ddp(module: nn.Module) -> Optional[DistributedDataParallel]:
    inner = getattr(module, "_orig_mod", module)  # look through torch.compile's wrapper
    return inner if isinstance(inner, DistributedDataParallel) else None


def grad_sync_off(module: nn.Module):
    """Context for a forward whose parameter gradients will be discarded: ``no_sync`` under DDP
    (the backward then all-reduces nothing for this module), nothing otherwise."""
    ddp = _ddp(module)
    return ddp.no_sync() if ddp is not None else contextlib.nullcontext()


def first_nonfinite(losses: torch.Tensor, model: nn.Module) -> Optional[int]:
    """Index of the first row of ``losses`` (steps, k) holding a NaN/inf, or None.

    When ``model`` is DDP-wrapped the answer is agreed over its replicas (the earliest bad row on
    any rank), so every rank stops at the same step; were each rank to decide alone, one could
    leave the loop while the others wait in their next all-reduce forever.
    """
    bad = (~torch.isfinite(losses)).reshape(len(losses), -1).any(dim=1)
    first = int(bad.nonzero()[0]) if bool(bad.any()) else len(losses)
    ddp = _ddp(model)
    if ddp is not None:
        agreed = torch.tensor([first], device=losses.device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=ddp.process_group)
        first = int(agreed)
    return first if first < len(losses) else None


def any_rank(flag: bool, model: nn.Module) -> bool:
    """``flag`` as every replica of ``model`` sees it: True on all ranks when it is True on any
    (one one-integer all-reduce under DDP; ``flag`` itself otherwise). A wall-time budget is
    read from each rank's own clock, and a rank that stopped alone would leave the others
    waiting in their next all-reduce forever."""
    ddp = _ddp(model)
    if ddp is None:
        return flag
    device = next(ddp.module.parameters()).device
    agreed = torch.tensor([int(flag)], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX, group=ddp.process_group)
    return bool(agreed)
