"""Run options -> RunConfig: the one conversion behind ``ganbench run`` and ``ganbench.run()``.

An option is named as on the command line with dashes as underscores (``--batch-size`` ->
``batch_size``, ``--in-process`` -> ``in_process``, the repeatable ``--option`` -> ``option``).
A value is what argparse makes of the command line, or the same in Python form: a list where the
CLI takes a comma-separated list (``plugins=["dcgan", "sagan"]`` or ``plugins="dcgan,sagan"``),
a ``{plugin: {key: value}}`` dict or a list of ``"PLUGIN.KEY=VALUE"`` for ``option``. Every check
is ganbench.config's, so both front ends fail with the same one-line ConfigError; the CLI prints
it after ``ganbench: error: ``.

Standard library and ganbench.config only at import: the CLI imports this module for --help.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional

from ganbench.config import (RunConfig, parse_budget, parse_digits, parse_names, parse_options,
                             parse_seeds)
from ganbench.errors import ConfigError

# How to start a run rather than what it measures: the callers act on these; none is a setting.
CONTROLS = ("resume", "retry_failed", "force", "nproc")
# Options that say how to run rather than what to measure: the only ones a resume accepts.
from ganbench.options import RESUME_OVERRIDES  # noqa: E402  (the options table's)
# RunConfig fields that are no option of their own: ``isolate`` is ``not in_process``,
# ``options`` is parsed from ``option``, ``budget_s`` from ``budget``, ``world_size`` is set by
# torchrun.
_DERIVED = ("isolate", "options", "budget_s", "world_size")


def flag(name: str) -> str:
    """The command-line spelling of an option name: 'batch_size' -> '--batch-size'."""
    return "--" + name.replace("_", "-")


def option_names() -> tuple[str, ...]:
    """Every run option, by name: RunConfig's fields (a field added there is an option at
    once), ``in_process``, ``option`` and the CONTROLS. ``ganbench run``'s parser has the same
    set of destinations (tests/test_api.py checks it)."""
    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _DERIVED]
    return tuple(fields + ["in_process", "option", "budget", *CONTROLS])


def check_names(names) -> None:
    """ConfigError for the first name that is no run option, with the closest one."""
    import difflib

    known = option_names()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"no run option {name!r}{hint} (the options are `ganbench run`'s, "
                              "with dashes as underscores: batch_size for --batch-size)")


def _text(value: Any) -> Any:
    """A list or tuple as the comma-separated text the CLI takes; anything else unchanged."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _names(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"{flag(name)} takes comma-separated names, got {value!r}")
    return parse_names(_text(value), flag(name))


def _metrics(value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and not value:
        return ()  # an empty list: no metric, as --metrics none
    if isinstance(value, str) and value.strip().lower() == "none":
        return ()
    return _names(value, "metrics")


def _digits(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"--digits takes comma-separated digits 0-9 or 'all', got {value!r}")
    return parse_digits(_text(value))


def _option(value: Any) -> dict:
    """``--option`` items as a list of 'PLUGIN.KEY=VALUE', or already as {plugin: {key: v}}."""
    if isinstance(value, Mapping):
        import json

        try:
            value = [f"{plugin}.{key}={json.dumps(v)}" for plugin, keys in value.items()
                     for key, v in keys.items()]
        except (AttributeError, TypeError):
            raise ConfigError("--option as a dict maps each plugin to a dict of its options, "
                              "e.g. {'compile-attn': {'mode': 'max-autotune'}}") from None
    if isinstance(value, str):
        value = [value]
    return parse_options(list(value or []))


def columns(value: Any) -> Optional[tuple[str, ...]]:
    """``--columns``: None (the default table), or the names it lists; ConfigError if empty."""
    if value is None:
        return None
    names = tuple(p.strip() for p in str(_text(value)).split(",") if p.strip())
    if not names:
        raise ConfigError("--columns is empty; give comma-separated column names")
    return names


def _check_choices(values: Mapping[str, Any]) -> None:
    """A value outside a flag's choices fails with the line `ganbench run` prints for it."""
    from ganbench.options import RUN_OPTIONS, invalid_choice, suggest

    for option in RUN_OPTIONS:
        value = values.get(option.dest)
        if option.choices and value is not None and value not in option.choices:
            choices = [str(c) for c in option.choices]
            raise ConfigError(invalid_choice(option.name, repr(value), choices,
                                             suggest(str(value), choices))
                              + " (see `ganbench run --help`)")


def config_from_options(options: Mapping[str, Any]) -> RunConfig:
    """The RunConfig of a fresh run: ``options`` by name (see the module docstring); names
    left out take RunConfig's defaults, which are the CLI's. CONTROLS are ignored (the caller
    acts on them). ConfigError (one line, the CLI's text) for an unknown name or a bad value."""
    check_names(options)
    values = {k: v for k, v in options.items() if k not in CONTROLS}
    _check_choices(values)
    if values.get("plugins") is None:
        raise ConfigError("--plugins is required, e.g. --plugins dcgan,sagan (or continue a run "
                          "with --resume RUN_DIR)")
    fields = {"plugins": _names(values.pop("plugins"), "plugins")}
    if "metrics" in values:
        fields["metrics"] = _metrics(values.pop("metrics"))
    if "digits" in values:
        fields["digits"] = _digits(values.pop("digits"))
    if "option" in values:
        fields["options"] = _option(values.pop("option"))
    if "in_process" in values:
        fields["isolate"] = not values.pop("in_process")
    if "columns" in values:
        fields["columns"] = columns(values.pop("columns"))
    if values.get("seeds") is not None:
        seeds = values.pop("seeds")
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = str(seeds)  # seeds=5 as --seeds 5: a count
        if not isinstance(seeds, (str, list, tuple)):
            raise ConfigError(f"--seeds takes a count K or a list like 0,3,7, got {seeds!r}")
        text = _text(seeds) if not isinstance(seeds, str) else seeds
        if isinstance(seeds, (list, tuple)) and len(seeds) == 1:
            text += ","  # a one-item list is that seed, not a count
        fields["seeds"] = parse_seeds(text, values.get("seed", 0))
    else:
        values.pop("seeds", None)
    budget = values.pop("budget", None)
    if budget is not None:
        fields["budget_s"] = (float(budget) if isinstance(budget, (int, float))
                              and not isinstance(budget, bool) else parse_budget(str(budget)))
    if values.get("out") is not None:
        values["out"] = Path(values["out"])
    return RunConfig(**fields, **values)


def resumed_config(run_dir: Path, given: Mapping[str, Any]) -> RunConfig:
    """The settings of a resume: RUN_DIR/config.json's, plus the RESUME_OVERRIDES in ``given``
    (the options the user gave: only those, not their defaults). Any other option is refused
    with a ConfigError naming it, since the saved settings decide what the run measures."""
    from ganbench.sweep.resume import load_run_config

    check_names(given)
    allowed = [flag(o) for o in RESUME_OVERRIDES]
    for name in given:
        if name not in RESUME_OVERRIDES and name != "resume":
            raise ConfigError(f"--resume takes its settings from {run_dir}/config.json; "
                              f"drop {flag(name)} (only {', '.join(allowed[:-1])} and "
                              f"{allowed[-1]} may be given)")
    cfg = load_run_config(run_dir)
    jobs = given.get("jobs", 1)
    return dataclasses.replace(cfg, quiet=bool(given.get("quiet", False)),  # how, not what:
                               isolate=cfg.isolate and not given.get("in_process", False),
                               jobs=jobs if jobs != 1 else cfg.jobs,  # not inherited
                               columns=columns(given.get("columns")) or cfg.columns,
                               stall_timeout=given.get("stall_timeout", cfg.stall_timeout))


def run_config(options: Mapping[str, Any], resume: Optional[Path] = None) -> RunConfig:
    """What ``ganbench run`` and ``ganbench.run()`` train: with ``resume`` (a run folder) the
    resumed settings from the options ``given``, else a fresh config from all ``options``."""
    if resume is not None:
        return resumed_config(Path(resume), options)
    if options.get("retry_failed"):
        raise ConfigError("--retry-failed goes with --resume RUN_DIR (it retrains the crashed, "
                          "oom and failed rows of that run)")
    return config_from_options(options)
