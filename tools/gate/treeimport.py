"""Import ``ganbench`` from a given source tree, whatever is installed.

The package maps folders to packages (pyproject.toml ``[tool.setuptools] package-dir``:
``ganbench.plugins`` -> ``plugins/``, ``ganbench.kernels`` -> ``kernels/``, ...), so putting an
old checkout on ``sys.path`` would import its ``ganbench/`` folder and then the *installed*
plugins and kernels. :func:`install` puts a meta-path finder first on ``sys.meta_path`` that
resolves every module below ``ganbench`` inside the tree: mapped packages at their folder, and
everything else (modules, subpackages such as ``ganbench.sweep`` in ``ganbench/sweep/``, plain
folders without ``__init__.py``) in its parent's folder as the mapping places it. The
regression gate uses it for BOTH sides, old commit and new, so each is imported the same way;
:func:`assert_from_tree` proves afterwards that nothing came from elsewhere.

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
    """{package name: folder} for ``ganbench`` and every mapped subpackage of ``tree``.

    Read from the tree's pyproject.toml ``[tool.setuptools] package-dir``, setuptools' way:
    a ``""`` entry is the root folder of every package (``ganbench`` is then ``ROOT/ganbench``),
    and without any entry ``ganbench`` is the tree's ``ganbench/``.
    """
    tree = Path(tree).resolve()
    mapping: dict = {}
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        setuptools = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
        mapping = dict(setuptools.get("package-dir", {}))
    root = mapping.pop("", ".")
    mapping.setdefault(TOP, f"{root}/{TOP}")
    return {name: (tree / folder).resolve() for name, folder in mapping.items()
            if name == TOP or name.startswith(TOP + ".")}


def folder_of(package: str, dirs: dict[str, Path]) -> Path:
    """The folder of ``package`` (a ganbench package, mapped or not) inside the tree.

    setuptools' rule: the nearest mapped ancestor's folder, then one subfolder per remaining
    name (``ganbench.sweep`` -> ``<ganbench's folder>/sweep``). It needs nothing imported, so
    it answers the same whether or not the parent module is loaded yet.
    """
    name, rest = package, []
    while name not in dirs:
        name, _, leaf = name.rpartition(".")
        rest.insert(0, leaf)
    return dirs[name].joinpath(*rest)


class TreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``ganbench`` and every module below it in one tree: mapped packages at their
    folder, anything else (modules, subpackages with or without ``__init__.py``) in its
    parent package's folder in that tree, never in an installed ganbench."""

    def __init__(self, tree: Path):
        self.tree = Path(tree).resolve()
        self.dirs = package_dirs(self.tree)

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != TOP and not fullname.startswith(TOP + "."):
            return None
        spec = self._spec(fullname)
        if spec is None:
            # Not in this tree. Returning None would let the finders after this one try, and
            # an editable install's finder would hand over the installed module of that name.
            raise ModuleNotFoundError(f"No module named {fullname!r} in {self.tree}",
                                      name=fullname)
        return spec

    def _spec(self, fullname: str):
        folder = self.dirs.get(fullname)
        if folder is not None:  # a mapped package: its folder may be anywhere in the tree
            init = folder / "__init__.py"
            if init.is_file():
                return importlib.util.spec_from_file_location(
                    fullname, init, submodule_search_locations=[str(folder)])
            if not folder.is_dir():
                return None
            # A mapped folder without __init__.py: a namespace package, still this tree's.
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
            return spec
        # Unmapped: a module, a package or a plain folder (namespace package) in the parent's
        # folder. The parent's folder comes from the mapping, not from the loaded parent's
        # __path__, so an unmapped subpackage of an unmapped subpackage resolves in this tree.
        parent = fullname.rpartition(".")[0]
        return importlib.machinery.PathFinder.find_spec(
            fullname, [str(folder_of(parent, self.dirs))])


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
    """Loaded ganbench modules that do not come from inside ``tree`` ('name: where').

    A module's place is its file; a namespace package (a plain folder, no file) is placed by
    its ``__path__``, every entry of which must be inside the tree.
    """
    tree = Path(tree).resolve()
    bad = []
    for name, module in list(sys.modules.items()):
        if name != TOP and not name.startswith(TOP + "."):
            continue
        file: Optional[str] = getattr(module, "__file__", None)
        places = [file] if file is not None else list(getattr(module, "__path__", None) or [])
        if not places or not all(Path(p).resolve().is_relative_to(tree) for p in places):
            bad.append(f"{name}: {file if file is not None else places}")
    return sorted(bad)


def assert_from_tree(tree: Path) -> None:
    """Raise when any loaded ganbench module comes from outside ``tree``."""
    bad = foreign_modules(tree)
    if bad:
        raise RuntimeError(f"modules from outside {tree}: " + "; ".join(bad))
