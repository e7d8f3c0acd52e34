"""The column registry: one place that says, for every column of a results table, its label,
unit, display format, which way is better and whether the default table shows it.

Two sources feed it:

* the core's own columns, declared in :data:`CORE` below (timings, memory, settings, the
  environment, the bench-attention and pytest-benchmark columns);
* each metric plugin's columns, declared in its :class:`ganbench.specs.MetricSpec`
  (``directions`` and ``columns``), so the core names no concrete metric.

:func:`column` merges them field by field: for each field, the most specific declaration that
sets it wins (an exact name before a pattern; the core before a plugin for the same kind of
match). A column nobody declares still works: label = its name, format ``general``, no
direction, and it is shown by default only when a metric plugin wrote it (its name starts with
the metric's name in snake_case, the rule ganbench.specs.Metric documents).

Directions: ``lower`` / ``higher`` is better, or ``closer``: closer to the real-data row's
value (status ``reference``, in every run table with metrics) is better. Compare and the
verdicts judge a closer column by ``|value - real|``.

This module imports only the standard library at import time (``ganbench --help`` imports
the table module, which uses it); the plugin registry is read on first use and cached per
registry object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ganbench.specs import COLUMN_WAYS

LOWER, HIGHER, CLOSER = COLUMN_WAYS
OK_STATUS = "ok"
REFERENCE_STATUS = "reference"  # the real-data row: held-out digits scored against held-out


@dataclass(frozen=True)
class Column:
    """What the registry knows about one column (see the module docstring)."""

    name: str
    label: str
    unit: str = ""
    format: str = "general"
    direction: Optional[str] = None
    visible: bool = False
    quality: bool = False    # written by a metric plugin
    declared: bool = False   # some declaration names it (it is not a fallback)

    @property
    def header(self) -> str:
        """The table header: label and unit ('step ms', 'peak MiB', 'img/s')."""
        return " ".join(part for part in (self.label, self.unit) if part) or self.name


def _c(label: str = "", unit: str = "", fmt: Optional[str] = None,
       direction: Optional[str] = None, visible: Optional[bool] = None) -> dict:
    fields = {"label": label, "unit": unit}
    if fmt is not None:
        fields["format"] = fmt
    if direction is not None:
        fields["direction"] = direction
    if visible is not None:
        fields["visible"] = visible
    return fields


_SETTING = _c(fmt="text")  # a setting or a fact about the run: shown as written, no direction

# The core's columns, in the order the default table shows the visible ones. Keys are names
# or shell patterns; the label "{0}" is what the pattern's first "*" matched.
CORE: dict[str, dict] = {
    # what ran, and whether it trained
    "combo": _c("combo", fmt="text", visible=True),
    "status": _c("status", fmt="text", visible=True),
    # speed and memory: the headline columns
    "img_per_s": _c("", "img/s", "sig3", HIGHER, True),
    "step_ms": _c("step", "ms p10-p90", "as-is", visible=True),  # display column (store)
    "step_ms_median": _c("step", "ms", "sig3", LOWER),
    "peak_mem_bytes": _c("peak", "MiB", "mib", LOWER, True),
    "step_ms_p10": _c("p10", "ms", "sig3", LOWER),
    "step_ms_p90": _c("p90", "ms", "sig3", LOWER),
    "step_ms_mean": _c("mean", "ms", "sig3", LOWER),
    "step_ms_*": _c(unit="ms", fmt="sig3", direction=LOWER),
    "timed_steps": _c("n timed", fmt="int"),
    "peak_mem_delta_bytes": _c("Δpeak", "MiB", "mib", LOWER),
    "peak_mem_mib": _c("peak", "MiB", "fixed1", LOWER),
    "peak_mem_*": _c(direction=LOWER),
    "mem_method": _SETTING,
    "time_to_target_s": _c("to target", "s", "sig3", LOWER),
    "wall_s": _c("wall", "s", "sig3"),
    "train_wall_s": _c(fmt="sig3"),
    "first_step_s": _c(fmt="sig3"),
    "eval_s": _c(fmt="sig3"),
    "compile_s": _c("compile", "s", "sig3"),
    "capture_s": _c("capture", "s", "sig3"),
    "compile_graph_breaks": _c(fmt="int"),
    "speedup_vs_textbook": _c("x textbook", fmt="fixed2"),
    "img_per_s_1rank": _c(fmt="sig3", direction=HIGHER),
    "scaling_efficiency": _c(fmt="fixed2", direction=HIGHER),
    "d_loss_last10": _c(fmt="sig3"),
    "g_loss_last10": _c(fmt="sig3"),
    # the machine's load while the trial trained (ganbench.training.measure.LoadMonitor)
    "load_avg_start": _c(fmt="fixed2"),
    "load_avg_end": _c(fmt="fixed2"),
    "cores": _c(fmt="int"),
    "cpu_s": _c(fmt="sig3"),
    "cpu_per_wall": _c(fmt="fixed2"),
    "cpu_wait_share": _c(fmt="fixed3"),
    "steal_pct": _c(fmt="fixed1"),
    # what the quality numbers were computed at (compare refuses across them)
    "metric_n": _c("metric n", fmt="int"),
    "metric_image_size": _c("metric px", fmt="int"),
    # settings of the combination (columns without a label show their own name)
    "seed": _c(fmt="int"),
    "image_size": _c("px", fmt="int"),
    "batch_size": _c("batch", fmt="int"),
    "steps": _c("steps", fmt="int"),
    "warmup": _c(fmt="int"),
    "z_dim": _c(fmt="int"),
    "n_train": _c(fmt="int"),
    "world_size": _c(fmt="int"),
    "per_rank_batch": _c(fmt="int"),
    "parallel_jobs": _c(fmt="int"),
    "torch_threads": _c(fmt="int"),
    "diverged_at": _c(fmt="int"),
    "resumed_from_step": _c(fmt="int"),
    "g_lr": _c(fmt="general"),
    "d_lr": _c(fmt="general"),
    "error": _c("error", fmt="text"),
    **{name: _SETTING for name in (
        "architecture", "loss", "attention", "betas", "data", "digits", "compile", "step",
        "compile_scope", "malloc",
        "memory_format", "architecture_from", "loss_from", "attention_from", "cuda_graph",
        "device", "device_name", "dtype", "torch_version", "triton_version", "python_version",
        "git_commit", "triton_interpret", "finished_at", "ddp_backend", "sync_bn")},
    # bench attention (ganbench bench attention)
    "kernel": _c("kernel", fmt="text"),
    "site": _c("site", fmt="text"),
    "pass": _c("pass", fmt="text"),
    "batch": _c("B", fmt="int"),
    "N": _c("N", fmt="int"),
    "Dqk": _c("Dqk", fmt="int"),
    "Dv": _c("Dv", fmt="int"),
    "median_ms": _c("", "ms", "sig3", LOWER),
    "p10_ms": _c("p10", "ms", "sig3"),
    "p90_ms": _c("p90", "ms", "sig3"),
    "graph_median_ms": _c("graph", "ms", "sig3", LOWER),
    "graph_p10_ms": _c(fmt="sig3"),
    "graph_p90_ms": _c(fmt="sig3"),
    "graph_status": _c(fmt="text"),
    "graph_count": _c("graph n", fmt="int"),  # replays timed per row
    # "fwd>fwd+bwd": a forward timed slower than its own forward+backward (recompilation or
    # load during the row): the number is suspect, not the kernel
    "suspect": _c("suspect", fmt="text"),
    "flops": _c(fmt="general"),
    "exps": _c(fmt="general"),
    "options": _c(fmt="text"),
    "count": _c("n", fmt="int"),
    "tflops": _c("", "TFLOP/s", "sig3"),
    "gb_per_s": _c("", "GB/s", "sig3"),
    "roofline_pct": _c("% roofline", fmt="fixed1"),
    "bound": _c("bound", fmt="text"),
    "rel_err_max": _c("rel err", fmt="sci", direction=LOWER),
    "peak_extra_mem_bytes": _c("extra", "MiB", "mib", LOWER),
    "backend": _c("backend", fmt="text"),
    # pytest-benchmark JSON (compare): seconds per call
    "median": _c("median", "s", "sig3", LOWER),
    # generic rules last: any byte count in MiB, any error column in scientific notation
    "*_bytes": _c("{0}", "MiB", "mib"),
    "rel_err*": _c(fmt="sci"),
}

# The core's headline columns: summarised over seeds, charted, sent to github-action-benchmark.
HEADLINE = ("img_per_s", "step_ms_median", "peak_mem_bytes")
# The core columns a multi-seed run summarises and judges: the headline ones and the other
# outcomes of a run (not the step-time percentiles, which are the spread of one run's median).
JUDGED_CORE = HEADLINE + ("time_to_target_s", "scaling_efficiency")

_FIELDS = ("label", "unit", "format", "direction", "visible")


@dataclass(frozen=True)
class _Declaration:
    pattern: str
    fields: dict
    quality: bool
    regex: "re.Pattern"


def _regex(pattern: str) -> "re.Pattern":
    """A shell pattern as a regex whose groups are what each ``*`` / ``?`` matched."""
    parts = []
    for ch in pattern:
        parts.append("(.*)" if ch == "*" else "(.)" if ch == "?" else re.escape(ch))
    return re.compile("".join(parts) + r"\Z")


def _is_pattern(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class _Book:
    """The declarations of one registry, most specific first, and what they give."""

    def __init__(self, metric_specs: list) -> None:
        self.metric_specs = metric_specs
        plugin: list[tuple[str, dict]] = []
        for spec in metric_specs:
            per_pattern: dict[str, dict] = {}
            for pattern, way in getattr(spec, "directions", ()):
                per_pattern.setdefault(pattern, {})["direction"] = way
            for pattern, fields in getattr(spec, "columns", ()):
                per_pattern.setdefault(pattern, {}).update(dict(fields))
            plugin += list(per_pattern.items())
        core = list(CORE.items())

        def declare(items, quality):
            return [_Declaration(p, f, quality, _regex(p)) for p, f in items]

        # exact core, exact plugin, plugin patterns, core patterns (the generic rules last)
        self.declarations = (
            declare([(p, f) for p, f in core if not _is_pattern(p)], False)
            + declare([(p, f) for p, f in plugin if not _is_pattern(p)], True)
            + declare([(p, f) for p, f in core if _is_pattern(p) and not p.startswith("*")
                       and not p.startswith("rel_err")], False)
            + declare([(p, f) for p, f in plugin if _is_pattern(p)], True)
            + declare([(p, f) for p, f in core if p.startswith(("*", "rel_err"))], False))
        self.prefixes = tuple(spec.name.replace("-", "_") for spec in metric_specs)
        self.cache: dict[str, Column] = {}

    def column(self, name: str) -> Column:
        if name in self.cache:
            return self.cache[name]
        fields: dict = {}
        matched_core = matched_plugin = False
        for declaration in self.declarations:
            hit = declaration.regex.match(name)
            if not hit:
                continue
            if declaration.quality:
                matched_plugin = True
            elif not _is_pattern(declaration.pattern):
                matched_core = True
            for key in _FIELDS:
                if key in declaration.fields and key not in fields:
                    value = declaration.fields[key]
                    if key == "label" and "{" in value:
                        try:
                            value = value.format(*hit.groups())
                        except (IndexError, KeyError, ValueError):
                            pass
                    if key in ("label", "unit") and value == "" and _is_pattern(
                            declaration.pattern):
                        continue  # a pattern without a label leaves the column's own name
                    fields[key] = value
        quality = not matched_core and (matched_plugin or (
            bool(self.prefixes) and name.startswith(self.prefixes)))
        label = fields.get("label", name)
        unit = fields.get("unit", "")
        if not label and not unit:
            label = name
        out = Column(name=name, label=label, unit=unit,
                     format=fields.get("format", "general"),
                     direction=fields.get("direction"),
                     visible=fields.get("visible", quality),
                     quality=quality, declared=bool(fields) or matched_core or matched_plugin)
        self.cache[name] = out
        return out


_BOOKS: dict[tuple[int, int], _Book] = {}
_NO_PLUGINS = _Book([])


def _metric_specs() -> Optional[list]:
    try:
        from ganbench.registry import get_registry

        return list(get_registry().metrics.values())
    except Exception as exc:  # a table must still print when the plugins cannot load
        import warnings

        warnings.warn(f"metric plugins unavailable, their columns are shown undeclared and "
                      f"not compared: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _book() -> _Book:
    specs = _metric_specs()
    if specs is None:
        return _NO_PLUGINS
    key = (id(specs[0]) if specs else 0, len(specs))
    book = _BOOKS.get(key)
    if book is None or book.metric_specs != specs:
        book = _BOOKS[key] = _Book(specs)
    return book


def cache_clear() -> None:
    """Forget every cached lookup (tests that swap the registry call it; new registries are
    picked up without it)."""
    _BOOKS.clear()
    _NO_PLUGINS.cache.clear()


# ------------------------------------------------------------------------------------------
# The API
# ------------------------------------------------------------------------------------------
def column(name: str) -> Column:
    """Everything known about column ``name`` (see the module docstring)."""
    return _book().column(str(name))


def direction(name: str) -> Optional[str]:
    """'lower', 'higher' or 'closer' when that way is better for ``name``, else None."""
    return column(name).direction


def is_quality(name: str) -> bool:
    """True for a column a metric plugin writes (fid_digits, prdc_precision, ...)."""
    return column(name).quality


def header(name: str) -> str:
    return column(name).header


def metric_directions() -> dict[str, str]:
    """Column pattern -> way, from every registered metric plugin (built-in and
    third-party): what the plugins declare, for listings and error messages."""
    out: dict[str, str] = {}
    for declaration in _book().declarations:
        way = declaration.fields.get("direction")
        if declaration.quality and way:
            out.setdefault(declaration.pattern, way)
    return out


def core_directions() -> dict[str, str]:
    """The core's column patterns with a direction (img_per_s, step_ms_*, median, ...)."""
    return {p: f["direction"] for p, f in CORE.items() if f.get("direction")}


def visible_core() -> list[str]:
    """The core columns the default table shows, in order."""
    return [p for p, f in CORE.items() if f.get("visible") and not _is_pattern(p)]


def metric_columns(names) -> list[str]:
    """The columns among ``names`` that a metric plugin writes, in the given order."""
    return [n for n in names if is_quality(n)]


def primary_quality() -> Optional[str]:
    """The column that stands for sample quality (``--target-fid``, the quality curves' first
    panel, the CI chart): ``primary`` of the first registered default metric naming one."""
    for spec in _book().metric_specs:
        if getattr(spec, "default", True) and getattr(spec, "primary", None):
            return spec.primary
    return None


# A column "<prefix>_<word>_<digit>" (modes_share_7) is about one digit class: the default
# table shows it only for the classes the run selected.
PER_CLASS = re.compile(r"_(?:frac|share)_(\d+)$")


def distance_to_real(value: float, real: float) -> float:
    """How far a closer-is-better value is from the real row: ``|value - real|``."""
    return abs(float(value) - float(real))
