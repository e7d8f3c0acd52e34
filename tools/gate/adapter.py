"""The training loop of whichever layout a tree has: one call for the gate, every version.

The gate compares HEAD with a base that may be many commits back, across moves of the package
and changes of the loop's signature. Everything else the gate needs is reached through stable
entry points (the plugin registry, ``ganbench.specs``); the training loop is reached here, and
only here. The layout is detected by what the imported tree has, never by commit hash:

  ========== =========================== =================================================
  layout     module                      ``train`` call
  ========== =========================== =================================================
  settings   ``ganbench.training.loop``  ``train(G, D, loss, batches, TrainSettings(...))``
  keywords   ``ganbench.training.loop``  ``train(G, D, loss, batches, steps=..., ...)``
  flat       ``ganbench.train``          ``train(G, D, loss, batches, steps=..., ...)``
  ========== =========================== =================================================

(The middle row is the restructure half-way: the module moved, the signature not yet.) Every
layout has ``Batches(images, batch_size, seed)``, ``seed_everything(seed)`` and ``generate(G,
n, z_dim, device, seed, ...)`` at the same names. A tree that has none of these, or whose loop
needs a setting the gate does not know, raises :class:`AdapterError` naming why: the gate
reports that side as unable to run, never as skipped.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

# Newest first: a tree that has both (unlikely) is taken as the newer layout.
LOOP_MODULES = ("ganbench.training.loop", "ganbench.train")


class AdapterError(RuntimeError):
    """This tree's training loop cannot be driven by the gate: a one-line reason."""


def call_with_supported(fn: Callable, /, **kwargs):
    """``fn(**kwargs)`` without the keywords ``fn`` does not accept (older/newer API)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(**kwargs)


@dataclass(frozen=True)
class Loop:
    """One tree's training loop, called the same way whatever its layout."""

    module: ModuleType
    layout: str   # "settings" | "keywords" | "flat" (module docstring)

    def describe(self) -> str:
        return f"{self.module.__name__}.train ({self.layout})"

    @property
    def Batches(self):  # noqa: N802  (the tree's class, under its own name)
        return self.module.Batches

    def seed_everything(self, seed: int) -> None:
        self.module.seed_everything(seed)

    def generate(self, G, n: int, z_dim: int, device: str, seed: int):
        return call_with_supported(self.module.generate, G=G, n=n, z_dim=z_dim, device=device,
                                   seed=seed)

    def train(self, G, D, loss, batches, *, steps: int, warmup: int, z_dim: int, g_lr: float,
              d_lr: float, betas: tuple[float, float], device: str, seed: int):
        """One ``train()`` call with these settings; everything else at the tree's defaults
        (fp32, the default step, no evaluation, checkpoints or hooks)."""
        given = dict(steps=steps, warmup=warmup, z_dim=z_dim, g_lr=g_lr, d_lr=d_lr,
                     betas=betas, device=device, seed=seed)
        if self.layout == "settings":
            return self.module.train(G, D, loss, batches, self._settings(given))
        return call_with_supported(self.module.train, G=G, D=D, loss=loss, batches=batches,
                                   **given)

    def _settings(self, given: dict[str, Any]):
        cls = self.module.TrainSettings
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in given
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise AdapterError(f"{self.module.__name__}.TrainSettings requires "
                               f"{', '.join(missing)}, which the gate's adapter does not set")
        names = {f.name for f in fields}
        return cls(**{k: v for k, v in given.items() if k in names})


_LOOP: list[Loop] = []


def loop() -> Loop:
    """This process's tree's training loop (found once; the tree is fixed per process)."""
    if not _LOOP:
        _LOOP.append(find_loop())
    return _LOOP[0]


def find_loop() -> Loop:
    """Detect the layout by importing what the tree has (AdapterError when nothing fits)."""
    tried = []
    for name in LOOP_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this module (or its package) is not in the tree" means another layout;
            # a missing dependency inside the loop is this tree failing to import.
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise AdapterError(f"{name} does not import: {exc}") from exc
            tried.append(name)
            continue
        lacking = [a for a in ("train", "Batches", "seed_everything", "generate")
                   if not hasattr(module, a)]
        if lacking:
            raise AdapterError(f"{name} has no {', '.join(lacking)}: a layout the gate's "
                               "adapter does not know")
        if hasattr(module, "TrainSettings"):
            if not dataclasses.is_dataclass(module.TrainSettings):
                raise AdapterError(f"{name}.TrainSettings is not a dataclass")
            return Loop(module, "settings")
        return Loop(module, "keywords" if name != "ganbench.train" else "flat")
    raise AdapterError(f"no training loop in this tree (tried {', '.join(tried)})")
