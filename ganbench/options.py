"""The options table: every command's flags declared once, as data.

An :class:`Option` row holds what argparse needs (flag, type, choices, help) and, for
``ganbench run``, the :class:`ganbench.config.RunConfig` field it sets. From the rows come the
argparse parsers (:func:`add_options`), the help text with its "(default: ...)" (rendered from
the value, never typed by hand), ``docs/cli.md`` and the README's command table
(``scripts/cli_docs.py``); a command line becomes a RunConfig through the Python API's one
conversion (:func:`ganbench.api.options.config_from_options`). A run
option's default is RunConfig's field default, shown through ``shown``; its choices are
config's tuples. ``tests/test_options.py`` checks the rendered help against config.

Adding a flag to ``ganbench run``: add the RunConfig field (with its default and check) in
config.py, then one ``Option`` row to :data:`RUN_OPTIONS` naming that ``field`` (and
``to_config`` if the command line's text is not the field's value). Nothing else: the parser,
the help, --resume's list of settings, the docs and the API's conversion follow. A flag that
only says how to run (like --force) has no ``field``; read it from the namespace in
``commands/run.py``.

Standard library and ganbench.config (itself standard library only) at import: the CLI builds
its parsers from this module before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ganbench import config
from ganbench.errors import ConfigError

def suggest(word: str, candidates: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest spelling of ``word`` among ``candidates``, or ''.

    difflib's ratio with cutoff 0.6 (its default) catches one or two wrong letters in a flag
    of five or more, and a missing or extra letter: --plugin/--plugins, --step/--steps, rnu/run.
    """
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def invalid_choice(flag: str, value: str, choices: Sequence[str], hint: str = "") -> str:
    """The one line for a value outside an option's choices (the CLI's and the API's)."""
    return f"argument {flag}: invalid choice {value}{hint}; choose from " + ", ".join(choices)


_FROM_CONFIG = object()  # Option.default: take the RunConfig field's default


@dataclass(frozen=True)
class Option:
    """One command-line option or positional argument.

    ``name``: "--flag" or a positional's name. ``default``: the value when the option is not
    given (for a run option with a ``field``, RunConfig's default passed through ``shown``).
    ``default_text``: the default in words where it is not one value (device-dependent ones).
    ``to_config``: command-line value -> RunConfig field value. ``group``: the help section;
    ``exclusive``: options sharing this key are mutually exclusive. Help text must not state
    the default: :meth:`help_text` adds it.
    """

    name: str
    help: str
    default: Any = None
    type: Optional[Callable] = None
    choices: Optional[Sequence] = None
    metavar: Optional[str] = None
    action: Optional[str] = None
    nargs: Optional[str] = None
    const: Any = None
    required: bool = False
    default_text: Optional[str] = None
    field: Optional[str] = None
    to_config: Optional[Callable] = None
    shown: Optional[Callable] = None
    group: Optional[str] = None
    exclusive: Optional[str] = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    def cli_default(self) -> Any:
        """The value argparse stores when the option is not given."""
        if self.action == "store_true":
            return False
        if self.action == "append":
            return []
        if self.default is not _FROM_CONFIG:
            return self.default
        value = _config_defaults()[self.field]
        return self.shown(value) if self.shown else value

    def help_text(self) -> str:
        """The help with its default appended: "(default: X)" from the value itself, so the
        help cannot drift from what runs."""
        default = self.default_text
        if default is None and self.action not in ("store_true", "append", "version"):
            value = self.cli_default()
            if value is not None and not self.positional:
                default = str(value)
        return f"{self.help} (default: {default})" if default is not None else self.help

    def add_to(self, parser) -> None:
        kwargs: dict[str, Any] = {"help": self.help_text().replace("%", "%%")}
        if self.action:
            kwargs["action"] = self.action
        if self.action != "store_true":
            for key in ("type", "choices", "metavar", "nargs", "const"):
                if getattr(self, key) is not None:
                    kwargs[key] = getattr(self, key)
            if self.positional and not (self.metavar or self.choices):
                kwargs["metavar"] = self.name.upper()
        if not self.positional:
            kwargs["default"] = self.cli_default()
            if self.required:
                kwargs["required"] = True
        parser.add_argument(self.name, **kwargs)


def add_options(parser, options: Sequence[Option]) -> None:
    """Declare ``options`` on an argparse parser, in order, in their groups."""
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for option in options:
        target = parser
        if option.group:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(option.group)
            target = groups[option.group]
        if option.exclusive:
            if option.exclusive not in exclusive:
                exclusive[option.exclusive] = target.add_mutually_exclusive_group()
            target = exclusive[option.exclusive]
        option.add_to(target)


def _config_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config.RunConfig)
            if f.default is not dataclasses.MISSING}


# ------------------------------------------------------------------------------------------
# Command line -> RunConfig conversions (each raises ConfigError, one line)
# ------------------------------------------------------------------------------------------
def _plugins(text: Optional[str]) -> tuple[str, ...]:
    if text is None:
        raise ConfigError("--plugins is required, e.g. --plugins dcgan,sagan (or continue a run "
                          "with --resume RUN_DIR)")
    return config.parse_names(text, "--plugins")


def _metrics(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    return () if text.strip().lower() == "none" else config.parse_names(text, "--metrics")


def columns(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """'a, b' -> ('a', 'b'); None -> None (the default columns)."""
    names = tuple(p.strip() for p in (text or "").split(",") if p.strip())
    if text is not None and not names:
        raise ConfigError("--columns is empty; give comma-separated column names")
    return names or None


def _digits_text(digits: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in digits) if digits else "all"


def _not(value: bool) -> bool:
    return not value


_STEPS = (f"{config.CPU_DEFAULTS['steps']} on CPU, {config.CUDA_DEFAULTS['steps']} on CUDA")
_SIZE = (f"{config.CPU_DEFAULTS['image_size']} on CPU, {config.CUDA_DEFAULTS['image_size']} on "
         "CUDA")
RESUME_GROUP = "interrupts and resume"
# Options that say how to run rather than what to measure: the only ones --resume accepts.
RESUME_OVERRIDES = ("quiet", "in_process", "jobs", "nproc", "retry_failed", "columns",
                    "stall_timeout")
_OVERRIDES = ", ".join("--" + dest.replace("_", "-") for dest in RESUME_OVERRIDES)
SCALE_GROUP = "scale-out (README: Scale-out)"

# `ganbench run`. Rows with a `field` set RunConfig; the others say how to run (read in
# commands/run.py). Order is the order of `ganbench run --help`.
RUN_OPTIONS: tuple[Option, ...] = (
    Option("--plugins", "comma-separated architectures, losses and attention kernels, e.g. "
           "dcgan,sagan or sagan,triton-attn (see `ganbench plugins`); required unless --resume",
           metavar="NAMES", field="plugins", to_config=_plugins),
    Option("--metrics", "comma-separated metric plugins, or 'none'", metavar="NAMES",
           default_text="every available metric", field="metrics", to_config=_metrics),
    Option("--data", "embedded (the shipped MNIST subset), mnist:DIR (IDX files), folder:DIR "
           "(images)", default=_FROM_CONFIG, metavar="SOURCE", field="data"),
    Option("--digits", "digits to train on, or 'all' (the textbook trains on 7s and 8s)",
           default=_FROM_CONFIG, field="digits", to_config=config.parse_digits,
           shown=_digits_text),
    Option("--device", "auto (cuda if available), cpu, cuda[:N]", default=_FROM_CONFIG,
           field="device"),
    Option("--steps", "training iterations", type=int, metavar="N", default_text=_STEPS,
           field="steps"),
    Option("--budget", "train every combination for the same wall time instead of the same "
           "steps, e.g. 90s or 2m (training only: model building and the final metrics are not "
           "counted, evaluations of --eval-every are); the row's steps column says how far "
           "each got. Not with --steps", metavar="TIME", field="budget_s",
           to_config=lambda text: None if text is None else config.parse_budget(text)),
    Option("--batch-size", "images per training step", type=int, metavar="N", default=_FROM_CONFIG,
           field="batch_size"),
    Option("--image-size", "image side in pixels, a power of two the architecture builds "
           "(dcgan and sagan: 32, 64 or 128)", type=int, metavar="PX", default_text=_SIZE,
           field="image_size"),
    Option("--seed", "the run's seed: it seeds training (initial weights, noise, batch order) "
           "and the evaluation's samples", type=int, metavar="S", default=_FROM_CONFIG,
           field="seed"),
    Option("--seeds", "train every combination under several seeds: K = the K seeds --seed, "
           "--seed+1, ..., --seed+K-1; a list (0,3,7) = exactly those. One row per (combination, "
           "seed), a summary with medians and 95% intervals, and verdicts; files get .seed<S> in "
           "their names (with one seed the names stay as they are). The evaluation's samples "
           "stay --seed's, so only training differs between seeds", metavar="K|A,B,..",
           default_text="one seed, --seed", field="seeds"),
    Option("--dtype", "auto: bf16 autocast on CPUs with native bf16, fp32 on other CPUs and on "
           "CUDA; fp32; or bf16 (autocast)", choices=config.DTYPES, default=_FROM_CONFIG,
           field="dtype"),
    Option("--memory-format", "memory format of G's and D's weights and activations",
           choices=config.MEMORY_FORMATS, default=_FROM_CONFIG, field="memory_format"),
    Option("--warmup", "untimed first steps", type=int, metavar="N",
           default_text=f"min({config.WARMUP_CAP}, steps/{config.WARMUP_SHARE})",
           field="warmup"),
    Option("--eval-n", "generated samples per metric evaluation; more than half the held-out "
           "digits is an error", type=int, metavar="N", field="eval_n",
           default_text=f"{config.DEFAULT_EVAL_N}, or half the held-out digits when fewer: "
           "1001 for the embedded 7s and 8s"),
    Option("--eval-every", "also evaluate every K steps and write quality curves; 0: only at "
           "the end", type=int, default=_FROM_CONFIG, metavar="K", field="eval_every"),
    Option("--target-fid", "record, per seed, the wall time and step at which the run's target "
           "metric (fid_digits: the first metric that declares a primary column) first passes "
           "X, checked at every --eval-every evaluation and at the end; a row that never does "
           "says 'not reached'", type=float, metavar="X", field="target_fid"),
    Option("--baseline", "also train each architecture with the textbook's own step (fp32, "
           "eager, its default loss and kernel) and add speedup_vs_textbook to every row",
           choices=config.BASELINES, field="baseline"),
    Option("--cuda-graph", "capture each training step once as a CUDA graph and replay it "
           "(CUDA only; the row says if capture was impossible and why)", action="store_true",
           field="cuda_graph"),
    Option("--compile", "torch.compile: 'models' (alone: --compile) compiles G and D; 'step' "
           "compiles the whole training iteration, both backward passes, the losses and both "
           "Adam updates included (the row's compile_s is the compile time, apart from the "
           "step times)", nargs="?", const="models", choices=config.COMPILE_SCOPES[1:],
           default_text="off", field="compile",
           to_config=lambda value: value or "off"),
    Option("--compile-mode", "torch.compile mode for --compile", choices=config.COMPILE_MODES,
           default=_FROM_CONFIG, field="compile_mode"),
    Option("--malloc", "keep: the C allocator keeps freed memory instead of returning it to "
           "the kernel, so a step's large buffers are not page-faulted in again every step "
           "(glibc's mallopt; CPU steps gain most; the peak can be higher where a step frees "
           "large buffers); default: glibc as it comes",
           choices=config.MALLOC_CHOICES, default=_FROM_CONFIG, field="malloc"),
    Option("--option", "an option for an attention kernel's factory, e.g. "
           "compile-attn.mode=max-autotune (repeatable; VALUE is JSON where it parses, else "
           "text)", action="append", metavar="PLUGIN.KEY=VALUE", field="options",
           to_config=config.parse_options),
    Option("--out", "run folder", type=Path, metavar="RUN_DIR",
           default_text="results/runs/<time>-<names>", field="out"),
    Option("--columns", "comma-separated columns of the printed table (results.csv always has "
           "every column)", metavar="NAMES", default_text="the ones that matter, fitted to the "
           "terminal", field="columns", to_config=columns),
    Option("--reference", "with several seeds: judge every combination against COMBO (e.g. "
           "dcgan+bce) in the verdicts under the table", metavar="COMBO",
           default_text="every pair", field="reference"),
    Option("--quiet", "no progress, notes or warnings on stderr and no table on stdout: only "
           "the line 'results: RUN_DIR' (the table is in RUN_DIR/results.md); errors are still "
           "shown", action="store_true", field="quiet"),
    Option("--in-process", "train in this process instead of one fresh process per "
           "combination (faster start; CPU peak memory is then not per combination)",
           action="store_true", field="isolate", to_config=_not),
    Option("--checkpoint-every", "save each combination's training state every K steps to "
           "RUN_DIR/checkpoints/ so --resume can continue it; 0: never", type=int,
           default=_FROM_CONFIG, metavar="K", field="checkpoint_every", group=RESUME_GROUP),
    Option("--stall-timeout", "stop a combination's worker after this long without progress "
           "(progress comes every 10 steps and at each phase); its row says 'stalled at step "
           "K'. 0: never; not with --in-process", type=float, metavar="SECONDS",
           default=_FROM_CONFIG, field="stall_timeout", group=RESUME_GROUP),
    Option("--resume", "continue an interrupted run with the settings in its config.json: "
           "finished combinations keep their rows, an unfinished one continues from its last "
           f"checkpoint (only {_OVERRIDES} may be given with it; --nproc must be the run's)",
           type=Path, metavar="RUN_DIR", group=RESUME_GROUP),
    Option("--retry-failed", "with --resume: also retrain the combinations whose row says "
           "crashed, oom or failed, from their last checkpoint", action="store_true",
           group=RESUME_GROUP),
    Option("--force", "start afresh in an --out folder that holds another run: its rows, "
           "checkpoints and artifacts are deleted first", action="store_true",
           group=RESUME_GROUP),
    Option("--nproc", "data-parallel training on N ranks: execs `torchrun --standalone "
           "--nproc-per-node N -m ganbench run` with the other options. --batch-size stays the "
           "global batch (N ranks x batch/N each)", type=int, metavar="N", group=SCALE_GROUP),
    Option("--sync-bn", "with N ranks: BatchNorm -> SyncBatchNorm (global-batch statistics; "
           "CUDA only)", action="store_true", field="sync_bn", group=SCALE_GROUP),
    Option("--scaling", "with N ranks: also time each combination on 1 rank (per-rank batch) "
           "and fill scaling_efficiency", action="store_true", field="scaling",
           group=SCALE_GROUP),
    Option("--jobs", "train K combinations at once, each in its own worker process (timings "
           "then share the machine: see parallel_jobs)", type=int, default=_FROM_CONFIG,
           metavar="K", field="jobs", group=SCALE_GROUP),
)
