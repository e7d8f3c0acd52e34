"""The typed specs a plugin hands to ``register(...)``.

Every spec has a lowercase-hyphen ``name`` (``sagan``, ``hinge``, ``triton-attn``), a one-line
``summary``, a factory, and ``why_unavailable(device) -> str | None``: ``None`` means the plugin can
run on that device ("cpu", "cuda", "cuda:1"), a string is the one-line reason it cannot
("needs CUDA", "triton is not installed"). ``ganbench plugins`` shows that reason.

Specs are frozen: a registry hands the same object to every combination.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional

if TYPE_CHECKING:  # only for the type checker: importing torch here would slow `ganbench --help`
    import torch
    from torch import nn

NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def always_available(device: str) -> Optional[str]:
    """The default availability check: runs everywhere."""
    return None


@dataclass(frozen=True)
class PluginSpec:
    """What every spec has: a lowercase-hyphen ``name`` and a one-line ``summary``.

    Each concrete spec adds its factory and ``why_unavailable`` (default: runs everywhere).
    """

    name: str
    summary: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ValueError(f"plugin name {self.name!r} is not lowercase-hyphen "
                             "(e.g. 'my-loss')")
        if not isinstance(self.summary, str) or not self.summary.strip() or "\n" in self.summary:
            raise ValueError(f"plugin {self.name!r}: summary must be one non-empty line")
        if not callable(getattr(self, "why_unavailable", None)):
            raise ValueError(f"plugin {self.name!r}: why_unavailable must be callable")


# --------------------------------------------------------------------------------------------
# Attention kernels
# --------------------------------------------------------------------------------------------
AttendFn = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class AttentionSpec(PluginSpec):
    """An attention kernel: ``factory(**options)`` returns ``attend(q, k, v) -> o``.

    Contract of ``attend``: q and k are (B, N, Dqk), v is (B, N, Dv), all one dtype and device;
    it returns o = softmax(q @ k^T, over keys) @ v of shape (B, N, Dv) in v's dtype, with NO
    1/sqrt(Dqk) scale (SAGAN's attention has none). It must be differentiable in q, k and v.
    ``kernels/attention/reference.py`` is the specification every kernel is tested against.
    """

    factory: Callable[..., AttendFn]
    why_unavailable: Callable[[str], Optional[str]] = always_available


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchitectureDefaults:
    """The hyper-parameters an architecture trains with unless the user overrides them."""

    loss: str
    g_lr: float
    d_lr: float
    betas: tuple[float, float]
    z_dim: int
    attention: Optional[str] = None  # the kernel used when the user names none


@dataclass(frozen=True)
class ModelRequest:
    """What the core asks an architecture to build."""

    image_size: int
    z_dim: int
    channels: int = 1
    attend: Optional[AttendFn] = None  # set only when the architecture uses attention


@dataclass(frozen=True)
class ArchitectureSpec(PluginSpec):
    """A GAN architecture: ``build(request) -> (generator, discriminator)``.

    The generator maps z of shape (B, z_dim, 1, 1) to images (B, C, S, S) in [-1, 1]; the
    discriminator maps images to logits of shape (B,) (one score per image, no sigmoid).
    ``uses_attention`` says whether the architecture takes an attention kernel; the core pairs
    kernels only with such architectures. ``image_sizes`` lists the sizes it can build.
    ``attention_shapes(image_size, batch_size)``, optional, lists the (B, N, Dqk, Dv) of every
    attention call one training step makes, so a kernel's ``prepare`` can compile exactly
    those before the first step (and the row reports that time as ``compile_s``).
    """

    build: Callable[[ModelRequest], "tuple[nn.Module, nn.Module]"]
    defaults: ArchitectureDefaults
    uses_attention: bool = False
    image_sizes: tuple[int, ...] = (32, 64)
    why_unavailable: Callable[[str], Optional[str]] = always_available
    attention_shapes: Optional[Callable[[int, int], list]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.image_sizes or any(int(s) <= 0 for s in self.image_sizes):
            raise ValueError(f"architecture {self.name!r}: image_sizes must be positive")


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
@dataclass
class LossInputs:
    """Everything a loss may need for one step.

    ``real_logits`` and ``fake_logits`` are D's outputs (B,); ``real`` and ``fake`` the image
    batches D saw (``fake`` detached for the D step); ``discriminator`` is D itself, so a loss
    with a gradient penalty (WGAN-GP, R1) can call it again. ``real_logits``/``real`` are None in
    the G step.
    """

    fake_logits: "torch.Tensor"
    real_logits: Optional["torch.Tensor"] = None
    real: Optional["torch.Tensor"] = None
    fake: Optional["torch.Tensor"] = None
    discriminator: Optional["nn.Module"] = None


class GANLoss:
    """A loss object: ``d_loss(inputs)`` and ``g_loss(inputs)`` each return a scalar tensor."""

    def d_loss(self, inputs: LossInputs) -> "torch.Tensor":  # pragma: no cover - interface
        raise NotImplementedError

    def g_loss(self, inputs: LossInputs) -> "torch.Tensor":  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class LossSpec(PluginSpec):
    """A GAN loss: ``factory()`` returns a :class:`GANLoss`."""

    factory: Callable[[], GANLoss]
    why_unavailable: Callable[[str], Optional[str]] = always_available


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricContext:
    """What a metric knows about the run besides the two image sets."""

    digits: tuple[int, ...]        # the selected digit classes
    image_size: int
    device: str
    seed: int = 0
    real_labels: Optional["torch.Tensor"] = None  # labels of ``real`` where known
    # The run's training images (N, 1, S, S) in [-1, 1], same S as the samples: what the
    # memorisation metric measures nearness to. None: that metric reports NaN.
    train: Optional["torch.Tensor"] = None


class Metric:
    """``compute(fake, real, context) -> {column: value}``.

    ``fake`` and ``real`` are float tensors (N, 1, S, S) in [-1, 1] on the CPU, same S.
    Returned column names are snake_case and should start with the metric's own prefix
    (``fid_digits``, ``prdc_precision``); values are floats or ints.
    """

    def compute(self, fake: "torch.Tensor", real: "torch.Tensor",
                context: MetricContext) -> Mapping[str, float]:  # pragma: no cover - interface
        raise NotImplementedError


# Which way is better for a column: "lower", "higher", or "closer" to the real-data row's
# value. "closer" is for two-sided metrics, which a generator can overshoot: five real digits
# repeated score precision 1.00 and density 1.62 against the real row's 0.90 and 0.98, and all
# ten digits an Inception Score of 9.5 against 2.15 for a 7s-and-8s run; none of that is better.
COLUMN_WAYS = ("lower", "higher", "closer")
# What a metric may declare about each of its columns (MetricSpec.columns).
COLUMN_FIELDS = ("label", "unit", "format", "direction", "visible")
# Display formats a column may name: sigN (N significant figures, fixed-point), fixedN (N
# decimals), int, mib (bytes shown as MiB), sci (scientific), text, as-is, general.
COLUMN_FORMAT = re.compile(r"^(sig[1-9]|fixed[0-9]|int|mib|sci|text|as-is|general)$")


def _pairs(owner: str, value, what: str) -> tuple:
    if isinstance(value, Mapping):
        value = tuple(value.items())
    try:
        return tuple((str(pattern), item) for pattern, item in value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {what}") from None


def _column_fields(owner: str, pattern: str, fields) -> tuple:
    """One MetricSpec.columns value checked and frozen into sorted (field, value) pairs."""
    if isinstance(fields, tuple) and all(isinstance(f, tuple) and len(f) == 2 for f in fields):
        fields = dict(fields)  # already frozen (a spec copied with dataclasses.replace)
    if not isinstance(fields, Mapping):
        raise ValueError(f"{owner}: columns[{pattern!r}] must be a mapping of "
                         f"{', '.join(COLUMN_FIELDS)}")
    for key, value in fields.items():
        where = f"{owner}: columns[{pattern!r}][{key!r}]"
        if key not in COLUMN_FIELDS:
            raise ValueError(f"{where} is not a column field; use {', '.join(COLUMN_FIELDS)}")
        if key in ("label", "unit") and (not isinstance(value, str) or "\n" in value):
            raise ValueError(f"{where} must be one line of text")
        if key == "format" and not (isinstance(value, str) and COLUMN_FORMAT.match(value)):
            raise ValueError(f"{where} is {value!r}; use sigN, fixedN, int, mib, sci, text, "
                             "as-is or general")
        if key == "direction" and value not in COLUMN_WAYS + (None,):
            raise ValueError(f"{where} is {value!r}; use 'lower', 'higher', 'closer' or None")
        if key == "visible" and not isinstance(value, bool):
            raise ValueError(f"{where} must be True or False")
    return tuple(sorted(fields.items()))


@dataclass(frozen=True)
class MetricSpec(PluginSpec):
    """A sample-quality metric: ``factory()`` returns a :class:`Metric`.

    ``directions`` says which way is better for each column the metric writes: a mapping (or
    pairs) of column name or shell pattern to ``"lower"``, ``"higher"`` or ``"closer"`` (closer
    to the real-data row's value, for two-sided metrics), e.g. ``{"fid_digits": "lower"}`` or
    ``{"prdc_*": "higher"}``. ``ganbench compare`` and the verdicts judge only columns with a
    direction (so ``--fail-on my_score:+5%`` needs one); a "closer" column is judged by its
    distance to the real row.

    ``columns`` (optional) says how each column is shown: a mapping of column name or shell
    pattern to a mapping with any of ``label`` (the header; ``{0}`` stands for what the
    pattern's first ``*`` matched: ``{"modes_share_*": {"label": "{0}s share"}}``), ``unit``
    (shown after the label), ``format`` (sigN, fixedN, int, mib, sci, text, general),
    ``direction`` (as above) and ``visible`` (False: left out of the default table, shown with
    --columns or --all-columns; default True). An exact name wins over a pattern.

    ``default``: scored when ``--metrics`` is not given (if available on the device).
    ``primary``: the column that stands for sample quality in ``--target-fid``, the quality
    curves and CI charts; the first registered default metric that names one provides it.

    Everything is stored as tuples of pairs, so the spec stays hashable.
    """

    factory: Callable[[], Metric]
    why_unavailable: Callable[[str], Optional[str]] = always_available
    directions: tuple[tuple[str, str], ...] = ()
    columns: tuple[tuple[str, tuple], ...] = ()
    default: bool = True
    primary: Optional[str] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = f"metric {self.name!r}"
        pairs = _pairs(owner, self.directions, "directions must map column names to "
                                               "'lower', 'higher' or 'closer'")
        for pattern, way in pairs:
            if way not in COLUMN_WAYS or not pattern.strip():
                raise ValueError(f"{owner}: direction of {pattern!r} is {way!r}; "
                                 "use 'lower', 'higher' or 'closer'")
        object.__setattr__(self, "directions", pairs)
        columns = _pairs(owner, self.columns, "columns must map column names or patterns to "
                                              "mappings of " + ", ".join(COLUMN_FIELDS))
        columns = tuple((pattern, _column_fields(owner, pattern, fields))
                        for pattern, fields in columns)
        for pattern, fields in columns:
            way = dict(fields).get("direction")
            if way is not None and dict(pairs).get(pattern, way) != way:
                raise ValueError(f"{owner}: {pattern!r} is {dict(pairs)[pattern]!r} in "
                                 f"directions but {way!r} in columns")
        object.__setattr__(self, "columns", columns)
        if not isinstance(self.default, bool):
            raise ValueError(f"{owner}: default must be True or False")
        if self.primary is not None:
            ways = dict(pairs)
            ways.update({p: dict(f)["direction"] for p, f in columns
                         if dict(f).get("direction")})
            import fnmatch

            if not isinstance(self.primary, str) or not re.match(r"^[a-z0-9_]+$", self.primary):
                raise ValueError(f"{owner}: primary must be one column name, got "
                                 f"{self.primary!r}")
            way = next((w for p, w in ways.items() if p == self.primary), None) or next(
                (w for p, w in ways.items() if fnmatch.fnmatchcase(self.primary, p)), None)
            if way not in ("lower", "higher"):
                raise ValueError(f"{owner}: primary column {self.primary!r} needs a 'lower' or "
                                 "'higher' direction (in directions or columns): --target-fid "
                                 "waits for it to pass a value")


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------
@dataclass
class DigitData:
    """Prepared digits: float32 (N, 1, S, S) in [-1, 1] and int64 labels (-1 where unknown).

    ``train`` is what the GAN learns from; ``heldout`` is never trained on and is what quality
    metrics compare samples against. ``source`` says where the digits came from, for the row.
    """

    train: "torch.Tensor"
    train_labels: "torch.Tensor"
    heldout: "torch.Tensor"
    heldout_labels: "torch.Tensor"
    source: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec(PluginSpec):
    """A data source: ``load(argument, digits, image_size) -> DigitData``.

    ``--data NAME`` calls it with ``argument=None``; ``--data NAME:ARG`` (``mnist:DIR``,
    ``folder:DIR``) passes ``ARG``. ``digits`` is the selection (empty tuple = all). A bad
    argument or unreadable data raises :class:`ganbench.errors.DataError` with a one-line message.
    """

    load: Callable[[Optional[str], tuple[int, ...], int], DigitData]
    why_unavailable: Callable[[str], Optional[str]] = always_available


SPEC_KINDS: dict[str, type] = {
    "architecture": ArchitectureSpec,
    "loss": LossSpec,
    "attention": AttentionSpec,
    "metric": MetricSpec,
    "dataset": DatasetSpec,
}
