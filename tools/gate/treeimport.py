"""Import ``ganbench`` from a given source tree, whatever is installed.

The package maps folders to packages (pyproject.toml ``[tool.setuptools] package-dir``:
``ganbench.plugins`` -> ``plugins/``, ``ganbench.kernels`` -> ``kernels/``, ...), so putting an
old checkout on ``sys.path`` would import its ``ganbench/`` folder and then the *installed*
plugins and kernels. :func:`install` puts a meta-path finder first on ``sys.meta_path`` that
resolves every mapped package (and so, through their ``__path__``, every submodule) inside the
tree. The regression gate uses it for BOTH sides, old commit and new, so each is imported the
same way; :func:`assert_from_tree` proves afterwards that nothing came from elsewhere.

The mapping is read from the tree's own pyproject.toml, so a commit that moves a folder is
imported the way it would be installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Optional

TOP = "ganbench"


def package_dirs(tree: Path) -> dict[str, Path]:
    """{package name: folder} for ``ganbench`` and every mapped subpackage of ``tree``."""
    tree = Path(tree).resolve()
    mapping = {TOP: TOP}
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        setuptools = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
        mapping.update(setuptools.get("package-dir", {}))
    return {name: tree / folder for name, folder in mapping.items()
            if name == TOP or name.startswith(TOP + ".")}


class TreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``ganbench`` and its subpackages in one tree, mapped folders included."""

    def __init__(self, tree: Path):
        self.tree = Path(tree).resolve()
        self.dirs = package_dirs(self.tree)

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != TOP and not fullname.startswith(TOP + "."):
            return None
        folder = self.dirs.get(fullname)
        if folder is not None:  # a mapped package: its folder may be anywhere in the tree
            init = folder / "__init__.py"
            if not init.is_file():
                return None
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[str(folder)])
        # A plain module or unmapped subpackage: look in the parent package's folder only.
        parent, _, leaf = fullname.rpartition(".")
        parent_dir = self.dirs.get(parent)
        if parent_dir is None:
            module = sys.modules.get(parent)
            locations = list(getattr(module, "__path__", []) or [])
        else:
            locations = [str(parent_dir)]
        return importlib.machinery.PathFinder.find_spec(fullname, locations)


def install(tree: Path) -> TreeFinder:
    """Make ``import ganbench...`` load from ``tree``; must run before any ganbench import."""
    already = [m for m in sys.modules if m == TOP or m.startswith(TOP + ".")]
    if already:
        raise RuntimeError(f"ganbench was imported before the tree bootstrap: {already[:3]}")
    finder = TreeFinder(tree)
    sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()
    return finder


def foreign_modules(tree: Path) -> list[str]:
    """Loaded ganbench modules whose file is not inside ``tree`` ('name: file')."""
    tree = Path(tree).resolve()
    bad = []
    for name, module in list(sys.modules.items()):
        if name != TOP and not name.startswith(TOP + "."):
            continue
        file: Optional[str] = getattr(module, "__file__", None)
        if file is None or not Path(file).resolve().is_relative_to(tree):
            bad.append(f"{name}: {file}")
    return sorted(bad)


def assert_from_tree(tree: Path) -> None:
    """Raise when any loaded ganbench module comes from outside ``tree``."""
    bad = foreign_modules(tree)
    if bad:
        raise RuntimeError(f"modules from outside {tree}: " + "; ".join(bad))
