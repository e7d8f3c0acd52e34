"""``--baseline textbook``: the chapter's own training step as a row of the run, and every
row's speed against it.

A reader of the chapter asks how much faster ganbench trains than the book's loop. The answer
is only honest when both are measured in the same run, on the same machine, at the same image
size, batch and data: so the baseline is an ordinary combination of the run, trained by the
same worker, whose step is :func:`ganbench.training.steps.textbook_step` instead of ganbench's. Per
architecture of the run there is one baseline row: the architecture's default loss and
attention kernel (the book's), fp32, eager, no ``--compile``, no CUDA graph, since the book
has none of these. Every row of that architecture then gains ``speedup_vs_textbook`` =
its images/s / the baseline's images/s (the baseline's own row says 1.0).
"""

from __future__ import annotations

import math
from typing import Optional

from ganbench.errors import UserError

BASELINES = ("textbook",)
SPEEDUP_COLUMN = "speedup_vs_textbook"


def check_baseline(name: Optional[str]) -> None:
    if name is not None and name not in BASELINES:
        raise UserError(f"--baseline must be one of {', '.join(BASELINES)}, got {name!r}")


def baseline_combos(combos: list, registry) -> list:
    """One textbook-step combination per architecture of ``combos``, in first-seen order, each
    with the architecture's default loss and kernel; they run before the others."""
    from ganbench.sweep.matrix import Combination

    seen: list = []
    for combo in combos:
        if combo.architecture in [c.architecture for c in seen]:
            continue
        d = registry.architectures[combo.architecture].defaults
        kernel = d.attention if registry.architectures[combo.architecture].uses_attention \
            else None
        seen.append(Combination(combo.architecture, d.loss, kernel, step="textbook"))
    return seen


def add_speedups(rows: list[dict]) -> list[dict]:
    """Fill ``speedup_vs_textbook`` on every trained row whose architecture, image size, batch
    and seed match a finished textbook row; rows without one get no value (never a guess)."""
    base = {_key(r): r.get("img_per_s") for r in rows
            if r.get("step") == "textbook" and r.get("status") == "ok"}
    for row in rows:
        ref = base.get(_key(row))
        ips = row.get("img_per_s")
        if row.get("status") == "ok" and _finite(ref) and _finite(ips) and ref > 0:
            row[SPEEDUP_COLUMN] = ips / ref
    return rows


def _key(row: dict) -> tuple:
    return (row.get("architecture"), row.get("image_size"), row.get("batch_size"),
            row.get("seed"))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
