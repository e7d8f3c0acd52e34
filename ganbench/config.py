"""The run configuration: typed, frozen, validated once.

Every bad value fails here with a one-line :class:`ConfigError` (the CLI turns it into exit 2)
before anything is trained or written. Values that depend on the device ("auto" steps and image
size) are resolved by :func:`resolve`, so the stored config says what actually ran.

This module is the one source of the run's defaults and choices: :class:`RunConfig`'s field
defaults and the tuples below. ``ganbench run --help``, docs/cli.md and the README's command
table are rendered from them through :mod:`ganbench.options` (a test checks every default and
choice list shown in the help against these). Standard library only at import time.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ganbench.errors import ConfigError

DTYPES = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("channels_last", "contiguous")
# CPU flags of native bf16 arithmetic (/proc/cpuinfo): there bf16 autocast halved the step
# (SAGAN 32x32, batch 64, 1 thread, AMD EPYC with avx512_bf16: 1016 -> 550 ms with
# channels_last; scripts/cpu_step_options.py). Without them oneDNN emulates bf16, slower than fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Default budgets. On the CPU: the textbook's models at 32x32 for 600 steps, the point where
# both digit classes appear (fid_digits falls below 150 between 400 and 500 steps for SAGAN, at
# about 600 for DCGAN); `ganbench run --plugins dcgan,sagan` then takes about 105 s on a 2-core
# CPU with native bf16 (README "Defaults and budgets"; results/default-run-cpu). 200 steps give
# strokes rather than digits. On CUDA: the textbook's 64x64 images.
CPU_DEFAULTS = {"steps": 600, "image_size": 32}
CUDA_DEFAULTS = {"steps": 1000, "image_size": 64}
# Untimed warm-up steps when --warmup is not given: min(WARMUP_CAP, steps // WARMUP_SHARE).
# Ten steps cover the allocator's and autotuners' first calls (docs/measurement.md); a short run
# keeps four fifths of its steps timed.
WARMUP_CAP = 10
WARMUP_SHARE = 5
# Generated samples scored per metric evaluation when --eval-n is not given, if the held-out
# half of the data allows as many (the embedded 7s and 8s allow 1001); FID-like distances are
# biased by N, so only rows of one N compare.
DEFAULT_EVAL_N = 2000
BASELINES = ("textbook",)   # --baseline: the chapter's own training step as an extra row
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# torch.compile's modes (torch._inductor.list_mode_options() in torch 2.13); checked here so a
# typo fails before any training instead of inside every worker.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# --compile: what torch.compile wraps. "models": G and D (their forward and, through
# AOTAutograd, backward); "step": the whole training iteration, losses and both Adam updates
# included (ganbench.training.compiled_step). True/False (runs made before "step") read as
# "models"/"off".
COMPILE_SCOPES = ("off", "models", "step")
# --malloc: glibc's allocator as it comes, or keeping freed memory in the process
# (ganbench.training.malloc). "keep" is the default: it costs no compile and no accuracy, and on
# the project's 2-core EPYC (2026-12-06, results/cpu-step-best) it took SAGAN's bf16 step at
# 64x64, batch 64 from 1120 to 927 ms and at 32x32 (the default run) from 170-188 to 160-164 ms,
# DCGAN's unchanged, peak memory +5% at 64x64 and within 1% at 32x32 (but up to +35% at 64x64,
# batch 256: results/cpu-scaling). The textbook row always runs glibc as it comes.
MALLOC_CHOICES = ("default", "keep")
# A checkpoint every 50 steps costs one torch.save of G, D and two Adam states (a few MB at
# 64x64, ~10-50 ms) against 50 steps of 0.2-2 s each on the CPU: under 1% of a run, and an
# interrupt loses at most 50 steps.
DEFAULT_CHECKPOINT_EVERY = 50
SEED_LIMIT = 2**62  # torch seeds are 64-bit and the runner adds small offsets to the seed
# A worker that reports nothing for this long is stopped (its row: "stalled at step K"). Progress
# comes every 10 steps and at each phase; the slowest the project has seen is ~70 s per 10
# SAGAN steps on its loaded 2-core CPU (6.8 s a step), and a first compile takes minutes, so 10
# minutes stops a hung plugin without cutting a slow real run short.
DEFAULT_STALL_TIMEOUT_S = 600.0
# --seeds K above this is taken for a typo rather than trained: each seed trains every
# combination, and 1000 seeds of the default `run --plugins dcgan,sagan` (105 s on 2 cores) is
# about 29 hours.
MAX_SEEDS = 1000
# --budget: a number of seconds or minutes ("90s", "1.5m", "90" = seconds).
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([sm]?)\s*$")
# --budget without --warmup: the first 10 steps are untimed, as min(10, steps // 5) gives for
# any run of 50 steps or more (a budget run's length is not known in advance).
BUDGET_WARMUP = 10


@dataclass(frozen=True)
class RunConfig:
    plugins: tuple[str, ...]
    metrics: Optional[tuple[str, ...]] = None   # None: every metric available; (): none
    data: str = "embedded"                      # NAME or NAME:ARG
    digits: tuple[int, ...] = (7, 8)            # the textbook trains on 7s and 8s; () = all
    device: str = "auto"
    steps: Optional[int] = None                 # None: the device's default (or --budget)
    budget_s: Optional[float] = None            # train each combination this long instead
    batch_size: int = 64
    image_size: Optional[int] = None
    seed: int = 0                               # evaluation's seed, and training's by default
    seeds: tuple[int, ...] = ()                 # training seeds; (): just (seed,)
    dtype: str = "auto"                         # bf16 on CPUs with native bf16, else fp32
    memory_format: str = "channels_last"        # of G's and D's weights and activations
    warmup: Optional[int] = None                # None: min(WARMUP_CAP, steps // 5) untimed
    eval_n: Optional[int] = None                # samples scored; None: DEFAULT_EVAL_N or fewer
    eval_every: int = 0                         # 0: evaluate only at the end
    target_fid: Optional[float] = None
    compile: str = "off"                        # off | models (G and D) | step (all of it)
    compile_mode: str = "default"
    baseline: Optional[str] = None              # "textbook": add the chapter's step as a row
    cuda_graph: bool = False                    # capture each step in a CUDA graph
    malloc: str = "keep"                        # keep (freed memory stays mapped) | default
    columns: Optional[tuple[str, ...]] = None   # the printed table's columns (None: default)
    reference: Optional[str] = None             # the combination the verdicts judge against
    out: Optional[Path] = None
    quiet: bool = False
    isolate: bool = True                        # one fresh process per combination
    jobs: int = 1                               # combinations trained side by side
    sync_bn: bool = False                       # torchrun: BatchNorm -> SyncBatchNorm
    scaling: bool = False                       # torchrun: also time 1 rank, fill efficiency
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY  # steps between checkpoints; 0: none
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S  # s without progress before a worker stops
    world_size: int = 1                         # ranks the run trains on (set under torchrun)
    options: dict = field(default_factory=dict)  # {plugin: {key: value}} for its factory

    def __post_init__(self) -> None:
        if not self.plugins:
            raise ConfigError("--plugins needs at least one name, e.g. --plugins dcgan,sagan")
        _positive("--steps", self.steps, allow_none=True)
        _positive("--batch-size", self.batch_size)
        _positive("--eval-n", self.eval_n, allow_none=True)
        _positive("--image-size", self.image_size, allow_none=True)
        if self.image_size is not None and self.image_size & (self.image_size - 1):
            raise ConfigError(f"--image-size must be a power of two, got {self.image_size}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.steps is not None and self.warmup is not None and self.warmup >= self.steps:
            raise ConfigError(f"--warmup ({self.warmup}) must be smaller than --steps "
                              f"({self.steps}) so some steps are timed")
        if not isinstance(self.seed, int) or not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"--seed must be an integer from 0 to 2**62 - 1, got {self.seed!r}")
        _check_seeds(self.seeds)
        if self.budget_s is not None:
            if not isinstance(self.budget_s, (int, float)) or not 0 < self.budget_s < 1e9:
                raise ConfigError(f"--budget must be a positive duration, got {self.budget_s!r}")
            if self.steps is not None:
                raise ConfigError("--budget and --steps both set how long each combination "
                                  "trains (wall time or steps); give one of them")
        if self.compile is None or isinstance(self.compile, bool):  # compile=True, old files
            object.__setattr__(self, "compile", "models" if self.compile else "off")
        if self.compile not in COMPILE_SCOPES:
            raise ConfigError(f"--compile must be one of {', '.join(COMPILE_SCOPES[1:])} (or "
                              f"absent), got {self.compile!r}")
        if self.malloc not in MALLOC_CHOICES:
            raise ConfigError(f"--malloc must be one of {', '.join(MALLOC_CHOICES)}, got "
                              f"{self.malloc!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got "
                              f"{self.compile_mode!r}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0 (0: no checkpoints), got "
                              f"{self.checkpoint_every!r}")
        if isinstance(self.stall_timeout, bool) or not isinstance(self.stall_timeout,
                                                                  (int, float)) \
                or not 0 <= self.stall_timeout < float("inf"):
            raise ConfigError(f"--stall-timeout must be a number of seconds >= 0 (0: never), "
                              f"got {self.stall_timeout!r}")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError(f"--baseline must be one of {', '.join(BASELINES)}, got "
                              f"{self.baseline!r}")
        if self.eval_every < 0:
            raise ConfigError(f"--eval-every must be >= 0, got {self.eval_every}")
        _positive("--jobs", self.jobs)
        _positive("world_size", self.world_size)
        if self.jobs > 1 and not self.isolate:
            raise ConfigError("--jobs runs combinations in parallel worker processes; it "
                              "cannot be combined with --in-process")
        if self.target_fid is not None and not self.target_fid > 0:
            raise ConfigError(f"--target-fid must be > 0, got {self.target_fid}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"--memory-format must be one of {', '.join(MEMORY_FORMATS)}, "
                              f"got {self.memory_format!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        bad = [d for d in self.digits if not 0 <= d <= 9]
        if bad:
            raise ConfigError(f"--digits must be between 0 and 9, got {bad[0]}")
        if len(set(self.digits)) != len(self.digits):
            raise ConfigError("--digits lists a digit twice")

    @property
    def compiled(self) -> bool:
        """Whether torch.compile wraps anything (G and D, or the whole step)."""
        return self.compile != "off"

    @property
    def training_seeds(self) -> tuple[int, ...]:
        """The seeds every combination trains under, in order: ``seeds``, or ``(seed,)``."""
        return self.seeds or (self.seed,)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out) if self.out is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        for key in ("plugins", "digits"):
            d[key] = tuple(d[key])
        d["seeds"] = tuple(d.get("seeds") or ())  # absent in runs made before --seeds
        d.setdefault("malloc", "default")  # runs made before --malloc ran glibc as it comes
        for key in ("metrics", "columns"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["out"] = Path(d["out"]) if d.get("out") else None
        d.pop("provenance", None)  # written beside the settings (record of what ran), not one
        return cls(**d)


def _positive(flag: str, value: Optional[int], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def _check_seeds(seeds) -> None:
    if not isinstance(seeds, tuple):
        raise ConfigError(f"--seeds must be a tuple of integers, got {seeds!r}")
    bad = [x for x in seeds if not isinstance(x, int) or isinstance(x, bool)
           or not 0 <= x < SEED_LIMIT]
    if bad:
        raise ConfigError(f"--seeds must be integers from 0 to 2**62 - 1, got {bad[0]!r}")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds lists {len(seeds)} seeds, more than {MAX_SEEDS}")
    repeated = sorted({x for x in seeds if seeds.count(x) > 1})
    if repeated:
        raise ConfigError(f"--seeds lists seed {repeated[0]} twice; each seed trains once")


def parse_seeds(text: str, base: int) -> tuple[int, ...]:
    """``--seeds``: 'K' (one integer) -> the K seeds base, base+1, ..., base+K-1 (``base`` is
    --seed); 'A,B,...' (a comma anywhere) -> exactly those seeds, in that order.

    >>> parse_seeds("3", 10), parse_seeds("0,3,7", 10)
    ((10, 11, 12), (0, 3, 7))
    """
    text = text.strip()
    usage = "--seeds takes a count K (seeds --seed .. --seed+K-1) or a list like 0,3,7"
    if "," not in text:
        try:
            count = int(text)
        except ValueError:
            raise ConfigError(f"{usage}, got {text!r}") from None
        if count < 1:
            raise ConfigError(f"--seeds must be at least 1, got {count}")
        if count > MAX_SEEDS:
            raise ConfigError(f"--seeds {count} is more than {MAX_SEEDS} seeds; is it a typo?")
        if base + count > SEED_LIMIT:
            raise ConfigError(f"--seeds {count} from --seed {base} passes 2**62 - 1")
        return tuple(range(base, base + count))
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        seeds = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{usage}, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"{usage}, got {text!r}")
    _check_seeds(seeds)
    return seeds


def parse_budget(text: str) -> float:
    """``--budget``: '90s', '1.5m' or '90' (seconds) -> seconds (a positive float)."""
    match = _BUDGET.match(text.lower())
    seconds = None
    if match:
        seconds = float(match.group(1)) * (60 if match.group(2) == "m" else 1)
    if seconds is None or not 0 < seconds < 1e9:
        raise ConfigError(f"--budget takes a positive wall time per combination such as 90s "
                          f"or 2m, got {text!r}")
    return seconds


def parse_names(text: str, flag: str) -> tuple[str, ...]:
    """'a, b,,a' -> ('a', 'b'): split on commas, strip, drop empties and repeats."""
    names = [n.strip() for n in text.split(",")]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"{flag} is empty; give comma-separated names")
    return tuple(dict.fromkeys(names))


def parse_digits(text: str) -> tuple[int, ...]:
    """'7,8' -> (7, 8); 'all' -> () (every digit)."""
    if text.strip().lower() == "all":
        return ()
    try:
        digits = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--digits takes comma-separated digits 0-9 or 'all', got {text!r}")
    if not digits:
        raise ConfigError("--digits is empty; give e.g. --digits 7,8 or --digits all")
    return digits


def parse_options(items: list[str]) -> dict:
    """['compile-attn.mode=max-autotune', 'x.k=3'] -> {'compile-attn': {'mode': 'max-autotune'},
    'x': {'k': 3}}. Values are read as JSON where they parse (3, 0.5, true), else as text."""
    import json

    options: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        plugin, dot, name = key.partition(".")
        if not (sep and dot and plugin and name):
            raise ConfigError(f"--option takes PLUGIN.KEY=VALUE (e.g. compile-attn.mode="
                              f"max-autotune), got {item!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        options.setdefault(plugin.strip(), {})[name.strip()] = parsed
    return options


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; a CUDA request without CUDA is an error."""
    if not _DEVICE.match(requested):  # commands other than run call this without a RunConfig
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested} asked, but this machine has no CUDA device "
                              "(torch.cuda.is_available() is False); use --device cpu")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: only {torch.cuda.device_count()} CUDA "
                              "device(s) here")
    return requested


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill the device-dependent defaults; the result is what the run records."""
    device = resolve_device(cfg.device)
    defaults = CUDA_DEFAULTS if device.startswith("cuda") else CPU_DEFAULTS
    if cfg.budget_s is not None:  # a wall-time budget: the steps are whatever fits in it
        steps = None
        warmup = cfg.warmup if cfg.warmup is not None else BUDGET_WARMUP
    else:
        steps = cfg.steps if cfg.steps is not None else defaults["steps"]
        warmup = cfg.warmup if cfg.warmup is not None else min(WARMUP_CAP, steps // WARMUP_SHARE)
        if warmup >= steps:
            raise ConfigError(f"--warmup ({warmup}) must be smaller than --steps ({steps})")
    dtype = cfg.dtype if cfg.dtype != "auto" else auto_dtype(device)
    if dtype == "bf16" and device == "cpu":
        import torch

        if not torch.backends.mkldnn.is_available():
            raise ConfigError("--dtype bf16 needs oneDNN on the CPU; use --dtype fp32")
    return dataclasses.replace(
        cfg, device=device, steps=steps, warmup=warmup, dtype=dtype,
        image_size=cfg.image_size if cfg.image_size is not None else defaults["image_size"])


def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU reports a native bf16 instruction set (Linux's /proc/cpuinfo flags);
    False when it does not or the file cannot be read (other systems: fp32, the safe side)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def auto_dtype(device: str) -> str:
    """``--dtype auto``: bf16 autocast on a CPU with native bf16, fp32 elsewhere. CUDA stays
    fp32 so GPU rows keep the textbook's arithmetic unless the user asks for bf16."""
    if device == "cpu" and native_bf16_cpu():
        import torch

        if torch.backends.mkldnn.is_available():
            return "bf16"
    return "fp32"
