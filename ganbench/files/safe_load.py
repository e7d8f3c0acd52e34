"""Loading weight files that may have been edited or planted: one clear line, never advice to
switch the protection off.

Every ganbench weight file is read with ``torch.load(weights_only=True)``, which builds only
tensors and plain containers. torch's own refusal message runs over many lines and, cut to its
first line, reads "This file can still be loaded, to do so you have two options..." followed by
how to disable the check: exactly the wrong advice for a file of unknown origin. So refusals
are reworded here and torch's text is never shown for them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Union

from ganbench.errors import UserError

LIMIT = 160  # characters of an underlying reason to keep in the one line


def refusal(path: Union[str, Path], what: str) -> UserError:
    return UserError(f"{path} is not a {what}, or may be unsafe: it holds Python objects other "
                     "than tensors and plain data, so ganbench's safe (weights-only) loader "
                     "refused it; nothing in it ran")


def describe(path: Union[str, Path], what: str, exc: BaseException) -> UserError:
    """A one-line UserError for any failure to load ``path`` as a ``what``."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, pickle.UnpicklingError):
        return refusal(path, what)
    text = " ".join(str(exc).split())
    if "state_dict" in text:
        reason = "its tensors do not fit the model (missing, unexpected or mis-shaped weights)"
    elif isinstance(exc, OSError) and getattr(exc, "strerror", None):
        reason = exc.strerror
    else:
        reason = f"{type(exc).__name__}: {text}"[:LIMIT]
    return UserError(f"cannot load {path}: not a readable {what} ({reason})")


def load_tensors(path: Union[str, Path], what: str):
    """``torch.load(path, weights_only=True)`` on the CPU; UserError (one line) on failure."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # anything a damaged or hostile file can provoke
        raise describe(path, what, exc) from None
