"""Plan a run: names -> combinations, metrics, data, everything checked before training.

:func:`make_plan` does every check that needs no training (names, sizes, kernel options,
metrics, data), so a mistake is one line before a folder is made or a worker started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ganbench.config import RunConfig, resolve
from ganbench.errors import UserError
from ganbench.sweep.matrix import Combination, build_matrix, check_available
from ganbench.registry import Registry, get_registry, why_unavailable


@dataclass(frozen=True)
class Plan:
    """What a run will do: the resolved config, the combinations in order, the notes to show
    once, the metrics to score with, the loaded data, and the trials (every combination under
    every seed, :mod:`ganbench.sweep.trials`)."""

    cfg: RunConfig
    combos: list[Combination]
    notes: list[str]
    metric_names: list[str]
    data: object  # ganbench.specs.DigitData
    trials: list = field(default_factory=list)  # [Trial]; filled by make_plan


def parse_data(data: str, registry: Registry):
    """'embedded' | 'mnist:DIR' | 'folder:DIR' -> (DatasetSpec, argument or None)."""
    name, _, arg = data.partition(":")
    spec = registry.lookup(name, ("dataset",)).spec
    return spec, (arg if arg else None)


def load_data(cfg: RunConfig, registry: Registry):
    """The run's DigitData from ``--data``; UserError if the source cannot run here or holds
    fewer training images than one batch."""
    spec, arg = parse_data(cfg.data, registry)
    reason = why_unavailable(spec, cfg.device)
    if reason:
        raise UserError(f"--data {spec.name} cannot be used here: {reason}")
    data = spec.load(arg, cfg.digits, cfg.image_size)
    if cfg.batch_size > len(data.train):
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} "
                        "training images selected; lower it or select more digits")
    return data


def choose_metrics(cfg: RunConfig, registry: Registry, device: str) -> tuple[list[str], list[str]]:
    """(metric names to run, notes). Default: every metric that can run here and whose
    MetricSpec is ``default`` (True unless the plugin says otherwise)."""
    notes = []
    if cfg.metrics is None:
        names = []
        for name, spec in registry.metrics.items():
            if not getattr(spec, "default", True):
                continue  # scored only when --metrics names it
            reason = why_unavailable(spec, device)
            if reason:
                notes.append(f"metric {name} not run: {reason}")
            else:
                names.append(name)
        return names, notes
    for name in cfg.metrics:
        reason = why_unavailable(registry.lookup(name, ("metric",)).spec, device)
        if reason:
            raise UserError(f"metric {name} cannot run here: {reason}")
    return list(cfg.metrics), notes


def check_kernel_options(cfg: RunConfig, combos: list[Combination], registry: Registry) -> None:
    """Every ``--option PLUGIN.KEY=VALUE`` names a kernel of this run that accepts it."""
    kernels = sorted({c.attention for c in combos if c.attention})
    for plugin in cfg.options:
        if plugin not in kernels:
            raise UserError(f"--option {plugin}.…: {plugin} is not an attention kernel of this "
                            f"run (kernels here: {', '.join(kernels) or 'none'})")
        try:  # build the kernel once so a bad option fails here, not in every worker
            registry.attention[plugin].factory(**cfg.options[plugin])
        except Exception as exc:  # a plugin's factory may raise anything; it is the user's input
            keys = ", ".join(f"{plugin}.{key}" for key in cfg.options[plugin])
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise UserError(f"--option {keys}: {plugin} rejects it: {reason}") from None


def check_kernel_shapes(cfg: RunConfig, combos: list[Combination], registry: Registry) -> None:
    """A kernel that can ``prepare`` is asked, with device "cpu" (checks only, no compiling),
    whether it takes every attention shape of the run: a shape its options reject fails here."""
    for combo in combos:
        arch = registry.architectures[combo.architecture]
        if not combo.attention or arch.attention_shapes is None:
            continue
        attend = registry.attention[combo.attention].factory(**cfg.options.get(combo.attention,
                                                                               {}))
        prepare = getattr(attend, "prepare", None)
        if prepare is None:
            continue
        try:
            prepare(arch.attention_shapes(cfg.image_size, cfg.batch_size), cfg.dtype, "cpu")
        except ValueError as exc:
            raise UserError(f"{combo.attention} cannot run {combo.architecture} at "
                            f"{cfg.image_size}x{cfg.image_size}: {' '.join(str(exc).split())}"
                            ) from None


def check_columns(columns, metric_names: list[str], registry: Registry,
                  reference=None) -> None:
    """``--columns`` names only columns a row of this run can have: one the column registry
    declares (ganbench.results.columns: the core's, and the metric plugins' declarations), one
    the "real data" row ``reference`` has (every column the metrics wrote), or one named by a
    metric of this run (its name in snake_case as a prefix); UserError (one line, with the
    closest name) otherwise. The sweep calls it once the reference row is computed, before any
    training."""
    import difflib

    from ganbench.results.columns import CORE, column

    if not columns:
        return
    import fnmatch

    prefixes = tuple(name.replace("-", "_") for name in metric_names)
    patterns = [pattern for name in metric_names  # what this run's metrics declare
                for field in ("directions", "columns")
                for pattern, _ in getattr(registry.metrics[name], field, ())]
    scored = set(reference or ())

    def known(name: str) -> bool:
        info = column(name)  # a metric's column counts only when that metric runs here
        return ((info.declared and not info.quality) or name in scored
                or (bool(prefixes) and name.startswith(prefixes))
                or any(fnmatch.fnmatchcase(name, p) for p in patterns))

    unknown = [c for c in columns if not known(c)]
    if unknown:
        names = [n for n in CORE if "*" not in n] + sorted(scored - set(CORE))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, names, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise UserError(f"--columns: a row of this run has no column {', '.join(hints)}; "
                        f"see `ganbench report RUN_DIR --all-columns` for a run's columns")


def check_reference(reference, names: list[str]) -> None:
    """``--reference COMBO`` names a combination of the run (UserError naming the closest)."""
    if reference is None or reference in names:
        return
    import difflib

    close = difflib.get_close_matches(reference, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"--reference {reference}: not a combination of this run{hint}; "
                    f"it has: {', '.join(names)}")


def make_plan(cfg: RunConfig) -> Plan:
    """Validate everything that can be checked before training; UserError on the first
    problem."""
    registry = get_registry()
    combos, notes = build_matrix(cfg.plugins, registry)
    asked = cfg
    cfg = resolve(cfg)
    if asked.dtype == "auto" and cfg.dtype == "bf16":
        notes.append("--dtype auto: bf16 autocast, since this CPU has native bf16 (about 2x "
                     "faster here); --dtype fp32 for the textbook's arithmetic")
    check_available(combos, registry, cfg.device)
    for combo in combos:
        arch = registry.architectures[combo.architecture]
        if cfg.image_size not in arch.image_sizes:
            sizes = ", ".join(map(str, arch.image_sizes))
            raise UserError(f"{combo.architecture} does not build {cfg.image_size}x"
                            f"{cfg.image_size} images; --image-size must be one of {sizes}")
    if cfg.cuda_graph and not cfg.device.startswith("cuda"):
        raise UserError(f"--cuda-graph needs a CUDA device; this run is on {cfg.device}")
    if cfg.compile == "step" and (cfg.world_size > 1 or cfg.cuda_graph):
        raise UserError("--compile step compiles one process's whole iteration; it is not "
                        "combined with --nproc or --cuda-graph (use --compile models, or "
                        "--compile-mode reduce-overhead for CUDA graphs)")
    if cfg.baseline:
        from ganbench.training.textbook import baseline_combos

        combos = baseline_combos(combos, registry) + combos
    check_reference(cfg.reference, [c.name for c in combos])
    metric_names, metric_notes = choose_metrics(cfg, registry, cfg.device)
    check_kernel_options(cfg, combos, registry)
    check_kernel_shapes(cfg, combos, registry)
    data = load_data(cfg, registry)  # fail on bad data before any training
    if metric_names:  # --eval-n above what the held-out digits allow: an error, not a cap
        from ganbench.quality import evaluate as quality

        cfg = dataclasses.replace(cfg, eval_n=quality.check_eval_n(cfg.eval_n,
                                                                   len(data.heldout)))
    from ganbench.sweep.target import resolve_target
    from ganbench.sweep.trials import make_trials

    resolve_target(cfg.target_fid, metric_names, registry)  # no metric to target: fail now
    if cfg.target_fid is not None and not cfg.eval_every:
        notes.append("--target-fid without --eval-every checks only the final evaluation; add "
                     "--eval-every K to find when the target is first reached")
    notes += _parallel_notes(cfg)
    trials = make_trials(combos, cfg.training_seeds)
    return Plan(cfg, combos, notes + metric_notes, metric_names, data, trials)


def _parallel_notes(cfg: RunConfig) -> list[str]:
    """Notes on --jobs: more workers than cores only time-slice them; a wall-time budget is
    then shared by the workers that run at once."""
    from ganbench.scaleout.pool import usable_cpus

    notes = []
    cores = usable_cpus()
    if cfg.jobs > cores:
        notes.append(f"--jobs {cfg.jobs} is more than the {cores} CPU core(s) this process may "
                     "use: the workers take turns on them, and each trial takes longer")
    if cfg.jobs > 1 and cfg.budget_s is not None:
        notes.append(f"--budget with --jobs {cfg.jobs}: trials training side by side share the "
                     "machine, so each gets fewer steps within its budget than alone")
    return notes
