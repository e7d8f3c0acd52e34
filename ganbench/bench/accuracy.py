"""Accuracy of an attention kernel against ``attend_reference`` in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ganbench.bench import one_line
from ganbench.bench.shapes import DTYPES, Shape, make_inputs
from ganbench.kernels.attention.reference import attend_reference

# Relative Frobenius error ||x - ref|| / ||ref|| allowed per input dtype, for o and for each of
# dq, dk, dv. Measured with eager attention against the float64 reference on all five SAGAN
# shapes (B = 2, seed 1, CPU): fp32 1.7e-7..5.0e-7; fp32 with TF32-rounded matmul operands
# (10-bit mantissa, unit roundoff 4.9e-4) 3.3e-4..6.4e-4; fp16 3.6e-4..7.9e-4; bf16
# 2.7e-3..6.5e-3. A masking or indexing bug (a dropped key, a wrong row) gives errors of order 1.
ACCURACY_LIMITS = {
    # 200x above fp32 arithmetic, 3x below the smallest TF32 error: a kernel silently using
    # TF32 for fp32 inputs is a finding (the fp32 peaks in roofline.py assume it does not).
    "fp32": 1e-4,
    # 16-bit operands: fp16 rounds to 11 significant bits, bf16 to 8 (8x coarser); the limits
    # leave ~10x over the measured errors for a kernel that rounds P or dS once more than eager.
    "fp16": 1e-2,
    "bf16": 5e-2,
}
ACCURACY_SEED = 1   # fresh inputs: not the timing inputs (seed 0)
# The float64 reference runs this many batch elements at a time: its N x N matrices are then
# 268 MB each at N = 4096 whatever the benchmark's batch (64 at once would be 8.6 GB each).
ACCURACY_CHUNK = 2
GRADS = ("dq", "dk", "dv")


@dataclass(frozen=True)
class AccuracyCase:
    """Inputs (q, k, v, dO in the benchmark's dtype) and the float64 answers for them."""

    inputs: tuple
    o: torch.Tensor
    grads: tuple  # dq, dk, dv


def accuracy_case(shape: Shape, batch: int, dtype: str, device: str) -> AccuracyCase:
    """Fresh inputs at the benchmark's ``batch`` and ``attend_reference``'s o, dq, dk, dv for
    them in float64 on ``device``, computed :data:`ACCURACY_CHUNK` batch elements at a time.

    The kernel is checked at the batch it was timed at, so a kernel specialised per shape
    (torch.compile, Triton) is not compiled again for the check. The reference takes the
    inputs after rounding to ``dtype``, so the error measured is the kernel's arithmetic, not
    the rounding of its inputs.
    """
    q, k, v, do = make_inputs(batch, shape, DTYPES[dtype], device, seed=ACCURACY_SEED)
    outs, grads = [], []
    for start in range(0, batch, ACCURACY_CHUNK):
        part = slice(start, start + ACCURACY_CHUNK)
        leaves = [t[part].detach().double().requires_grad_() for t in (q, k, v)]
        o = attend_reference(*leaves)
        grads.append(torch.autograd.grad(o, leaves, do[part].double()))
        outs.append(o.detach())
    return AccuracyCase((q, k, v, do), torch.cat(outs),
                        tuple(torch.cat(g) for g in zip(*grads)))


def relative_error(x: Optional[torch.Tensor], ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| (Frobenius) in float64; inf where ``x`` has a NaN or inf.

    ``x`` None (a gradient autograd found unused) counts as zeros. A shape other than
    ``ref``'s is a ValueError, not a broadcast.
    """
    if x is None:
        x = torch.zeros_like(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shape {tuple(x.shape)}, expected {tuple(ref.shape)}")
    x = x.detach().double()
    if not bool(torch.isfinite(x).all()):
        return math.inf
    num, den = float(torch.linalg.vector_norm(x - ref)), float(torch.linalg.vector_norm(ref))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def measure_accuracy(attend, case: AccuracyCase, backward: bool) -> dict[str, float]:
    """{"o": err} for the forward, or {"o", "dq", "dk", "dv": err} for forward + backward.

    The kernel gets copies of the inputs: ``case`` is shared by every kernel at this shape, and
    one writing into its inputs must not change what the next one is checked on.
    """
    q, k, v, do = (t.clone() for t in case.inputs)
    if not backward:
        with torch.no_grad():
            return {"o": relative_error(attend(q, k, v), case.o)}
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    o = attend(*leaves)
    grads = torch.autograd.grad(o, leaves, do, allow_unused=True)
    errors = {"o": relative_error(o, case.o)}
    errors.update({name: relative_error(g, ref)
                   for name, g, ref in zip(GRADS, grads, case.grads)})
    return errors


def check_accuracy(row: dict, attend, case: Callable[[], AccuracyCase], dtype: str) -> None:
    """Fill the rel_err_* columns; a row over the limit, or a failing check, gets a status."""
    try:
        errors = measure_accuracy(attend, case(), backward=row["pass_"] == "fwd+bwd")
    except Exception as exc:  # the timings stand; the row says why it has no errors
        row["status"] = one_line("accuracy check failed", exc)
        return
    for name, err in errors.items():
        row[f"rel_err_{name}"] = err
    worst = max(errors, key=errors.get)
    row["rel_err_max"] = errors[worst]
    limit = ACCURACY_LIMITS[dtype]
    if not errors[worst] <= limit:
        row["status"] = f"inaccurate: rel err {errors[worst]:.3g} > limit {limit:g} ({worst})"
