"""Which kernel configurations ``bench attention`` runs, and building them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence


@dataclass(frozen=True)
class KernelRun:
    """One kernel configuration: rows labelled ``label`` in the kernel column, built with
    ``factory(**options)`` of the registered kernel ``spec``, available where it is."""

    label: str
    spec: str
    options: dict = field(default_factory=dict)


# A comma starts the next KEY=VALUE only where "KEY=" follows it, so a JSON value can hold
# commas: "k:sizes=[64,128],mode=x" is sizes=[64, 128] and mode="x".
_NEXT_OPTION = re.compile(r",(?=\s*[A-Za-z_][\w-]*\s*=)")


def attention_specs() -> dict:
    """name -> AttentionSpec, from the process-wide plugin registry."""
    from ganbench.registry import get_registry

    return get_registry().attention


def parse_variant(text: str) -> KernelRun:
    """'triton-attn:backward=atomic' -> KernelRun('triton-attn:backward=atomic', 'triton-attn',
    {'backward': 'atomic'}); several options are comma-separated.

    Values are read as ``--option``'s are (``ganbench.config.parse_options``): JSON where they
    parse (3, 0.5, true), else text. Bad syntax is a ConfigError; whether the kernel exists is
    checked by :func:`plan_kernels`.
    """
    from ganbench.config import parse_options
    from ganbench.errors import ConfigError
    from ganbench.specs import NAME_PATTERN

    kernel, sep, rest = text.partition(":")
    kernel = kernel.strip()
    items = [item.strip() for item in _NEXT_OPTION.split(rest)] if rest.strip() else []
    pairs = [item.partition("=") for item in items]
    if not (sep and NAME_PATTERN.match(kernel) and pairs
            and all(eq and key.strip() for key, eq, _ in pairs)):
        raise ConfigError(f"--variant takes KERNEL:KEY=VALUE[,KEY=VALUE...] (e.g. "
                          f"triton-attn:backward=atomic), got {text!r}")
    options = parse_options([f"{kernel}.{item}" for item in items])[kernel]
    label = kernel + ":" + ",".join(f"{key.strip()}={value.strip()}" for key, _, value in pairs)
    return KernelRun(label, kernel, options)


def unique_known(runs: Iterable[KernelRun], specs: dict) -> list[KernelRun]:
    """``runs`` in order, each label once (a label fixes the options, so a kernel or variant
    named twice runs once); UnknownPluginError for a run of no registered kernel."""
    from ganbench.errors import UnknownPluginError

    unique: dict[str, KernelRun] = {}
    for run in runs:
        unique.setdefault(run.label, run)
    unknown = list(dict.fromkeys(r.spec for r in unique.values() if r.spec not in specs))
    if unknown:
        raise UnknownPluginError(f"unknown attention kernel(s) {', '.join(unknown)}; "
                                 f"available: {', '.join(sorted(specs))}")
    return list(unique.values())


def plan_kernels(kernels: Optional[Sequence[str]] = None, options: Optional[dict] = None,
                 variants: Sequence[KernelRun] = (), specs: Optional[dict] = None,
                 ) -> list[KernelRun]:
    """The configurations ``bench attention`` runs: each of ``kernels`` (default: every
    registered one) built with its entry of ``options`` ({kernel: {key: value}}, from
    ``--option``), then each of ``variants`` (from ``--variant``) with its own options only.

    ConfigError where ``options`` names a kernel not in ``kernels`` (a variant takes its options
    in its own text); UnknownPluginError for a kernel not registered.
    """
    from ganbench.errors import ConfigError

    specs = attention_specs() if specs is None else specs
    names = list(kernels) if kernels is not None else sorted(specs)
    options = options or {}
    stray = [name for name in options if name not in names]
    if stray:
        raise ConfigError(f"--option {stray[0]}.…: {stray[0]} is not among the kernels "
                          f"benchmarked ({', '.join(names)}); for another configuration of a "
                          f"kernel use --variant KERNEL:KEY=VALUE")
    runs = [KernelRun(name, name, dict(options.get(name, {}))) for name in names]
    return unique_known(runs + list(variants), specs)


def build_attend(run: KernelRun, spec):
    """``spec.factory(**run.options)``; a TypeError or ValueError from a factory given options
    (an unknown option, a bad value) becomes a one-line ConfigError naming kernel and options."""
    from ganbench.errors import ConfigError

    try:
        return spec.factory(**run.options)
    except (TypeError, ValueError) as exc:
        if not run.options:
            raise  # not the user's doing: a broken plugin keeps its traceback
        given = ", ".join(f"{key}={value!r}" for key, value in run.options.items())
        raise ConfigError(f"{run.label}: {spec.name} rejected option(s) {given}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from exc
