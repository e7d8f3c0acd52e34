"""ganbench from Python: ``ganbench.run()``, ``ganbench.load()``, :class:`Run`, comparisons.

Reference: docs/api.md (tests/test_api.py keeps it in step with the docstrings). Importing this
package is cheap (no torch, no pandas): the names below load their module on first use.
"""

from __future__ import annotations

import importlib

# Public name -> the module that defines it.
PUBLIC = {
    "run": "ganbench.api.runs",
    "load": "ganbench.api.runs",
    "Run": "ganbench.api.runs",
    "Comparison": "ganbench.api.compare",
    "Images": "ganbench.api.display",
}
__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC))
