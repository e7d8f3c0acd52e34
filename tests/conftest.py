"""Shared test set-up.

- Third-party plugins installed on the machine must not change what the tests see, so only
  built-ins load unless a test opts in (GANBENCH_LOAD_PLUGINS set but empty = none).
- Without a GPU, Triton kernels run under the interpreter; TRITON_INTERPRET must be set before
  any kernel module is imported (triton reads it when @triton.jit decorates).
"""

import os

os.environ["GANBENCH_LOAD_PLUGINS"] = ""  # built-ins only, whatever the shell exports
os.environ.pop("GANBENCH_BLOCK_PLUGINS", None)
os.environ.pop("GANBENCH_MNIST", None)  # `classifier --mnist`'s default: the help shows its name
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass
