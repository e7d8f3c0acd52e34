"""Developer tools, run from the repository root (``python -m tools.gate``).

Not part of the installed ``ganbench`` package (pyproject.toml lists its packages explicitly),
so nothing here is importable from a wheel, and nothing in ``ganbench`` may import it.
"""
