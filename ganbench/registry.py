"""The plugin manager: built-in plugins first, then the ``ganbench`` entry-point group.

Built-ins are listed in ``DEFAULT_PLUGINS`` and registered exactly as a third party's module
would be; nothing in the core names a concrete model, loss or kernel. After registration every
``ganbench_register_*`` hook implementation is called once with a ``register`` callback, and the
specs it hands over land in a :class:`Registry`, each tagged with where it came from.

A broken third-party plugin (import error, bad hook, bad spec, clashing name) is recorded in
``Registry.broken`` with the reason and reported once as a warning; everything else still works.
"""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pluggy

from ganbench import hookspecs
from ganbench.errors import UnknownPluginError
from ganbench.specs import SPEC_KINDS

DEFAULT_PLUGINS = (
    "ganbench.plugins.dcgan",
    "ganbench.plugins.sagan",
    "ganbench.plugins.losses",
    "ganbench.plugins.attention",
    "ganbench.plugins.metrics",
    "ganbench.plugins.datasets",
)

# hook name -> spec kind; the registry keeps one dict per kind.
HOOKS = {
    "ganbench_register_architectures": "architecture",
    "ganbench_register_losses": "loss",
    "ganbench_register_attention": "attention",
    "ganbench_register_metrics": "metric",
    "ganbench_register_datasets": "dataset",
}

# Environment variables that choose which third-party plugins load (built-ins always load).
LOAD_ENV = "GANBENCH_LOAD_PLUGINS"    # comma-separated distribution names; empty = none
BLOCK_ENV = "GANBENCH_BLOCK_PLUGINS"  # comma-separated plugin or distribution names to skip


class PluginWarning(UserWarning):
    """A third-party plugin could not be loaded; ganbench carries on without it."""


@dataclass(frozen=True)
class Entry:
    """A registered spec and where it came from (``built-in`` or ``dist==version``)."""

    kind: str
    spec: Any
    source: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Registry:
    """Every spec known to this process, by kind and name."""

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {kind: {} for kind in SPEC_KINDS})
    broken: list[tuple[str, str]] = field(default_factory=list)  # (plugin or dist, reason)

    # Convenience views: name -> spec.
    @property
    def architectures(self) -> dict:
        return {n: e.spec for n, e in self.entries["architecture"].items()}

    @property
    def losses(self) -> dict:
        return {n: e.spec for n, e in self.entries["loss"].items()}

    @property
    def attention(self) -> dict:
        return {n: e.spec for n, e in self.entries["attention"].items()}

    @property
    def metrics(self) -> dict:
        return {n: e.spec for n, e in self.entries["metric"].items()}

    @property
    def datasets(self) -> dict:
        return {n: e.spec for n, e in self.entries["dataset"].items()}

    def kind_of(self, name: str) -> Optional[str]:
        """The kind a plugin name belongs to, or None."""
        for kind, by_name in self.entries.items():
            if name in by_name:
                return kind
        return None

    def all_names(self, kinds: Iterable[str] = tuple(SPEC_KINDS)) -> list[str]:
        return sorted(n for kind in kinds for n in self.entries[kind])

    def lookup(self, name: str, kinds: Iterable[str] = tuple(SPEC_KINDS)) -> Entry:
        """The entry called ``name`` among ``kinds``, or UnknownPluginError with close matches."""
        kinds = tuple(kinds)
        for kind in kinds:
            if name in self.entries[kind]:
                return self.entries[kind][name]
        known = self.all_names(kinds)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        what = "plugin" if len(kinds) > 1 else f"{kinds[0]} plugin"
        raise UnknownPluginError(f"unknown {what} {name!r}; {hint}available: {', '.join(known)}")

    def add(self, kind: str, spec: Any, source: str) -> None:
        expected = SPEC_KINDS[kind]
        if not isinstance(spec, expected):
            raise TypeError(f"register() in the {kind} hook got {type(spec).__name__}, "
                            f"expected {expected.__name__}")
        clash = self.kind_of(spec.name)
        if clash is not None:
            other = self.lookup(spec.name).source
            raise ValueError(f"name {spec.name!r} is already registered as a {clash} by {other}")
        self.entries[kind][spec.name] = Entry(kind, spec, source)


def _split_env(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def _entry_point_dists() -> dict[str, str]:
    """Entry-point name -> 'dist==version' for the ganbench group (for the source column)."""
    from importlib.metadata import entry_points

    out = {}
    for ep in entry_points(group="ganbench"):
        dist = getattr(ep, "dist", None)
        out[ep.name] = f"{dist.name}=={dist.version}" if dist is not None else ep.name
    return out


def make_plugin_manager(load_entrypoints: bool = True) -> tuple[pluggy.PluginManager, list]:
    """A PluginManager with the built-ins and (optionally) the entry-point plugins registered.

    Returns the manager and a list of (plugin or distribution, reason) for plugins that failed
    to load. ``GANBENCH_LOAD_PLUGINS`` limits entry points to the named distributions (set it
    empty to load none); ``GANBENCH_BLOCK_PLUGINS`` skips the named entry points/distributions.
    """
    pm = pluggy.PluginManager("ganbench")
    pm.add_hookspecs(hookspecs)
    broken: list[tuple[str, str]] = []
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if not load_entrypoints:
        return pm, broken

    from importlib.metadata import entry_points

    only = _split_env(LOAD_ENV) if LOAD_ENV in os.environ else None
    blocked = _split_env(BLOCK_ENV)
    for ep in entry_points(group="ganbench"):
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else ""
        if only is not None and dist_name not in only and ep.name not in only:
            continue
        if ep.name in blocked or dist_name in blocked or pm.has_plugin(ep.name):
            continue
        label = f"{dist_name}=={dist.version}" if dist is not None else ep.name
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a third party's bug must not take ganbench down
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            broken.append((label, reason))
            warnings.warn(f"ganbench plugin {label} failed to load: {reason}", PluginWarning,
                          stacklevel=2)
    return pm, broken


def collect(pm: pluggy.PluginManager, broken: Optional[list] = None) -> Registry:
    """Call every register hook of every plugin in ``pm`` and gather the specs."""
    registry = Registry(broken=list(broken or []))
    dists = _entry_point_dists()
    for hook_name, kind in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            source = "built-in" if plugin_name in DEFAULT_PLUGINS else dists.get(plugin_name,
                                                                                 plugin_name)

            def register(spec: Any, _kind: str = kind, _source: str = source) -> None:
                registry.add(_kind, spec, _source)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:
                if source == "built-in":
                    raise  # our own bug: fail loudly
                reason = f"{hook_name}: {type(exc).__name__}: {exc}".splitlines()[0]
                registry.broken.append((source, reason))
                warnings.warn(f"ganbench plugin {source} is broken: {reason}", PluginWarning,
                              stacklevel=2)
    return registry


_REGISTRY: Optional[Registry] = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry (built once; ``refresh=True`` rebuilds it)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        pm, broken = make_plugin_manager()
        _REGISTRY = collect(pm, broken)
    return _REGISTRY
