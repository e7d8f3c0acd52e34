"""What the benchmark suite and the CI ratio check time: built once here, used by both.

- :func:`attention_inputs` / :func:`op_forward` / :func:`op_forward_backward`: the attention op
  alone at one textbook layer shape;
- :func:`training_step`: one D-then-G iteration of a GAN through ``ganbench.training.loop.train`` (the
  production loop, so a change to the loop shows up here too);
- :func:`peak_rss_reset` / :func:`peak_rss`: per-benchmark peak memory on the CPU.

These serve the pytest-benchmark suite (test_bench.py). The CI regression gate is tools/gate,
which times the old and new commit side by side through tools/gate/workload.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ganbench.registry import get_registry

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
IMAGE_SIZE = 32   # CPU-sized: a textbook 64x64 batch-64 SAGAN step takes seconds on 2 cores
BATCH_SIZE = 16
# The attention op's shape: SAGAN's largest attention layer at these sizes, G's 16x16 layer
# with 64 channels at image 32 (N = 256 tokens, q/k C/8 = 8 channels, v 64), batch 16.
OP_SHAPE = {"B": BATCH_SIZE, "N": 256, "Dqk": 8, "Dv": 64}

# Kernels that run on the CPU only under TRITON_INTERPRET=1 (tests/conftest.py sets it when
# there is no GPU): a SAGAN step then takes ~20 s instead of ~0.2 s.
INTERPRETED_ON_CPU = ("triton-attn",)


# ------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------
def kernel_names() -> list[str]:
    """Every registered attention kernel (available here or not), eager first."""
    names = sorted(get_registry().attention)
    return sorted(names, key=lambda n: n != "eager-attn")


def why_unavailable(kernel: str, device: str = DEVICE) -> Optional[str]:
    return get_registry().attention[kernel].why_unavailable(device)


def timing_skip_reason(kernel: str, device: str = DEVICE) -> Optional[str]:
    """Why ``kernel`` is not timed here: unavailable, or only runnable under the Triton
    interpreter on the CPU (a debugging mode ~100x slower than eager: its times say nothing
    about the kernel), else None."""
    reason = why_unavailable(kernel, device)
    if reason:
        return reason
    if kernel in INTERPRETED_ON_CPU and device == "cpu":
        return "runs only under the Triton interpreter on the CPU: not a kernel timing"
    return None


def timed_kernels(device: str = DEVICE) -> list[str]:
    """The kernels worth timing on ``device``, eager first."""
    return [k for k in kernel_names() if timing_skip_reason(k, device) is None]


def make_attend(kernel: str) -> Callable:
    """The kernel's ``attend`` with its default options."""
    return get_registry().attention[kernel].factory()


# ------------------------------------------------------------------------------------------
# The attention op
# ------------------------------------------------------------------------------------------
def attention_inputs(device: str = DEVICE, seed: int = 0, shape: dict = OP_SHAPE):
    """q, k (B, N, Dqk), v and dO (B, N, Dv) as leaves that require grad (dO does not).

    q and k have std Dqk**-0.25 so the raw scores q.k have unit variance (a realistic softmax).
    """
    g = torch.Generator().manual_seed(seed)
    B, N, Dqk, Dv = shape["B"], shape["N"], shape["Dqk"], shape["Dv"]
    s = Dqk ** -0.25
    q = (torch.randn(B, N, Dqk, generator=g) * s).to(device).requires_grad_()
    k = (torch.randn(B, N, Dqk, generator=g) * s).to(device).requires_grad_()
    v = torch.randn(B, N, Dv, generator=g).to(device).requires_grad_()
    do = torch.randn(B, N, Dv, generator=g).to(device)
    return q, k, v, do


def synchronize(device: str = DEVICE) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def op_forward(attend: Callable, inputs, device: str = DEVICE) -> Callable[[], None]:
    q, k, v, _ = inputs

    def run() -> None:
        with torch.no_grad():
            attend(q, k, v)
        synchronize(device)  # so a timer around run() measures the device's work

    return run


def op_forward_backward(attend: Callable, inputs, device: str = DEVICE) -> Callable[[], None]:
    q, k, v, do = inputs

    def run() -> None:
        q.grad = k.grad = v.grad = None
        attend(q, k, v).backward(do)
        synchronize(device)

    return run


# ------------------------------------------------------------------------------------------
# A training step
# ------------------------------------------------------------------------------------------
_DATA_CACHE: dict = {}


def train_images(image_size: int = IMAGE_SIZE, device: str = DEVICE) -> torch.Tensor:
    """The embedded digits 7 and 8 at ``image_size`` (cached: prepare() is ~1 s)."""
    key = (image_size, device)
    if key not in _DATA_CACHE:
        spec = get_registry().datasets["embedded"]
        _DATA_CACHE[key] = spec.load(None, (7, 8), image_size).train.to(device)
    return _DATA_CACHE[key]


def training_step(architecture: str, kernel: Optional[str] = None, device: str = DEVICE,
                  image_size: int = IMAGE_SIZE, batch_size: int = BATCH_SIZE,
                  seed: int = 0) -> Callable[[], None]:
    """A callable that runs one D-then-G iteration of ``architecture`` (with ``kernel``).

    Each call is ``train(..., steps=1, warmup=0)`` on models built once: the production loop,
    with its Adam optimisers re-created per call (their state allocation is the same for every
    kernel, so ratios between kernels are unaffected).
    """
    from ganbench.specs import ModelRequest
    from ganbench.training.loop import Batches, TrainSettings, seed_everything, train

    registry = get_registry()
    arch = registry.architectures[architecture]
    d = arch.defaults
    seed_everything(seed)
    attend = make_attend(kernel) if kernel else None
    G, D = arch.build(ModelRequest(image_size, d.z_dim, attend=attend))
    G, D = G.to(device), D.to(device)
    loss = registry.losses[d.loss].factory()
    batches = Batches(train_images(image_size, device), batch_size, seed)

    def step() -> None:
        train(G, D, loss, batches, TrainSettings(steps=1, warmup=0, z_dim=d.z_dim, g_lr=d.g_lr,
                                                 d_lr=d.d_lr, betas=d.betas, device=device,
                                                 seed=seed))
        synchronize(device)

    return step


# ------------------------------------------------------------------------------------------
# Peak memory
# ------------------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_reset(device: str = DEVICE) -> Optional[str]:
    """Start a peak-memory window; returns the method name, or None when it cannot be reset.

    CUDA: reset_peak_memory_stats. CPU: writing '5' to /proc/self/clear_refs resets the
    process's peak resident set (VmHWM, Linux >= 4.0), so the next read is the peak of this
    window only (it still includes the interpreter and torch, ~300 MB: compare, don't add).
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return "cuda.max_memory_allocated"
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return "cpu.peak_rss(VmHWM, reset per benchmark)"


def peak_rss(device: str = DEVICE) -> Optional[int]:
    """Peak bytes since :func:`peak_rss_reset` (None where unknown)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
