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
import re
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
# Each takes comma-separated names of plugins (a spec's name: "lsgan"), entry points or
# distributions ("ganbench-extra-losses"); names matching nothing are reported in one warning.
LOAD_ENV = "GANBENCH_LOAD_PLUGINS"    # only these; set but empty = no third-party plugin
BLOCK_ENV = "GANBENCH_BLOCK_PLUGINS"  # skip these (blocking wins over loading)
BUILT_IN = "built-in"


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
    blocked: list[tuple[str, str]] = field(default_factory=list)  # (plugin name, source)

    def specs(self, kind: str) -> dict:
        """name -> spec for one kind."""
        return {n: e.spec for n, e in self.entries[kind].items()}

    # Convenience views: name -> spec.
    architectures = property(lambda self: self.specs("architecture"))
    losses = property(lambda self: self.specs("loss"))
    attention = property(lambda self: self.specs("attention"))
    metrics = property(lambda self: self.specs("metric"))
    datasets = property(lambda self: self.specs("dataset"))

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

    def provenance(self, names: Optional[Iterable[str]] = None) -> dict[str, str]:
        """Plugin name -> where it came from: ``"built-in"`` or ``"distribution==version"``.

        ``names``: the plugins to report (default every registered one); a name this registry
        does not know maps to ``"unknown"``. What a run records for each plugin it used."""
        if names is None:
            names = self.all_names()
        out = {}
        for name in names:
            kind = self.kind_of(name)
            out[name] = self.entries[kind][name].source if kind else "unknown"
        return out

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


def _normalize(name: str) -> str:
    """PEP 503 form, so 'Ganbench_Extra.Losses' and 'ganbench-extra-losses' name one thing."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split_env(name: str) -> set[str]:
    return {_normalize(part.strip()) for part in os.environ.get(name, "").split(",")
            if part.strip()}


def _one_line(exc: BaseException) -> str:
    """'Type: message' on one line; pluggy puts the useful part of its errors on later lines."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _selection() -> tuple[Optional[set[str]], set[str]]:
    """(names in GANBENCH_LOAD_PLUGINS or None when unset, names in GANBENCH_BLOCK_PLUGINS)."""
    return (_split_env(LOAD_ENV) if LOAD_ENV in os.environ else None), _split_env(BLOCK_ENV)


def _ep_names(ep: Any) -> set[str]:
    """The normalised names an entry point answers to: its own and its distribution's."""
    dist = getattr(ep, "dist", None)
    return {_normalize(ep.name)} | ({_normalize(dist.name)} if dist is not None else set())


def _plugin_name_and_source(ep: Any) -> tuple[str, str]:
    """(name to register the entry point under, 'dist==version' for the source column).

    The plugin name includes the distribution, so two distributions that both call their
    entry point ``plugin`` do not collide (the second would otherwise be skipped silently).
    """
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, ep.name
    source = f"{dist.name}=={dist.version}"
    return f"{source}:{ep.name}", source


def _entry_point_dists() -> dict[str, str]:
    """Registered plugin name -> 'dist==version' for the ganbench group (the source column)."""
    from importlib.metadata import entry_points

    return dict(_plugin_name_and_source(ep) for ep in entry_points(group="ganbench"))


def _entry_point_names() -> dict[str, set[str]]:
    """Registered plugin name -> the normalised entry-point and distribution names."""
    from importlib.metadata import entry_points

    return {_plugin_name_and_source(ep)[0]: _ep_names(ep)
            for ep in entry_points(group="ganbench")}


def make_plugin_manager(load_entrypoints: bool = True) -> tuple[pluggy.PluginManager, list]:
    """A PluginManager with the built-ins and (optionally) the entry-point plugins registered.

    Returns the manager and a list of (plugin or distribution, reason) for plugins that failed
    to load. ``GANBENCH_LOAD_PLUGINS`` limits entry points to the named distributions (set it
    empty to load none); ``GANBENCH_BLOCK_PLUGINS`` skips the named entry points/distributions.
    A name in either that is no entry point or distribution may be a plugin (spec) name:
    :func:`collect` applies those, so an entry point is imported when LOAD names a plugin it
    might provide, and blocked plugins are left out at registration.
    """
    pm = pluggy.PluginManager("ganbench")
    pm.add_hookspecs(hookspecs)
    broken: list[tuple[str, str]] = []
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if not load_entrypoints:
        return pm, broken

    from importlib.metadata import entry_points

    only, blocked = _selection()
    eps = list(entry_points(group="ganbench"))
    package_names = set().union(*(_ep_names(ep) for ep in eps)) if eps else set()
    # LOAD names that are no entry point or distribution may name plugins inside one: then
    # every entry point must be imported to find them (collect keeps only the named plugins).
    load_by_plugin = only is not None and bool(only - package_names)
    for ep in eps:
        names = _ep_names(ep)
        if only is not None and not names & only and not load_by_plugin:
            continue
        plugin_name, label = _plugin_name_and_source(ep)
        if names & blocked or pm.has_plugin(plugin_name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=plugin_name)
            pm.check_pending()  # a misspelled hook name would otherwise be ignored silently
        except Exception as exc:  # a third party's bug must not take ganbench down
            # pluggy validates hooks one by one and keeps those it accepted before a bad one:
            # drop the whole plugin, so a plugin reported broken contributes nothing.
            if pm.has_plugin(plugin_name):
                pm.unregister(name=plugin_name)
            reason = _one_line(exc)
            broken.append((label, reason))
            warnings.warn(f"ganbench plugin {label} failed to load: {reason}", PluginWarning,
                          stacklevel=2)
    return pm, broken


def collect(pm: pluggy.PluginManager, broken: Optional[list] = None) -> Registry:
    """Call every register hook of every plugin in ``pm`` and gather the specs."""
    registry = Registry(broken=list(broken or []))
    dists = _entry_point_dists()
    package_names = _entry_point_names()
    only, blocked = _selection()
    seen_names: set[str] = set()
    # Plugins register in the order they were added (built-ins first), not in pluggy's call
    # order: a third party's tryfirst/trylast must not let it take a built-in's name.
    order = {name: i for i, (name, _) in enumerate(pm.list_name_plugin())}
    for hook_name, kind in HOOKS.items():
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        for impl in sorted(impls, key=lambda impl: order[impl.plugin_name]):
            plugin_name = impl.plugin_name
            source = BUILT_IN if plugin_name in DEFAULT_PLUGINS else dists.get(plugin_name,
                                                                               plugin_name)
            third_party = source != BUILT_IN and plugin_name in package_names
            loaded_whole = only is None or bool(package_names.get(plugin_name, set()) & only)

            def register(spec: Any, _kind: str = kind, _source: str = source,
                         _selected: bool = third_party, _whole: bool = loaded_whole) -> None:
                name = _normalize(getattr(spec, "name", "") or "")
                seen_names.add(name)
                if _selected and (name in blocked or not (_whole or name in only)):
                    if name in blocked:
                        registry.blocked.append((spec.name, _source))
                    return
                registry.add(_kind, spec, _source)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:
                if source == "built-in":
                    raise  # our own bug: fail loudly
                reason = f"{hook_name}: {_one_line(exc)}"
                registry.broken.append((source, reason))
                warnings.warn(f"ganbench plugin {source} is broken: {reason}", PluginWarning,
                              stacklevel=2)
    _warn_unmatched(only, blocked, seen_names, set().union(*package_names.values())
                    if package_names else set(), registry)
    return registry


def _warn_unmatched(only: Optional[set[str]], blocked: set[str], plugin_names: set[str],
                    package_names: set[str], registry: Registry) -> None:
    """One PluginWarning naming what GANBENCH_LOAD/BLOCK_PLUGINS asked for that matched no
    plugin, entry point or distribution (a typo must not pass silently), and one naming
    built-ins in GANBENCH_BLOCK_PLUGINS (they always load)."""
    builtin = {_normalize(n) for kind in registry.entries.values()
               for n, e in kind.items() if e.source == BUILT_IN}
    known = (plugin_names | package_names)
    problems = []
    for env, names in ((LOAD_ENV, only or set()), (BLOCK_ENV, blocked)):
        unknown = sorted(names - known)
        if unknown:
            problems.append(f"{env} names no installed plugin or distribution: "
                            f"{', '.join(unknown)}")
    fixed = sorted(blocked & builtin)
    if fixed:
        problems.append(f"{BLOCK_ENV}: {', '.join(fixed)} built in and always load")
    if problems:
        warnings.warn("; ".join(problems), PluginWarning, stacklevel=3)


def provenance(names: Optional[Iterable[str]] = None) -> dict[str, str]:
    """Plugin name -> ``"built-in"`` or ``"distribution==version"``, from the process-wide
    registry (see :meth:`Registry.provenance`); for a run's rows and config.json."""
    return get_registry().provenance(names)


def why_unavailable(spec: Any, device: str) -> Optional[str]:
    """``spec.why_unavailable(device)``, guarded: a check that raises is itself the reason, so
    one plugin's bug cannot crash ``ganbench plugins`` or a run."""
    try:
        reason = spec.why_unavailable(device)
    except Exception as exc:
        return f"its availability check raised {_one_line(exc)}"
    return str(reason) if reason else None


_REGISTRY: Optional[Registry] = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry (built once; ``refresh=True`` rebuilds it)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        pm, broken = make_plugin_manager()
        _REGISTRY = collect(pm, broken)
    return _REGISTRY
