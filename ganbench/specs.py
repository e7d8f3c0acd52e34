"""The typed specs a plugin hands to ``register(...)``.

Every spec has a lowercase-hyphen ``name`` (``sagan``, ``hinge``, ``triton-attn``), a one-line
``summary``, a factory, and ``why_unavailable(device) -> str | None``: ``None`` means the plugin can
run on that device ("cpu", "cuda", "cuda:1"), a string is the one-line reason it cannot
("needs CUDA", "triton is not installed"). ``ganbench plugins`` shows that reason.

Specs are frozen: a registry hands the same object to every combination.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class MetricSpec(PluginSpec):
    """A sample-quality metric: ``factory()`` returns a :class:`Metric`.

    ``directions`` says which way is better for each column the metric writes: a mapping (or
    pairs) of column name or shell pattern to ``"lower"``, ``"higher"`` or ``"closer"`` (closer
    to the real-data reference row is better), e.g. ``{"fid_digits": "lower"}`` or
    ``{"prdc_*": "higher"}``. ``ganbench compare`` compares
    only columns with a direction (so ``--fail-on my_score:+5%`` needs one), and the run's
    table shows them by default. Stored as a tuple of (pattern, way) pairs, so the spec stays
    hashable.
    """

    factory: Callable[[], Metric]
    why_unavailable: Callable[[str], Optional[str]] = always_available
    directions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        pairs = self.directions
        if isinstance(pairs, Mapping):
            pairs = tuple(pairs.items())
        try:
            pairs = tuple((str(pattern), way) for pattern, way in pairs)
        except (TypeError, ValueError):
            raise ValueError(f"metric {self.name!r}: directions must map column names to "
                             "'lower', 'higher' or 'closer'") from None
        for pattern, way in pairs:
            if way not in ("lower", "higher", "closer") or not pattern.strip():
                raise ValueError(f"metric {self.name!r}: direction of {pattern!r} is {way!r}; "
                                 "use 'lower' or 'higher' (or 'closer': nearer the real-data row "
                                 "is better)")
        object.__setattr__(self, "directions", pairs)


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
