"""`ganbench new-plugin NAME --kind KIND`: scaffold a plugin distribution that works as created.

``ganbench new-plugin focal --kind loss --out DIR`` writes ``DIR/ganbench-focal/``::

    pyproject.toml                 distribution "ganbench-focal", entry point in group "ganbench"
    README.md                      install, test, benchmark
    src/ganbench_focal/plugin.py   one working hook implementation for the kind
    tests/test_ganbench_focal.py   unit tests for it, and a check that ganbench finds it

The registered plugin is called NAME ("focal"); ``ganbench run --plugins ...,focal`` picks it up
once the folder is installed (``pip install -e "DIR/ganbench-focal[test]"``, which brings pytest
for its tests). The templates are package data: ``ganbench/templates/new_plugin/*.tmpl``.
Every template is a real implementation (a loss, an attention kernel computing
softmax(q k^T) v, an architecture, a metric, a dataset), so the scaffold's tests pass before
the author changes a line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from string import Template

from ganbench.options import Option, add_options

NAME = "new-plugin"
HELP = "scaffold a third-party plugin package (pyproject, hook implementation, tests)"
SYNOPSIS = "NAME --kind loss"
DESCRIPTION = ("Scaffold a plugin distribution, ganbench-NAME, with its entry point, one "
               "working hook implementation of the kind and tests that pass as created.")
DIST_PREFIX = "ganbench-"

# Templates live beside this module as package data (ganbench/templates/new_plugin/*.tmpl),
# filled with string.Template ($name) rather than str.format, so the generated code can use
# braces freely. Placeholders: $name (plugin name), $dist (distribution), $pkg (import package),
# $kind, $prefix (NAME in snake_case, for metric columns), $summary, $try_it.
TEMPLATES = "templates/new_plugin"


def template(file_name: str) -> str:
    """The text of one template file shipped with ganbench."""
    from importlib.resources import files

    return files("ganbench").joinpath(TEMPLATES, file_name).read_text(encoding="utf-8")


SUMMARIES = {
    "loss": "non-saturating logistic loss (template)",
    "attention": "softmax(q k^T) v in plain PyTorch (template)",
    "architecture": "two-layer MLP generator and discriminator (template)",
    "metric": "gap between the mean fake and mean real image (template)",
    "dataset": "synthetic vertical bars (template)",
}
# A first try of a new plugin: a short run (the default is the full CPU budget, 600 steps,
# ~2 minutes for dcgan+sagan on 2 quiet cores); 50 steps show that it trains and is measured.
TRY_STEPS = 50
TRY_IT = {
    "loss": f"ganbench run --plugins dcgan,bce,$name --steps {TRY_STEPS}",
    "attention": f"ganbench run --plugins sagan,eager-attn,$name --steps {TRY_STEPS}",
    "architecture": f"ganbench run --plugins dcgan,$name --steps {TRY_STEPS}",
    "metric": f"ganbench run --plugins dcgan --metrics $name --steps {TRY_STEPS}",
    "dataset": f"ganbench run --plugins dcgan --data $name --steps {TRY_STEPS}",
}
KINDS = ("loss", "attention", "architecture", "metric", "dataset")


OPTIONS = (
    Option("name", f"the plugin's name, lowercase-hyphen (e.g. focal-loss); the package is "
           f"{DIST_PREFIX}NAME", metavar="NAME"),
    Option("--kind", "what it provides", choices=KINDS, default="loss"),
    Option("--out", "folder to create the package in", type=Path, default=Path("."),
           metavar="DIR"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def plan_files(name: str, kind: str) -> dict[str, str]:
    """Relative path -> text of every file of the scaffold for plugin ``name`` of ``kind``."""
    dist = DIST_PREFIX + name
    pkg = dist.replace("-", "_")
    values = {"name": name, "dist": dist, "pkg": pkg, "kind": kind,
              "prefix": name.replace("-", "_"), "summary": SUMMARIES[kind]}
    values["try_it"] = Template(TRY_IT[kind]).substitute(values)

    def fill(template: str) -> str:
        return Template(template).substitute(values)

    return {
        "pyproject.toml": fill(template("pyproject.toml.tmpl")),
        "README.md": fill(template("README.md.tmpl")),
        f"src/{pkg}/__init__.py": fill(template("__init__.py.tmpl")),
        f"src/{pkg}/plugin.py": fill(template(f"plugin_{kind}.py.tmpl")),
        f"tests/test_{pkg}.py": fill(template(f"test_{kind}.py.tmpl")
                                     + template("test_registration.py.tmpl")),
    }


def run(args: argparse.Namespace) -> int:
    from ganbench.errors import UserError
    from ganbench.specs import NAME_PATTERN

    name = args.name
    if not NAME_PATTERN.match(name):
        raise UserError(f"plugin name {name!r} is not lowercase-hyphen (e.g. focal-loss)")
    if name.startswith(DIST_PREFIX):
        raise UserError(f"leave out the {DIST_PREFIX!r} prefix: the package is named "
                        f"{DIST_PREFIX}NAME and the plugin NAME")
    folder = args.out / (DIST_PREFIX + name)
    if folder.exists():
        raise UserError(f"{folder} already exists; choose another NAME or --out")

    from ganbench.registry import get_registry  # imports torch: only once the name is valid

    taken = get_registry().kind_of(name)
    if taken is not None:
        source = get_registry().lookup(name).source
        raise UserError(f"{name!r} is already a {taken} plugin ({source}); plugin names must be "
                        "unique, so choose another")

    for relative, text in plan_files(name, args.kind).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"created {folder} ({args.kind} plugin {name!r})")
    # '.[test]' brings pytest along: a plain ganbench install does not have it.
    print(f"next: pip install -e '{folder}[test]' && python -m pytest {folder / 'tests'}")
    print(f"then: {Template(TRY_IT[args.kind]).substitute(name=name)}")
    return 0
