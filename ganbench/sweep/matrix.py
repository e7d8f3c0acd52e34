"""Plugin names -> the combinations to train (architecture x loss x attention kernel).

Rules, in the order a user meets them:
- names may come from any of the three trainable kinds, in any order; an unknown name is an
  error with close matches; a metric or dataset name points the user at --metrics / --data;
- architectures: the ones named, else every architecture (only those with attention when only
  kernels are named);
- losses: the ones named, else each architecture's own default;
- attention kernels pair only with architectures that use attention: the ones named, else the
  architecture's default. An architecture without attention runs once without a kernel, and
  each (architecture, kernel) pair that makes no sense is reported once as skipped, never run
  under a misleading label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ganbench.errors import UserError
from ganbench.registry import Registry, why_unavailable

TRAINABLE = ("architecture", "loss", "attention")


@dataclass(frozen=True)
class Combination:
    architecture: str
    loss: str
    attention: Optional[str]
    step: str = "ganbench"  # "textbook": the chapter's own step (--baseline textbook)

    @property
    def name(self) -> str:
        """'sagan+hinge+eager-attn', 'dcgan+bce', 'sagan+hinge+eager-attn@textbook' (used for
        file names and table rows)."""
        name = "+".join(p for p in (self.architecture, self.loss, self.attention) if p)
        return name if self.step == "ganbench" else f"{name}@{self.step}"


def build_matrix(names: tuple[str, ...], registry: Registry) -> tuple[list[Combination],
                                                                        list[str]]:
    """Return (combinations, skip notes). Raises UserError for unknown or misplaced names."""
    chosen: dict[str, list[str]] = {kind: [] for kind in TRAINABLE}
    for name in names:
        kind = registry.kind_of(name)
        if kind in ("metric", "dataset"):
            flag = "--metrics" if kind == "metric" else "--data"
            raise UserError(f"{name!r} is a {kind} plugin; choose it with {flag}, not --plugins")
        entry = registry.lookup(name, TRAINABLE)  # raises with close matches if unknown
        chosen[entry.kind].append(name)

    archs = registry.architectures
    if chosen["architecture"]:
        arch_names = chosen["architecture"]
    elif chosen["attention"] and not chosen["loss"]:
        arch_names = [n for n, a in archs.items() if a.uses_attention]
    else:
        arch_names = list(archs)

    combos: list[Combination] = []
    notes: list[str] = []
    for arch_name in arch_names:
        arch = archs[arch_name]
        losses = chosen["loss"] or [arch.defaults.loss]
        if arch.uses_attention:
            kernels = chosen["attention"] or [arch.defaults.attention]
            if None in kernels:
                raise UserError(f"architecture {arch_name!r} uses attention but declares no "
                                "default kernel; name one in --plugins")
        else:
            kernels = [None]
            for kernel in chosen["attention"]:
                notes.append(f"skipped {arch_name} x {kernel}: {arch_name} has no attention "
                             f"layers, so it runs once without a kernel")
        for loss in losses:
            for kernel in kernels:
                combos.append(Combination(arch_name, loss, kernel))
    return combos, notes


def check_available(combos: list[Combination], registry: Registry, device: str) -> None:
    """Raise UserError naming the first plugin of any combination that cannot run on device."""
    seen = set()
    for combo in combos:
        for kind, name in (("architecture", combo.architecture), ("loss", combo.loss),
                           ("attention", combo.attention)):
            if name is None or name in seen:
                continue
            seen.add(name)
            reason = why_unavailable(registry.lookup(name, (kind,)).spec, device)
            if reason:
                raise UserError(f"{name} cannot run on {device}: {reason}")
