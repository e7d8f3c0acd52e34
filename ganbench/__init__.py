"""ganbench: train the textbook's DCGAN and SAGAN on handwritten digits and benchmark them.

Kept import-light on purpose: ``ganbench --help`` must not import torch (about 1.8 s).
"""

__version__ = "0.1.0"

from ganbench.hookspecs import hookimpl  # noqa: E402  (pluggy only: cheap)

__all__ = ["hookimpl", "__version__"]
