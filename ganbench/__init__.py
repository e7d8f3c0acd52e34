"""ganbench: train the textbook's DCGAN and SAGAN on handwritten digits and benchmark them.

From Python (docs/api.md)::

    import ganbench
    run = ganbench.run(plugins="dcgan,sagan", steps=60, image_size=32)
    run.table, run.samples["dcgan+bce"], run.compare(ganbench.load("results/runs/earlier"))

Kept import-light on purpose: ``ganbench --help`` and ``import ganbench`` must not import torch
(about 1.8 s) or pandas; ``run``, ``load`` and the classes load on first use.
"""

__version__ = "0.1.0"

from ganbench.hookspecs import hookimpl  # noqa: E402  (pluggy only: cheap)

# The Python API (ganbench.api), loaded when first touched.
_API = ("run", "load", "Run", "Comparison", "Images")

__all__ = ["hookimpl", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from ganbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganbench' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_API))
