"""`ganbench new-plugin NAME --kind KIND`: scaffold a plugin distribution that works as created.

``ganbench new-plugin focal --kind loss --out DIR`` writes ``DIR/ganbench-focal/``::

    pyproject.toml                 distribution "ganbench-focal", entry point in group "ganbench"
    README.md                      install, test, benchmark
    src/ganbench_focal/plugin.py   one working hook implementation for the kind
    tests/test_ganbench_focal.py   unit tests for it, and a check that ganbench finds it

The registered plugin is called NAME ("focal"); ``ganbench run --plugins ...,focal`` picks it up
once the folder is installed (``pip install -e DIR/ganbench-focal``). Every template is a real
implementation (a loss, an attention kernel computing softmax(q k^T) v, an architecture, a
metric, a dataset), so the scaffold's tests pass before the author changes a line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from string import Template

NAME = "new-plugin"
HELP = "scaffold a third-party plugin package (pyproject, hook implementation, tests)"
DIST_PREFIX = "ganbench-"

# ------------------------------------------------------------------------------------------
# Templates. string.Template ($name) rather than str.format, so the generated code can use
# braces freely. Placeholders: $name (plugin name), $dist (distribution), $pkg (import package),
# $kind, $hook, $prefix (NAME in snake_case, for metric columns), $summary, $try_it.
# ------------------------------------------------------------------------------------------
PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "ganbench $kind plugin: $name"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["ganbench", "torch"]

# ganbench finds plugins through this entry-point group; the value is the module whose
# @hookimpl functions it calls.
[project.entry-points.ganbench]
$prefix = "$pkg.plugin"

[tool.setuptools.packages.find]
where = ["src"]
"""

README = """\
# $dist

A ganbench $kind plugin registering `$name`: $summary.

```bash
pip install -e .                 # ganbench finds it through the "ganbench" entry point
pytest tests                     # the plugin's own tests
ganbench plugins                 # $name, source $dist==0.1.0
$try_it
```

Edit `src/$pkg/plugin.py`; the contract is in ganbench's docs/plugins.md.
"""

INIT = '"""ganbench $kind plugin: $name."""\n'

PLUGINS = {}  # kind -> plugin.py template
TESTS = {}    # kind -> the kind-specific part of the test module

PLUGINS["loss"] = '''\
"""$name: a GAN loss for ganbench.

The template is the non-saturating logistic loss (Goodfellow et al. 2014) written with
softplus(t) = log(1 + e^t), which is stable for logits of any size:

    D: E[softplus(-D(x))] + E[softplus(D(G(z)))]      (real -> high, fake -> low)
    G: E[softplus(-D(G(z)))]                          (fake -> high)

Replace the two formulas with yours. ``inputs`` is a ganbench.specs.LossInputs: logits of shape
(B,); in the D step also ``real``, ``fake`` (detached) and ``discriminator`` for penalties.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganbench.hookspecs import hookimpl
from ganbench.specs import GANLoss, LossInputs, LossSpec


class Loss(GANLoss):
    def d_loss(self, inputs: LossInputs) -> torch.Tensor:
        return F.softplus(-inputs.real_logits).mean() + F.softplus(inputs.fake_logits).mean()

    def g_loss(self, inputs: LossInputs) -> torch.Tensor:
        return F.softplus(-inputs.fake_logits).mean()


@hookimpl
def ganbench_register_losses(register):
    register(LossSpec(name="$name", summary="$summary", factory=Loss))
'''

TESTS["loss"] = '''\
import math

import torch

from ganbench.specs import LossInputs
from $pkg.plugin import Loss


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_hand_computed_values():
    loss = Loss()
    # softplus(0) = log 2, so at zero logits D pays log 2 twice and G once
    d = loss.d_loss(LossInputs(fake_logits=t(0.0), real_logits=t(0.0)))
    assert math.isclose(d.item(), 2 * math.log(2), rel_tol=1e-6)
    # D: softplus(-2) + softplus(-1); G: softplus(1)
    d = loss.d_loss(LossInputs(fake_logits=t(-1.0), real_logits=t(2.0)))
    assert math.isclose(d.item(), math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)),
                        rel_tol=1e-6)
    g = loss.g_loss(LossInputs(fake_logits=t(-1.0)))
    assert math.isclose(g.item(), math.log1p(math.e), rel_tol=1e-6)


def test_generator_loss_falls_as_fakes_look_real():
    logits = t(-1.0, 0.5).requires_grad_(True)
    Loss().g_loss(LossInputs(fake_logits=logits)).backward()
    assert (logits.grad < 0).all()
'''

PLUGINS["attention"] = '''\
"""$name: an attention kernel for ganbench.

Contract (what SAGAN's self-attention block calls): ``attend(q, k, v) -> o`` with q, k of shape
(B, N, Dqk) and v of shape (B, N, Dv), one dtype and device; o = softmax(q @ k^T) @ v, softmax
over keys, NO 1/sqrt(Dqk) scale, shape (B, N, Dv), in v's dtype, differentiable in q, k and v.
The template computes exactly that in plain PyTorch; make it faster without changing it.
"""

from __future__ import annotations

from typing import Optional

import torch

from ganbench.hookspecs import hookimpl
from ganbench.specs import AttentionSpec

_SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # 16-bit inputs are computed in fp32 and rounded once, as a kernel accumulating in fp32.
    compute = torch.float32 if v.dtype in _SIXTEEN_BIT else v.dtype
    scores = torch.bmm(q.to(compute), k.to(compute).transpose(1, 2))  # (B, N, N)
    weights = torch.softmax(scores, dim=-1)                           # over keys
    return torch.bmm(weights, v.to(compute)).to(v.dtype)              # (B, N, Dv)


def make_attend(**options):
    """ganbench calls factory(**options) once per run and uses the returned function."""
    if options:
        raise TypeError(f"$name takes no options, got {sorted(options)}")
    return attend


def why_unavailable(device: str) -> Optional[str]:
    """None if the kernel runs on ``device``, else the one-line reason ("needs CUDA")."""
    return None


@hookimpl
def ganbench_register_attention(register):
    register(AttentionSpec(name="$name", summary="$summary", factory=make_attend,
                           why_unavailable=why_unavailable))
'''

TESTS["attention"] = '''\
import pytest
import torch

from ganbench.kernels.attention.reference import attend_reference
from $pkg.plugin import make_attend, why_unavailable


def qkv(b, n, dqk, dv, dtype=torch.float32):
    gen = torch.Generator().manual_seed(n)
    return [torch.randn(b, n, d, generator=gen).to(dtype).requires_grad_(True)
            for d in (dqk, dqk, dv)]


@pytest.mark.parametrize("b, n, dqk, dv", [(2, 16, 8, 64), (1, 17, 4, 3), (3, 1, 2, 5)])
def test_matches_the_reference_forward_and_gradients(b, n, dqk, dv):
    attend = make_attend()
    q, k, v = qkv(b, n, dqk, dv)
    o = attend(q, k, v)
    assert o.shape == (b, n, dv) and o.dtype == v.dtype
    expected = attend_reference(q.double(), k.double(), v.double())
    torch.testing.assert_close(o.double(), expected, atol=1e-5, rtol=1e-5)
    do = torch.randn_like(o)
    grads = torch.autograd.grad(o, (q, k, v), do)
    expected_grads = torch.autograd.grad(expected, (q, k, v), do.double())  # through .double()
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_keeps_bfloat16():
    q, k, v = qkv(2, 9, 4, 6, torch.bfloat16)
    o = make_attend()(q, k, v)
    assert o.dtype == torch.bfloat16
    torch.testing.assert_close(o.float(), attend_reference(q, k, v).float(), atol=2e-2,
                               rtol=2e-2)


def test_runs_on_the_cpu():
    assert why_unavailable("cpu") is None
'''

PLUGINS["architecture"] = '''\
"""$name: a GAN architecture for ganbench.

The template is the smallest GAN that trains: a two-layer MLP generator and discriminator.
Contract: ``build(request)`` returns (G, D); G maps z (B, z_dim, 1, 1) to images (B, C, S, S)
in [-1, 1]; D maps images to logits (B,), no sigmoid. To use attention, set
``uses_attention=True`` and call ``request.attend(q, k, v)`` inside your layers.
"""

from __future__ import annotations

import torch
from torch import nn

from ganbench.hookspecs import hookimpl
from ganbench.specs import ArchitectureDefaults, ArchitectureSpec, ModelRequest

HIDDEN = 256
DEFAULTS = ArchitectureDefaults(loss="bce", g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999), z_dim=64)


class Generator(nn.Module):
    def __init__(self, image_size: int, z_dim: int, channels: int):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(z_dim, HIDDEN), nn.ReLU(),
                                 nn.Linear(HIDDEN, channels * image_size * image_size), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)  # (B, C, S, S)


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size,
                                                         HIDDEN),
                                 nn.LeakyReLU(0.2), nn.Linear(HIDDEN, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (B,)


def build(request: ModelRequest):
    return (Generator(request.image_size, request.z_dim, request.channels),
            Discriminator(request.image_size, request.channels))


@hookimpl
def ganbench_register_architectures(register):
    register(ArchitectureSpec(name="$name", summary="$summary", build=build, defaults=DEFAULTS,
                              uses_attention=False, image_sizes=(32, 64)))
'''

TESTS["architecture"] = '''\
import pytest
import torch

from ganbench.specs import ModelRequest
from $pkg.plugin import DEFAULTS, build


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_ranges(size):
    G, D = build(ModelRequest(image_size=size, z_dim=DEFAULTS.z_dim))
    images = G(torch.randn(4, DEFAULTS.z_dim, 1, 1))
    assert images.shape == (4, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1
    logits = D(images)
    assert logits.shape == (4,)
    logits.sum().backward()  # gradients reach both nets
    assert all(p.grad is not None for p in G.parameters())
'''

PLUGINS["metric"] = '''\
"""$name: a sample-quality metric for ganbench.

Contract: ``compute(fake, real, context)`` gets float tensors (N, 1, S, S) in [-1, 1] on the CPU
and returns {column: number}; columns are snake_case and start with "${prefix}_". The template
measures how far the average generated image is from the average real one (0 = same mean image,
in pixel units of [-1, 1]): crude, but it catches a generator stuck on blank or saturated images.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ganbench.hookspecs import hookimpl
from ganbench.specs import Metric, MetricContext, MetricSpec


class MeanImageGap(Metric):
    def compute(self, fake: torch.Tensor, real: torch.Tensor,
                context: MetricContext) -> Mapping[str, float]:
        gap = (fake.mean(dim=0) - real.mean(dim=0)).abs().mean()  # mean over (C, S, S)
        return {"${prefix}_mean_image_gap": float(gap)}


@hookimpl
def ganbench_register_metrics(register):
    register(MetricSpec(name="$name", summary="$summary", factory=MeanImageGap))
'''

TESTS["metric"] = '''\
import pytest
import torch

from ganbench.specs import MetricContext
from $pkg.plugin import MeanImageGap

CONTEXT = MetricContext(digits=(7, 8), image_size=8, device="cpu")


def test_same_images_score_zero_and_a_shift_scores_its_size():
    real = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5
    assert MeanImageGap().compute(real, real, CONTEXT) == {"${prefix}_mean_image_gap": 0.0}
    shifted = MeanImageGap().compute(real + 0.25, real, CONTEXT)
    assert shifted["${prefix}_mean_image_gap"] == pytest.approx(0.25)
'''

PLUGINS["dataset"] = '''\
"""$name: a data source for ganbench.

Contract: ``load(argument, digits, image_size)`` returns a DigitData of float32 images
(N, 1, S, S) in [-1, 1] with int64 labels (-1 where unknown), split into ``train`` and a
``heldout`` set that is never trained on. ``--data $name:ARG`` passes ARG as ``argument``;
a bad argument raises DataError with a one-line message.

The template draws synthetic "ones": a vertical bar at a random column. It has no digit
classes, so labels are -1 and the ``digits`` selection is ignored. Replace it with your reader.
"""

from __future__ import annotations

from typing import Optional

import torch

from ganbench.errors import DataError
from ganbench.hookspecs import hookimpl
from ganbench.specs import DatasetSpec, DigitData

DEFAULT_COUNT = 512
HELDOUT_FRACTION = 4  # one held-out image per four training images


def bars(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 1, size, size) images in {-1, 1}: a bar size/8 wide, at a random column."""
    gen = torch.Generator().manual_seed(seed)
    width, margin = max(1, size // 8), size // 8
    left = torch.randint(margin, size - margin - width + 1, (n, 1), generator=gen)  # (n, 1)
    cols = torch.arange(size)
    in_bar = (cols >= left) & (cols < left + width)                               # (n, S)
    rows = (cols >= margin) & (cols < size - margin)                              # (S,)
    mask = rows[None, :, None] & in_bar[:, None, :]                               # (n, S, S)
    return torch.where(mask, 1.0, -1.0).unsqueeze(1).float()


def load(argument: Optional[str], digits: tuple, image_size: int) -> DigitData:
    try:
        count = DEFAULT_COUNT if argument is None else int(argument)
    except ValueError:
        count = 0
    if count <= 0:
        raise DataError(f"$name: argument must be a positive image count, got {argument!r}")
    heldout = max(1, count // HELDOUT_FRACTION)
    train = bars(count, image_size, seed=0)
    test = bars(heldout, image_size, seed=1)
    return DigitData(train=train, train_labels=torch.full((count,), -1, dtype=torch.long),
                     heldout=test, heldout_labels=torch.full((heldout,), -1, dtype=torch.long),
                     source=f"$name ({count} synthetic bars)")


@hookimpl
def ganbench_register_datasets(register):
    register(DatasetSpec(name="$name", summary="$summary", load=load))
'''

TESTS["dataset"] = '''\
import pytest
import torch

from ganbench.errors import DataError
from $pkg.plugin import load


def test_shapes_range_and_labels():
    data = load("40", (), 32)
    assert data.train.shape == (40, 1, 32, 32) and data.train.dtype == torch.float32
    assert data.heldout.shape == (10, 1, 32, 32)
    assert data.train.min() == -1 and data.train.max() == 1
    assert data.train_labels.dtype == torch.long and (data.train_labels == -1).all()
    assert not torch.equal(data.train[:10], data.heldout)  # held out is not a copy of train


@pytest.mark.parametrize("bad", ["zero", "0", "-3"])
def test_bad_argument_is_a_data_error(bad):
    with pytest.raises(DataError, match="positive image count"):
        load(bad, (), 32)
'''

# Shared by every kind: the plugin is reachable through its entry point, as ganbench finds it.
TEST_REGISTRATION = '''\


def test_ganbench_finds_the_plugin_through_its_entry_point(monkeypatch):
    """Needs the package installed (pip install -e .): that is what creates the entry point."""
    from ganbench import registry

    monkeypatch.setenv(registry.LOAD_ENV, "$dist")  # this distribution, nothing else installed
    monkeypatch.delenv(registry.BLOCK_ENV, raising=False)
    found = registry.collect(*registry.make_plugin_manager())
    assert not found.broken, found.broken
    entry = found.lookup("$name", ("$kind",))
    assert entry.source.startswith("$dist==")
    assert entry.spec.why_unavailable("cpu") is None
'''

SUMMARIES = {
    "loss": "non-saturating logistic loss (template)",
    "attention": "softmax(q k^T) v in plain PyTorch (template)",
    "architecture": "two-layer MLP generator and discriminator (template)",
    "metric": "gap between the mean fake and mean real image (template)",
    "dataset": "synthetic vertical bars (template)",
}
TRY_IT = {
    "loss": "ganbench run --plugins dcgan,bce,$name",
    "attention": "ganbench run --plugins sagan,eager-attn,$name",
    "architecture": "ganbench run --plugins dcgan,$name",
    "metric": "ganbench run --plugins dcgan --metrics $name",
    "dataset": "ganbench run --plugins dcgan --data $name",
}
KINDS = tuple(PLUGINS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME",
                   help="the plugin's name, lowercase-hyphen (e.g. focal-loss); the package is "
                        f"{DIST_PREFIX}NAME")
    p.add_argument("--kind", choices=KINDS, default="loss", help="what it provides (default loss)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="folder to create the package in (default: the current folder)")


def plan_files(name: str, kind: str) -> dict[str, str]:
    """Relative path -> text of every file of the scaffold for plugin ``name`` of ``kind``."""
    dist = DIST_PREFIX + name
    pkg = dist.replace("-", "_")
    values = {"name": name, "dist": dist, "pkg": pkg, "kind": kind,
              "prefix": name.replace("-", "_"), "summary": SUMMARIES[kind]}
    values["try_it"] = Template(TRY_IT[kind]).substitute(values)

    def fill(template: str) -> str:
        return Template(template).substitute(values)

    return {
        "pyproject.toml": fill(PYPROJECT),
        "README.md": fill(README),
        f"src/{pkg}/__init__.py": fill(INIT),
        f"src/{pkg}/plugin.py": fill(PLUGINS[kind]),
        f"tests/test_{pkg}.py": fill(TESTS[kind] + TEST_REGISTRATION),
    }


def run(args: argparse.Namespace) -> int:
    from ganbench.errors import UserError
    from ganbench.specs import NAME_PATTERN

    name = args.name
    if not NAME_PATTERN.match(name):
        raise UserError(f"plugin name {name!r} is not lowercase-hyphen (e.g. focal-loss)")
    if name.startswith(DIST_PREFIX):
        raise UserError(f"leave out the {DIST_PREFIX!r} prefix: the package is named "
                        f"{DIST_PREFIX}NAME and the plugin NAME")
    folder = args.out / (DIST_PREFIX + name)
    if folder.exists():
        raise UserError(f"{folder} already exists; choose another NAME or --out")

    from ganbench.registry import get_registry  # imports torch: only once the name is valid

    taken = get_registry().kind_of(name)
    if taken is not None:
        source = get_registry().lookup(name).source
        raise UserError(f"{name!r} is already a {taken} plugin ({source}); plugin names must be "
                        "unique, so choose another")

    for relative, text in plan_files(name, args.kind).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"created {folder} ({args.kind} plugin {name!r})")
    print(f"next: pip install -e {folder} && pytest {folder / 'tests'}")
    print(f"then: {Template(TRY_IT[args.kind]).substitute(name=name)}")
    return 0
