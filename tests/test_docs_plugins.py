"""docs/plugins.md must keep up with the contract it documents.

Everything is found by introspection, so adding a hook, a spec class or a field without
documenting it fails here. The Python examples in the page must run: each block with a hook
implementation is executed and its hooks called, and any attention kernel it registers is
checked against the reference op.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch

import ganbench.hookspecs as hookspecs
import ganbench.registry as registry
import ganbench.specs as specs
from ganbench.kernels.attention.reference import attend_reference

DOC = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()


def hooks() -> dict[str, inspect.Signature]:
    """Every hookspec in ganbench.hookspecs (pluggy marks them with 'ganbench_spec')."""
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "ganbench_spec")}


def spec_classes() -> dict[str, type]:
    """Every class defined in ganbench.specs: the dataclasses and the GANLoss/Metric bases."""
    return {name: cls for name, cls in vars(specs).items()
            if inspect.isclass(cls) and cls.__module__ == specs.__name__}


def section(title: str) -> str:
    """The text under the heading '### `title`', up to the next heading."""
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^#{{1,3}} )", DOC + "\n## end",
                      flags=re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md has no '### `{title}`' section"
    return match.group(1)


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC, flags=re.MULTILINE | re.DOTALL)


def test_introspection_finds_the_contract():
    # Guards the tests below against passing because they found nothing to check.
    assert len(hooks()) == 5
    assert {"ArchitectureSpec", "LossInputs", "GANLoss", "Metric", "DigitData"} <= set(
        spec_classes())


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_is_documented_with_its_signature(name):
    signature = f"{name}({', '.join(hooks()[name].parameters)})"
    assert f"`{signature}`" in DOC, f"docs/plugins.md does not show `{signature}`"


@pytest.mark.parametrize("name", sorted(spec_classes()))
def test_every_spec_class_and_field_is_documented(name):
    cls = spec_classes()[name]
    text = section(name)
    if dataclasses.is_dataclass(cls):
        members = [f.name for f in dataclasses.fields(cls)]
    else:  # an interface such as GANLoss or Metric: its public methods
        members = [m for m in vars(cls) if not m.startswith("_") and callable(vars(cls)[m])]
    assert members, name
    missing = [m for m in members if f"`{m}`" not in text and f"`{m}(" not in text]
    assert not missing, f"### `{name}` in docs/plugins.md does not document {missing}"


@pytest.mark.parametrize("term", [registry.LOAD_ENV, registry.BLOCK_ENV, "PluginWarning",
                                  "why_unavailable(device) -> str | None", "`record`",
                                  "`last_qk`", "Registry.broken", "ganbench new-plugin",
                                  "[project.entry-points.ganbench]"])
def test_selection_safety_and_conventions_are_documented(term):
    assert term in DOC


def test_every_spec_kind_has_a_hook_in_the_docs():
    for kind, cls in specs.SPEC_KINDS.items():
        hook = next(h for h, k in registry.HOOKS.items() if k == kind)
        assert re.search(rf"`{hook}\(register\)` \| `{cls.__name__}`", DOC), kind


def test_python_examples_compile():
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        compile(block, "docs/plugins.md", "exec")


def test_examples_with_hooks_register_valid_specs():
    ran = 0
    for block in python_blocks():
        if "@hookimpl" not in block:
            continue
        namespace: dict = {"__name__": "docs_example"}
        exec(compile(block, "docs/plugins.md", "exec"), namespace)
        for hook, kind in registry.HOOKS.items():
            impl = namespace.get(hook)
            if impl is None:
                continue
            registered: list = []
            impl(register=registered.append)
            assert registered and all(isinstance(s, specs.SPEC_KINDS[kind]) for s in registered)
            ran += 1
            for spec in registered:
                if kind == "attention":
                    check_kernel(spec.factory())
    assert ran >= 1


def check_kernel(attend) -> None:
    """The documented kernel computes the reference op, including N not a block multiple."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 300, d, generator=gen, dtype=torch.float64) for d in (8, 8, 5))
    torch.testing.assert_close(attend(q, k, v), attend_reference(q, k, v))
    o = attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert o.dtype == torch.bfloat16 and o.shape == (2, 300, 5)


def reuse_rows() -> list[tuple[str, str, str]]:
    """(module, name, documented signature) for each row of 'Reusing the built-in models'."""
    part = DOC[DOC.index("## Reusing the built-in models"):]
    part = part[:part.index("\n## ", 5)] if "\n## " in part[5:] else part
    return re.findall(r"^\| `from ([\w.]+) import (\w+)` \| `([^`]+)` \|", part,
                      flags=re.MULTILINE)


def test_reusable_models_table_is_found():
    assert len(reuse_rows()) >= 8  # guards the parametrised test below against finding none


@pytest.mark.parametrize("module,name,documented", reuse_rows())
def test_reusable_models_import_with_the_documented_signature(module, name, documented):
    import importlib

    obj = getattr(importlib.import_module(module), name)
    params = inspect.signature(obj).parameters.values()
    actual = ", ".join(p.name if p.default is inspect.Parameter.empty
                       else f"{p.name}={p.default!r}" for p in params)
    assert documented == f"{name}({actual})"


def test_sagan_generator_is_reusable_as_documented():
    from ganbench.plugins.attention import attend_eager
    from ganbench.plugins.sagan import Generator

    G = Generator(32, 20, attend_eager)
    assert G(torch.randn(2, 20, 1, 1)).shape == (2, 1, 32, 32)


def test_metric_spec_directions_are_documented_and_validated():
    text = section("MetricSpec")
    assert "`directions`" in text and '"lower"' in text
    spec = specs.MetricSpec(name="x", summary="s", factory=object,
                            directions={"x_score": "higher"})
    assert spec.directions == (("x_score", "higher"),) and hash(spec)
    with pytest.raises(ValueError, match="use 'lower', 'higher' or 'closer'"):
        specs.MetricSpec(name="x", summary="s", factory=object, directions={"x": "up"})
