"""tools/gate/treeimport.py: ganbench is imported from the given tree, and only from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.gate import treeimport


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_bootstrap_imports_every_module_from_the_given_tree(package_copy, run_python):
    tree = package_copy()
    # Mark the copy's plugin so the test sees which file registered it.
    dcgan = tree / "plugins" / "dcgan.py"
    dcgan.write_text(dcgan.read_text() + "\nGATE_COPY_MARK = 1\n")
    out = run_python(f"""
        import sys
        from tools.gate import treeimport
        treeimport.install({str(tree)!r})
        from ganbench.registry import get_registry, DEFAULT_PLUGINS
        reg = get_registry()
        import ganbench.plugins.dcgan as d, ganbench.kernels.attention as ka
        assert d.GATE_COPY_MARK == 1
        assert "dcgan" in reg.architectures and "eager-attn" in reg.attention
        assert all(m in sys.modules for m in DEFAULT_PLUGINS)
        treeimport.assert_from_tree({str(tree)!r})
        print(ka.__file__)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(tree / "kernels" / "attention" / "__init__.py")


# A tree shaped like the restructured package: subpackages that pyproject does not map
# (ganbench/sweep/ with __init__.py, ganbench/files/ a plain folder, a folder inside a mapped
# folder), none of which the installed ganbench has at these names.
SYNTHETIC = {
    "pyproject.toml": '[tool.setuptools]\npackage-dir = { "ganbench" = "ganbench", '
                      '"ganbench.plugins" = "plugins" }\n',
    "ganbench/__init__.py": "WHERE = 'synthetic'\n",
    "ganbench/sweep/__init__.py": "",
    "ganbench/sweep/plan.py": "PLAN = 'synthetic plan'\n",
    "ganbench/sweep/deep/leaf.py": "LEAF = 1\n",            # plain folder in a subpackage
    "ganbench/files/atomic.py": "ATOMIC = 1\n",              # plain folder: no __init__.py
    "plugins/__init__.py": "",
    "plugins/extra/__init__.py": "",
    "plugins/extra/mod.py": "MOD = 1\n",                     # unmapped under a mapped folder
}


def test_unmapped_subpackages_resolve_inside_the_tree(tmp_path, run_python):
    tree = _write(tmp_path / "tree", SYNTHETIC)
    out = run_python(f"""
        import importlib
        from tools.gate import treeimport
        treeimport.install({str(tree)!r})
        import ganbench.sweep.plan, ganbench.sweep.deep.leaf, ganbench.files.atomic
        import ganbench.plugins.extra.mod
        assert ganbench.WHERE == "synthetic" and ganbench.sweep.plan.PLAN == "synthetic plan"
        treeimport.assert_from_tree({str(tree)!r})
        for name in ("ganbench.sweep.plan", "ganbench.sweep.deep.leaf", "ganbench.files.atomic",
                     "ganbench.plugins.extra.mod"):
            print(importlib.import_module(name).__file__)
        try:  # the installed ganbench has this module; the tree does not: no leak
            import ganbench.data
        except ModuleNotFoundError:
            print("no ganbench.data")
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        str(tree / "ganbench/sweep/plan.py"), str(tree / "ganbench/sweep/deep/leaf.py"),
        str(tree / "ganbench/files/atomic.py"), str(tree / "plugins/extra/mod.py"),
        "no", "ganbench.data"]


def test_folders_follow_the_mapping_without_importing_anything(tmp_path):
    tree = _write(tmp_path / "tree", SYNTHETIC)
    dirs = treeimport.package_dirs(tree)
    assert treeimport.folder_of("ganbench.sweep.deep", dirs) == tree / "ganbench/sweep/deep"
    assert treeimport.folder_of("ganbench.plugins.extra", dirs) == tree / "plugins/extra"
    # setuptools' root entry ("" = "src"): ganbench lives in src/ganbench.
    src = _write(tmp_path / "src-tree", {"pyproject.toml": '[tool.setuptools]\n'
                                         'package-dir = { "" = "src" }\n'})
    assert treeimport.folder_of("ganbench.sweep", treeimport.package_dirs(src)) == \
        src / "src/ganbench/sweep"


def test_a_module_from_outside_the_tree_is_named(tmp_path, run_python):
    tree = _write(tmp_path / "tree", SYNTHETIC)
    elsewhere = _write(tmp_path / "elsewhere", {"x/y.py": ""})
    out = run_python(f"""
        import sys, types
        from tools.gate import treeimport
        treeimport.install({str(tree)!r})
        import ganbench.files
        ns = types.ModuleType("ganbench.stray")
        ns.__path__ = [{str(elsewhere / "x")!r}]   # a namespace package from another folder
        sys.modules["ganbench.stray"] = ns
        print(treeimport.foreign_modules({str(tree)!r}))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ganbench.stray" in out.stdout and "ganbench.files" not in out.stdout


def test_bootstrap_refuses_after_ganbench_was_imported(tmp_path):
    import ganbench  # noqa: F401  (already imported by the test session anyway)
    with pytest.raises(RuntimeError, match="before the tree bootstrap"):
        treeimport.install(tmp_path)
    assert treeimport.foreign_modules(tmp_path)  # the installed ganbench is foreign there
